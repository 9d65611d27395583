"""Small helpers the simplify passes share: replace a node, and read a value known at build time.

A "uniform" node is one whose every element holds the same known value: a 0-d `constant`, or a
view of one (the backward pass writes ``expand(reshape(constant 1.0))`` for a tensor of ones).
"""
from __future__ import annotations

from graphc.ir.graph import Graph, Node

# Movement ops whose every output element is an element of their one operand (they select,
# reorder or repeat, never fill): a view of a uniform value is uniform. pad, cat, gather and
# scatter_add are movement ops too, but can bring in other values.
ELEMENT_PRESERVING_VIEWS = frozenset({"reshape", "permute", "expand", "slice"})


def replace(graph: Graph, old: int, new: int) -> None:
    """Point every use of `old` (outputs included) at `new`, then erase `old`.

    Its operands may be left without users; `eliminate_dead_code` removes them.
    """
    if old == new:
        return
    graph.replace_all_uses_with(old, new)
    graph.erase(old)


def uniform_constant(graph: Graph, node_id: int) -> Node | None:
    """The 0-d `constant` node every element of `node_id` equals, seen through views; else None."""
    node = graph.node(node_id)
    while node.op != "constant":
        if node.op not in ELEMENT_PRESERVING_VIEWS:
            return None
        node = graph.node(node.inputs[0])
    return node


def holds(graph: Graph, node_id: int, value) -> bool:
    """Whether every element of `node_id` is known to equal `value` (1 matches True, 0 -0.0)."""
    constant = uniform_constant(graph, node_id)
    return constant is not None and constant.attrs["value"] == value


def freeze(value):
    """A hashable key for an attribute value that tells apart what Python's == would merge:
    0.0 and -0.0, 1 and 1.0 and True."""
    if isinstance(value, dict):
        return tuple(sorted((key, freeze(item)) for key, item in value.items()))
    if isinstance(value, (tuple, list)):
        return ("sequence",) + tuple(freeze(item) for item in value)
    return (type(value).__name__, repr(value))
