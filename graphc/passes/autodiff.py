"""Reverse-mode autodiff as a graph pass: add the backward graph to a forward graph.

The walk is micrograd's, over graph nodes instead of scalars: visit nodes from the outputs back
in reverse topological order; each node's gradient is complete when it is reached (all its users
came first), so apply its op's vjp rule and add each input's share to that input's running sum.
The result is an ordinary graph: it can be printed, simplified, compiled and differentiated again.
"""
from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.ops import Emitter, table


def autodiff(graph: Graph, outputs, seeds, wrt) -> list:
    """Add nodes computing d(outputs)/d(wrt) to `graph`, in place; return one id (or None) per wrt.

    `seeds[i]` is the node holding the gradient flowing into `outputs[i]` (ones for a scalar
    loss, or the user's `gradient=`). A wrt node no output depends on gets None.
    """
    wrt = list(wrt)
    # only nodes on a path from some wrt node to some output need a gradient (one walk from all
    # of them each way: a walk per parameter made a deep model's autodiff quadratic)
    downstream = _reachable(wrt, graph.nx.successors)
    upstream = _reachable(outputs, graph.nx.predecessors)
    needed = downstream & upstream
    order = [i for i in graph.topo_order() if i in needed]

    emitter = Emitter(graph)
    grads: dict[int, int] = {}

    def accumulate(node_id, contribution):
        if contribution is None or node_id not in needed:
            return
        grads[node_id] = contribution if node_id not in grads else emitter.add(grads[node_id], contribution)

    for output, seed in zip(outputs, seeds):
        accumulate(output, seed)
    for node_id in reversed(order):
        grad = grads.get(node_id)
        node = graph.node(node_id)
        if grad is None or node.op == "input":
            continue
        rule = table.get(node.op).vjp
        if rule is None:
            continue  # comparisons, sources: no gradient flows through them
        # backward nodes point at the forward line they differentiate, and say so
        emitter.location = f"{node.where or '<graphc>'} (backward of {node.op})"
        input_grads = rule(emitter, node, grad)
        for source, contribution in zip(node.inputs, input_grads):
            accumulate(source, contribution)
    return [grads.get(node_id) for node_id in wrt]


def _reachable(starts, neighbours) -> set:
    """`starts` and every node reachable from them along `neighbours`."""
    seen = set(starts)
    pending = list(seen)
    while pending:
        for neighbour in neighbours(pending.pop()):
            if neighbour not in seen:
                seen.add(neighbour)
                pending.append(neighbour)
    return seen


def backward_graph(graph: Graph, output: int) -> tuple[Graph, dict]:
    """A copy of `graph` with the gradients of scalar `output` w.r.t. every placeholder added as
    outputs; returns it and {placeholder name: gradient id}. Useful for printing and tests."""
    result = graph.copy()
    seed = result.constant(1.0, result.node(output).dtype)
    placeholders = [n for n in result.placeholders() if n.dtype.is_floating_point]
    grad_ids = autodiff(result, [output], [seed], [n.id for n in placeholders])
    names = {}
    for placeholder, grad_id in zip(placeholders, grad_ids):
        if grad_id is not None:
            result.output(grad_id)
            names[placeholder.name] = grad_id
    return result, names
