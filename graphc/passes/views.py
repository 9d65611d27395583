"""Collapse chains of views and drop views that change nothing.

reshape(reshape(x)) -> reshape(x); permute(permute(x)) -> permute(x) with the composed dims;
expand(expand(x)) -> expand(x); slice(slice(x)) -> slice(x); and a reshape, permute, expand or
slice that is the identity (same shape, dims in order, the full range with step 1) -> x. A
collapsed view is a new node carrying the outer view's user line.
"""
from __future__ import annotations

from graphc.ir.graph import Graph, Node
from graphc.passes.rewrite import replace


def collapse_views(graph: Graph) -> tuple[Graph, bool]:
    """A copy of `graph` with view chains collapsed and identity views removed; and whether any were."""
    graph = graph.copy()
    return graph, collapse_views_in_place(graph)


def collapse_views_in_place(graph: Graph) -> bool:
    """`collapse_views` on `graph` itself; whether it changed."""
    changed = False
    # topological order: a view's operand is already collapsed when the view is reached, so a
    # chain of any length becomes one view in one walk
    for node_id in graph.topo_order():
        node = graph.node(node_id)
        if node.op not in COMPOSE:
            continue
        source = graph.node(node.inputs[0])
        if _is_identity(graph, node):
            replacement = source.id
        elif source.op == node.op:
            attrs = COMPOSE[node.op](source, node)
            replacement = graph.call(node.op, source.inputs, node.where, **attrs)
            if _is_identity(graph, graph.node(replacement)):  # e.g. a permute and its inverse
                graph.erase(replacement)
                replacement = source.inputs[0]
        else:
            continue
        replace(graph, node_id, replacement)
        changed = True
    return changed


def _is_identity(graph: Graph, node: Node) -> bool:
    source_shape = graph.node(node.inputs[0]).shape
    if node.op == "permute":
        return tuple(node.attrs["dims"]) == tuple(range(len(source_shape)))
    if node.op == "slice":
        return all(r == range(size) for r, size in zip(_ranges(node), source_shape))
    return node.shape == source_shape  # reshape, expand


def _ranges(node: Node) -> list[range]:
    attrs = node.attrs
    return [range(start, stop, step)
            for start, stop, step in zip(attrs["starts"], attrs["stops"], attrs["steps"])]


def _compose_permutes(inner: Node, outer: Node) -> dict:
    # output axis i is the inner output's axis outer[i], which is x's axis inner[outer[i]]
    return {"dims": tuple(inner.attrs["dims"][d] for d in outer.attrs["dims"])}


def _compose_slices(inner: Node, outer: Node) -> dict:
    # the outer slice picks x's indices inner_range[outer_range]: Python ranges compose that way
    composed = [a[b.start:b.stop:b.step] for a, b in zip(_ranges(inner), _ranges(outer))]
    return {"starts": tuple(r.start if r else 0 for r in composed),
            "stops": tuple(r[-1] + 1 if r else 0 for r in composed),
            "steps": tuple(r.step for r in composed)}


# how two stacked views of one kind become one: the attrs of the view applied to the inner operand
COMPOSE = {
    "reshape": lambda inner, outer: {"shape": outer.shape},  # only the last shape matters
    "expand": lambda inner, outer: {"shape": outer.shape},  # numpy broadcasting rules compose
    "permute": _compose_permutes,
    "slice": _compose_slices,
}
