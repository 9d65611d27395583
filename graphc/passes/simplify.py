"""`simplify`: the cleanup passes run in order, repeatedly, until none changes the graph.

Each pass makes work for the others (folding a constant turns x * expand(2 * 0.5) into x * 1 for
`simplify_algebra`; removing it leaves the constant for `eliminate_dead_code`), so the pipeline
runs to a fixed point, bounded by `max_rounds`.

>>> from graphc import dtypes
>>> graph = Graph()
>>> x = graph.placeholder("x", (3,), dtypes.float64)
>>> one = graph.call("expand", [graph.constant(1.0, dtypes.float64)], shape=(3,))
>>> graph.output(graph.call("mul", [x, one]))
>>> simpler, changed = simplify(graph)
>>> changed, [node.op for node in simpler.nodes()], simpler.outputs == [x]
(True, ['input'], True)
"""
from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.algebra import simplify_algebra
from graphc.passes.common_subexpressions import eliminate_common_subexpressions
from graphc.passes.constant_folding import fold_constants
from graphc.passes.dead_code import eliminate_dead_code
from graphc.passes.views import collapse_views

PIPELINE = (
    collapse_views,
    fold_constants,
    simplify_algebra,
    eliminate_common_subexpressions,
    eliminate_dead_code,
)


def simplify(graph: Graph, max_rounds: int = 10) -> tuple[Graph, bool]:
    """A simplified copy of `graph`, and whether any pass changed it."""
    if max_rounds < 1:
        raise ValueError(f"simplify: max_rounds must be at least 1, got {max_rounds}")
    changed = False
    for _ in range(max_rounds):
        changed_this_round = False
        for simplify_pass in PIPELINE:
            graph, changed_by_pass = simplify_pass(graph)
            changed_this_round |= changed_by_pass
        if not changed_this_round:
            break
        changed = True
    return graph, changed
