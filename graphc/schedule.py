"""What a realize runs, found in one walk of the lazy nodes: a structure key, the arrays to bind,
and the Graph to build only when the key is new.

A realize of values computed before has the same structure as before: the same ops on leaves of
the same shapes, shared the same way. `walk` visits the nodes under the wanted outputs once,
inputs first, and numbers them; the key lists each node as its signature (op, shape, dtype,
attributes; an int from `signature`) and the numbers of its inputs, and each leaf (memory read,
value computed earlier) as its shape and dtype. Equal keys mean equal programs over the leaves in
walk order, so the compiled program is looked up by the key with no networkx graph built. Leaves
that read the same memory in the same layout are one placeholder, as `build_graph` makes them.

Values are not part of the key, except constants' (compiled programs bake them in).
"""
from __future__ import annotations

import numpy as np

from graphc.errors import GraphcError
from graphc.ir.graph import Graph
from graphc.lazy import LazyNode, Storage, _check_version, array_view, contiguous_strides

_signatures: dict = {}     # (op, shape, dtype, attributes) -> its signature
_leaf_signatures: dict = {}


class GraphBuild:
    """A Graph built from lazy nodes, with the bindings its placeholders need."""

    def __init__(self):
        self.graph = Graph()
        self.bindings: dict[str, np.ndarray] = {}
        self.node_of: dict[int, LazyNode] = {}   # graph id -> lazy node it came from
        self.id_of: dict[int, int] = {}          # id(lazy node) -> graph id
        self.host_bound: list[str] = []          # placeholders bound to CPU memory
        self.key = None                          # the walk's structure key


def build_graph(outputs) -> GraphBuild:
    """The Graph computing `outputs`, memory and computed values as bound placeholders."""
    return walk(outputs).build()


def _leaf_value(lazy: LazyNode):
    """(array, memory, storage) for a node that reads memory or was computed already: the view
    to bind, what identifies that memory and layout (one placeholder each), its storage."""
    if lazy.buffer is not None:
        storage, shape, strides, offset, version, array = lazy.buffer
        _check_snapshot(lazy, storage, version, array)
        return array_view(array, storage, shape, strides, offset), (id(array), shape, strides, offset), storage
    storage, version, array = lazy.realized
    _check_snapshot(lazy, storage, version, array)
    return (array.reshape(lazy.shape), (id(array), lazy.shape, contiguous_strides(lazy.shape), 0),
            storage)


def _check_snapshot(lazy: LazyNode, storage: Storage, version: int, array) -> None:
    """A value read from memory is still what it was when read, unless the memory was written in
    place since. A write that stays lazy gives the storage a new array and leaves this one as it
    was; only an eager write (into a view, into memory NumPy shares) changes the array itself."""
    if array is storage.array and storage.version != version:
        _check_version(lazy, storage, version)


def signature(node: LazyNode) -> int:
    """A small int that is equal for two nodes exactly when their op, shape, dtype and attributes
    are (computed once per node; a float attribute by repr, so -0.0 and 0.0 differ and NaN
    equals NaN)."""
    found = node.signature
    if found is None:
        attrs = node.attrs
        if attrs:
            items = tuple((name, ("float", repr(value)) if type(value) is float else value)
                          for name, value in attrs.items())
        else:
            items = ()
        key = (node.op, node.shape, node.dtype, items)
        try:
            found = _signatures.get(key)
        except TypeError:   # an unhashable attribute (a list): its repr stands for it
            key = (node.op, node.shape, node.dtype, repr(items))
            found = _signatures.get(key)
        if found is None:
            found = _signatures[key] = len(_signatures)
        node.signature = found
    return found


def _leaf_signature(node: LazyNode) -> int:
    key = (node.shape, node.dtype)
    found = _leaf_signatures.get(key)
    if found is None:
        found = _leaf_signatures[key] = -1 - len(_leaf_signatures)   # negative: never an op's
    return found


class Schedule:
    """The walk of one realize: `key`, the leaf `arrays` in placeholder order, and what `build`
    needs to make the Graph (graph ids are walk positions)."""

    __slots__ = ("key", "nodes", "entries", "arrays", "host_bound", "leaf_count")

    def __init__(self, key, nodes, entries, arrays, host_bound):
        self.key = key
        self.nodes = nodes            # lazy node at each position
        self.entries = entries        # per position: a leaf's signature (int) or (signature, inputs...)
        self.arrays = arrays          # per placeholder
        self.host_bound = host_bound  # per placeholder: bound to CPU memory
        self.leaf_count = len(arrays)

    def build(self) -> GraphBuild:
        """The Graph of this walk, with placeholders `in0`, `in1`... in leaf order."""
        build = GraphBuild()
        graph = build.graph
        placeholders = 0
        for position, (node, entry) in enumerate(zip(self.nodes, self.entries)):
            if type(entry) is int:
                name = f"in{placeholders}"
                graph_id = graph.placeholder(name, node.shape, node.dtype, node.where)
                build.bindings[name] = self.arrays[placeholders]
                if self.host_bound[placeholders]:
                    build.host_bound.append(name)
                placeholders += 1
            else:
                graph_id = graph.call(node.op, entry[1:], node.where, **node.attrs)
            assert graph_id == position
            build.node_of[graph_id] = node
            build.id_of[id(node)] = graph_id
        graph.output(*self.key[1])
        build.key = self.key
        return build

    # what CallLocations reads to name this call's lines (graph ids are positions)
    def __contains__(self, node_id) -> bool:
        return 0 <= node_id < len(self.nodes)

    def node(self, node_id: int):
        node = self.nodes[node_id]
        return _LeafLine(node.where) if type(self.entries[node_id]) is int else node


