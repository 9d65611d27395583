"""Dead-code elimination: drop every node no output depends on.

Placeholders stay even when unused: they are the graph's signature, and callers bind them by name.

>>> from graphc import dtypes
>>> graph = Graph()
>>> x = graph.placeholder("x", (3,), dtypes.float64)
>>> unused = graph.call("exp", [x])
>>> graph.output(graph.call("neg", [x]))
>>> live, changed = eliminate_dead_code(graph)
>>> changed, [node.op for node in live.nodes()]
(True, ['input', 'neg'])
"""
from __future__ import annotations

from graphc.ir.graph import Graph


def eliminate_dead_code(graph: Graph) -> tuple[Graph, bool]:
    """A copy of `graph` without the nodes no output needs; and whether any were removed."""
    graph = graph.copy()
    return graph, eliminate_dead_code_in_place(graph)


def eliminate_dead_code_in_place(graph: Graph) -> bool:
    """`eliminate_dead_code` on `graph` itself; whether it changed."""
    live = set()
    pending = list(graph.outputs)
    while pending:  # walk back from the outputs along operands
        node_id = pending.pop()
        if node_id not in live:
            live.add(node_id)
            pending.extend(graph.node(node_id).inputs)
    dead = [n.id for n in graph.nodes() if n.id not in live and n.op != "input"]
    for node_id in reversed(dead):  # users before their operands, so each is unused when erased
        graph.erase(node_id)
    return bool(dead)
