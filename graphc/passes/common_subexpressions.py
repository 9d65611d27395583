"""Common-subexpression elimination: nodes computing the same thing become one.

Two nodes merge when they have the same op, the same operands in the same order, equal attrs
(0.0 and -0.0 differ) and the same shape and dtype; the first in topological order survives with
its user line. `rand` is a pure function of its key operand and attrs, so two rands merge only
when both are equal; placeholders never merge (each is bound to its own value).
"""
from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.rewrite import freeze, replace


def eliminate_common_subexpressions(graph: Graph) -> tuple[Graph, bool]:
    """A copy of `graph` with duplicate nodes merged; and whether any were."""
    graph = graph.copy()
    return graph, eliminate_common_subexpressions_in_place(graph)


def eliminate_common_subexpressions_in_place(graph: Graph) -> bool:
    """`eliminate_common_subexpressions` on `graph` itself; whether it changed."""
    first_with_key: dict[tuple, int] = {}
    changed = False
    # in topological order a node's operands are already merged, so duplicates of whole
    # subexpressions collapse in one walk
    for node_id in graph.topo_order():
        node = graph.node(node_id)
        if node.op == "input":
            continue
        key = (node.op, node.inputs, freeze(node.attrs), node.shape, node.dtype.name)
        if key in first_with_key:
            replace(graph, node_id, first_with_key[key])
            changed = True
        else:
            first_with_key[key] = node_id
    return changed
