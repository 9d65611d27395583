"""The NumPy reference interpreter: runs any graph node by node from the op table.

It is the test oracle, the `backend="numpy"` debugging backend, and the base of shape checks and
check modes (`on_node` sees every value as it is computed).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from graphc.errors import op_error
from graphc.ir.graph import Graph
from graphc.ops import table


def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray],
             on_node: Callable | None = None) -> list[np.ndarray]:
    """Run `graph` with placeholders bound by name; return the outputs' arrays.

    Values are dropped as soon as their last user has run, so peak memory follows the graph.
    """
    order = graph.topo_order()
    remaining_uses = {i: len(graph.users(i)) for i in order}
    keep = set(graph.outputs)
    values: dict[int, np.ndarray] = {}
    for node_id in order:
        node = graph.node(node_id)
        if node.op == "input":
            if node.name not in inputs:
                raise KeyError(f"no value bound for input {node.name!r} (%{node_id})")
            value = np.asarray(inputs[node.name])
            if value.shape != node.shape or value.dtype != node.dtype.numpy:
                raise ValueError(f"input {node.name!r} expects {node.dtype.name}{list(node.shape)}, "
                                 f"got {value.dtype}{list(value.shape)}")
        else:
            arguments = [values[i] for i in node.inputs]
            try:
                value = table.get(node.op).evaluate(arguments, node.attrs, node.shape, node.dtype)
            except (IndexError, ValueError) as error:  # data-dependent: an index computed in the graph
                raise op_error(node.op, str(error), node.where, kind=type(error)) from None
        values[node_id] = value
        if on_node is not None:
            on_node(node, value)
        for source in set(node.inputs):
            remaining_uses[source] -= 1
            if remaining_uses[source] == 0 and source not in keep:
                del values[source]
    return [values[i] for i in graph.outputs]
