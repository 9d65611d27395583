"""The IR: a `Graph` of `Node`s kept in a networkx DiGraph.

Operand order is data on the node (``node.inputs``); networkx edges are only an index of who uses
whom, so ``x * x`` has one edge and two uses. Node ids grow in creation order and every listing
is in a deterministic topological order, so printouts, generated code and cache keys are stable.

>>> g = Graph()
>>> x = g.placeholder("x", (2, 3), float32)
>>> y = g.call("exp", [x])
>>> g.output(y)
>>> g.node(y).shape
(2, 3)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import networkx as nx

from graphc import dtypes
from graphc.dtypes import DType
from graphc.errors import ShapeError, op_error
from graphc.ops import table


@dataclass
class Node:
    id: int
    op: str
    inputs: tuple
    shape: tuple
    dtype: DType
    attrs: dict = field(default_factory=dict)
    where: str = ""
    name: str = ""  # placeholders only: the name the caller binds a value to

    def describe(self) -> str:
        args = ", ".join(f"%{i}" for i in self.inputs)
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attrs.items()))
        inner = ", ".join(part for part in (args, attrs) if part)
        return f"%{self.id} = {self.op}({inner}) : {self.dtype.name}{list(self.shape)}"


class Graph:
    """A static dataflow graph of primitive ops."""

    def __init__(self):
        self.nx = nx.DiGraph()
        self.outputs: list[int] = []
        self._next_id = 0

    # ---- building -------------------------------------------------------------------------
    def _add(self, op, inputs, shape, dtype, attrs, where, name="") -> int:
        node_id = self._next_id
        self._next_id += 1
        node = Node(node_id, op, tuple(inputs), tuple(int(s) for s in shape), dtype,
                    dict(attrs), where or "", name)
        self.nx.add_node(node_id, node=node)
        for source in set(node.inputs):
            self.nx.add_edge(source, node_id)
        return node_id

    def call(self, op: str, inputs=(), where: str | None = None, **attrs) -> int:
        """Add a node applying primitive `op`; its shape and dtype come from the op table."""
        entry = table.get(op)
        inputs = tuple(inputs)
        for i in inputs:
            if i not in self.nx:
                raise KeyError(f"{op}: input %{i} is not in the graph")
        shapes = [self.node(i).shape for i in inputs]
        types = [self.node(i).dtype for i in inputs]
        try:
            shape, dtype = entry.infer(shapes, types, attrs)
        except ValueError as error:
            raise op_error(op, str(error), where, kind=ShapeError) from None
        return self._add(op, inputs, shape, dtype, attrs, where)

    def placeholder(self, name: str, shape, dtype: DType, where: str | None = None) -> int:
        """An input bound by name when the graph runs."""
        return self._add("input", (), shape, dtype, {}, where, name=name)

    def constant(self, value, dtype: DType, where: str | None = None) -> int:
        """A 0-d constant; `expand` it to broadcast."""
        return self.call("constant", (), where, value=_python_scalar(value, dtype), dtype=dtype.name)

    def output(self, *node_ids: int) -> None:
        self.outputs.extend(node_ids)

    # ---- reading --------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        return self.nx.nodes[node_id]["node"]

    def __contains__(self, node_id) -> bool:
        return node_id in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> list[Node]:
        return [self.node(i) for i in self.topo_order()]

    def users(self, node_id: int) -> list[int]:
        return sorted(self.nx.successors(node_id))

    def placeholders(self) -> list[Node]:
        return [n for n in self.nodes() if n.op == "input"]

    def topo_order(self) -> list[int]:
        return list(nx.lexicographical_topological_sort(self.nx))

    # ---- rewriting ------------------------------------------------------------------------
    def replace_all_uses_with(self, old: int, new: int) -> None:
        """Point every user of `old` (and the outputs) at `new`."""
        for user in self.users(old):
            node = self.node(user)
            node.inputs = tuple(new if i == old else i for i in node.inputs)
            self.nx.remove_edge(old, user)
            self.nx.add_edge(new, user)
        self.outputs = [new if i == old else i for i in self.outputs]

    def erase(self, node_id: int) -> None:
        if self.users(node_id) or node_id in self.outputs:
            raise ValueError(f"cannot erase %{node_id}: it is still used")
        self.nx.remove_node(node_id)

    def copy(self) -> "Graph":
        return Graph.from_dict(self.to_dict())

    def lint(self) -> None:
        """Check the invariants every pass must keep; raise AssertionError naming the node."""
        assert nx.is_directed_acyclic_graph(self.nx), "graph has a cycle"
        for node in self.nodes():
            for i in node.inputs:
                assert i in self.nx, f"%{node.id} uses missing %{i}"
                assert self.nx.has_edge(i, node.id), f"edge %{i} -> %{node.id} missing"
            for source in self.nx.predecessors(node.id):
                assert source in node.inputs, f"stray edge %{source} -> %{node.id}"
            if node.op != "input":
                entry = table.get(node.op)
                shape, dtype = entry.infer([self.node(i).shape for i in node.inputs],
                                           [self.node(i).dtype for i in node.inputs], node.attrs)
                assert tuple(shape) == node.shape and dtype is node.dtype, \
                    f"%{node.id} records {node.dtype.name}{list(node.shape)}, " \
                    f"its op gives {dtype.name}{list(shape)}"
        for i in self.outputs:
            assert i in self.nx, f"output %{i} missing"

    # ---- printing and serialization ---------------------------------------------------------
    def __str__(self) -> str:
        return self.table()

    def table(self, title: str | None = None) -> str:
        """A readable table: id, op, shape, dtype, inputs, attrs and the user's line."""
        rows = [("id", "op", "shape", "dtype", "inputs", "attrs", "where")]
        for node in self.nodes():
            attrs = node.attrs if node.op != "input" else {"name": node.name}
            rows.append((f"%{node.id}", node.op, str(list(node.shape)), node.dtype.name,
                         " ".join(f"%{i}" for i in node.inputs),
                         " ".join(f"{k}={_short(v)}" for k, v in sorted(attrs.items())),
                         node.where))
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        lines = [title] if title else []
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines.append("outputs: " + " ".join(f"%{i}" for i in self.outputs))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<graphc.Graph {len(self)} nodes, outputs {self.outputs}>"

    def to_dict(self) -> dict:
        return {
            "format": "graphc-graph-1",
            "nodes": [{"id": n.id, "op": n.op, "inputs": list(n.inputs), "shape": list(n.shape),
                       "dtype": n.dtype.name, "attrs": n.attrs, "where": n.where, "name": n.name}
                      for n in self.nodes()],
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Graph":
        if data.get("format") != "graphc-graph-1":
            raise ValueError("not a graphc graph (expected format 'graphc-graph-1')")
        graph = cls()
        for item in data["nodes"]:
            node = Node(item["id"], item["op"], tuple(item["inputs"]), tuple(item["shape"]),
                        dtypes.by_name(item["dtype"]), _tuples(item["attrs"]), item["where"],
                        item["name"])
            graph.nx.add_node(node.id, node=node)
            for source in set(node.inputs):
                graph.nx.add_edge(source, node.id)
            graph._next_id = max(graph._next_id, node.id + 1)
        graph.outputs = list(data["outputs"])
        return graph

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Graph":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        with open(path, "w") as file:
            file.write(self.to_json())

    @classmethod
    def load(cls, path) -> "Graph":
        with open(path) as file:
            return cls.from_json(file.read())

    def __eq__(self, other) -> bool:
        return isinstance(other, Graph) and self.to_dict() == other.to_dict()

    def to_dot(self, clusters: dict[str, list[int]] | None = None) -> str:
        """Graphviz DOT; `clusters` maps a cluster label (e.g. a kernel) to its node ids."""
        lines = ["digraph graphc {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
        clustered = set()
        for index, (label, members) in enumerate((clusters or {}).items()):
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f"    label={json.dumps(label)};")
            for member in members:
                lines.append(f"    n{member};")
                clustered.add(member)
            lines.append("  }")
        for node in self.nodes():
            label = f"%{node.id} {node.op}\\n{node.dtype.name}{list(node.shape)}"
            if node.op == "input":
                label += f"\\n{node.name}"
            style = ', style=filled, fillcolor="#e8f0ff"' if node.id in self.outputs else ""
            lines.append(f'  n{node.id} [label="{label}"{style}];')
        for node in self.nodes():
            for position, source in enumerate(node.inputs):
                lines.append(f'  n{source} -> n{node.id} [label="{position}"];')
        lines.append("}")
        return "\n".join(lines)


def _python_scalar(value, dtype: DType):
    if dtype.category == dtypes.FLOATING:
        return float(value)
    if dtype.category == dtypes.INTEGER:
        return int(value)
    return bool(value)


def _tuples(value):
    """JSON turns tuples into lists; attrs use tuples, so turn them back."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _short(value) -> str:
    text = str(value).replace(" ", "")
    return text if len(text) <= 40 else text[:37] + "..."