class _LeafLine:
    __slots__ = ("where",)
    op = "input"

    def __init__(self, where):
        self.where = where


def walk(outputs) -> Schedule:
    """Number the nodes under `outputs`, inputs first, and key the structure (see the module)."""
    position_of: dict = {}      # node -> position (nodes hash by identity)
    leaf_position: dict = {}    # memory (array id, layout) -> position
    nodes, entries, arrays, host_bound = [], [], [], []
    stack = list(reversed(outputs))
    pop, push = stack.pop, stack.append
    while stack:
        node = stack[-1]
        if node in position_of:
            pop()
            continue
        if node.buffer is not None or node.realized is not None:
            pop()
            array, memory, storage = _leaf_value(node)
            position = leaf_position.get(memory)
            if position is None:
                position = leaf_position[memory] = len(nodes)
                nodes.append(node)
                entries.append(_leaf_signature(node))
                arrays.append(array)
                host_bound.append(storage.device.type == "cpu")
            position_of[node] = position
            continue
        inputs = node.inputs
        # the common arities without building lists: push what is not numbered yet, or emit
        if len(inputs) == 1:
            first = position_of.get(inputs[0])
            if first is None:
                push(inputs[0])
                continue
            operands = (first,)
        elif len(inputs) == 2:
            first, second = position_of.get(inputs[0]), position_of.get(inputs[1])
            if first is None or second is None:
                if second is None:
                    push(inputs[1])
                if first is None:
                    push(inputs[0])
                continue
            operands = (first, second)
        else:
            if not inputs and node.op == "input":
                raise GraphcError(f"internal: input node without a buffer ({node})")
            missing = [i for i in inputs if i not in position_of]
            if missing:
                missing.reverse()
                stack.extend(missing)
                continue
            operands = tuple(position_of[i] for i in inputs)
        pop()
        position_of[node] = len(nodes)
        nodes.append(node)
        sig = node.signature
        entries.append((sig if sig is not None else signature(node),) + operands)
    key = (tuple(entries), tuple(position_of[o] for o in outputs))
    return Schedule(key, nodes, entries, arrays, host_bound)


class History:
    """The walk of a backward(): the nodes gradients flow through, up to the leaves (values that
    need no gradient, and the inputs of leaf tensors). `key` is the structure, as `walk`'s."""

    __slots__ = ("key", "nodes", "entries", "position_of", "grad_leaves", "through")

    def __init__(self, key, nodes, entries, position_of, grad_leaves, through):
        self.key = key
        self.nodes = nodes
        self.entries = entries
        self.position_of = position_of   # node -> position
        self.grad_leaves = grad_leaves   # nodes whose tensors get a .grad (leaves, retain_grad)
        self.through = through           # the computed nodes (backward() frees them)

    def build(self) -> GraphBuild:
        """The forward Graph, leaves as unbound placeholders; graph ids are positions."""
        build = GraphBuild()
        graph = build.graph
        for position, (node, entry) in enumerate(zip(self.nodes, self.entries)):
            if type(entry) is int:
                graph_id = graph.placeholder(f"in{position}", node.shape, node.dtype, node.where)
            else:
                graph_id = graph.call(node.op, entry[1:], node.where, **node.attrs)
            assert graph_id == position
            build.node_of[graph_id] = node
            build.id_of[id(node)] = graph_id
        return build


def history(outputs) -> History:
    """Walk what `outputs` were computed from, stopping at nodes that need no gradient and at
    inputs; each such leaf is its own placeholder (autodiff treats them as constants)."""
    position_of: dict = {}
    nodes, entries, grad_leaves, through = [], [], [], []
    stack = list(reversed(outputs))
    while stack:
        node = stack[-1]
        if node in position_of:
            stack.pop()
            continue
        if not node.requires_grad or node.op == "input":
            stack.pop()
            position_of[node] = len(nodes)
            nodes.append(node)
            entries.append(_leaf_signature(node))
            if node.requires_grad and node.leaf is not None:
                grad_leaves.append(node)
            continue
        inputs = node.inputs
        missing = [i for i in inputs if i not in position_of]
        if missing:
            missing.reverse()
            stack.extend(missing)
            continue
        stack.pop()
        position_of[node] = len(nodes)
        nodes.append(node)
        through.append(node)
        if node.leaf is not None:
            grad_leaves.append(node)
        entries.append((node.signature if node.signature is not None else signature(node),
                        *[position_of[i] for i in inputs]))
    key = (tuple(entries), tuple(position_of[o] for o in outputs))
    return History(key, nodes, entries, position_of, grad_leaves, through)
