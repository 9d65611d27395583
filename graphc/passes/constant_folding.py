"""Constant folding: compute at compile time what depends only on constants.

A node whose operands are all uniform (0-d constants, or views of them such as the backward
pass's ``expand(reshape(constant 1.0))``) is replaced by a uniform value:

* an elementwise op is computed once on the scalars and becomes ``expand(constant)``
  (``constant`` when 0-d), so ``mul(expand(2), expand(3))`` becomes ``expand(6)``;
* a view of a uniform value is the same constant, expanded to the view's shape;
* any other op (a reduction, a matmul, pad...) is run on the broadcast operands when they are
  small, and folded when its result is 0-d or all its elements are bitwise equal.

Values come from the op table's NumPy `evaluate`, in the node's dtype, so a folded int32 sum
wraps as the interpreter's would. An op that raises (gather out of bounds) is left to raise at
run time.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ir.graph import Graph, Node
from graphc.ops import ELEMENTWISE, SOURCE, is_category, table
from graphc.passes.rewrite import ELEMENT_PRESERVING_VIEWS, replace, uniform_constant

# the most operand elements a non-elementwise op is run on while folding
FOLD_ELEMENT_LIMIT = 1 << 16


def fold_constants(graph: Graph) -> tuple[Graph, bool]:
    """A copy of `graph` with constant subexpressions computed; and whether any were."""
    graph = graph.copy()
    return graph, fold_constants_in_place(graph)


def fold_constants_in_place(graph: Graph) -> bool:
    """`fold_constants` on `graph` itself; whether it changed."""
    changed = False
    # in topological order a folded node's users see it as a constant when they are reached
    for node_id in graph.topo_order():
        node = graph.node(node_id)
        if is_category(node.op, SOURCE) or _is_expanded_constant(graph, node):
            continue
        constants = [uniform_constant(graph, i) for i in node.inputs]
        if not constants or None in constants:
            continue
        if node.op in ELEMENT_PRESERVING_VIEWS:
            replacement = _broadcast(graph, node, constants[0].id)
        else:
            value = _fold(node, constants, [graph.node(i).shape for i in node.inputs])
            if value is None:
                continue
            replacement = _broadcast(graph, node, graph.constant(value, node.dtype, node.where))
        replace(graph, node_id, replacement)
        changed = True
    return changed


def _is_expanded_constant(graph: Graph, node: Node) -> bool:
    """The folded form itself: nothing left to do."""
    return node.op == "expand" and graph.node(node.inputs[0]).op == "constant"


def _broadcast(graph: Graph, node: Node, constant: int) -> int:
    """`constant` (0-d) shaped like `node`."""
    if node.shape == ():
        return constant
    return graph.call("expand", [constant], node.where, shape=node.shape)


def _fold(node: Node, constants: list[Node], shapes: list[tuple]):
    """The one value every element of `node` takes, or None when it is unknown or not one value."""
    entry = table.get(node.op)
    scalars = [np.asarray(c.attrs["value"], dtype=c.dtype.numpy) for c in constants]
    try:
        if is_category(node.op, ELEMENTWISE):  # same value in, same value out: compute it once
            return entry.evaluate(scalars, node.attrs, (), node.dtype).item()
        if sum(math.prod(shape) for shape in shapes) > FOLD_ELEMENT_LIMIT:
            return None
        operands = [np.broadcast_to(s, shape) for s, shape in zip(scalars, shapes)]
        result = np.asarray(entry.evaluate(operands, node.attrs, node.shape, node.dtype))
    except Exception:  # noqa: BLE001  an op that fails must keep failing where the user runs it
        return None
    return _single_value(result)


def _single_value(array: np.ndarray):
    """The value all elements of `array` share bit for bit, or None."""
    if array.size == 0:
        return None
    rows = np.ascontiguousarray(array).reshape(array.size).view(np.uint8).reshape(array.size, -1)
    return array.flat[0].item() if (rows == rows[0]).all() else None
