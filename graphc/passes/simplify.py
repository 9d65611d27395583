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
from graphc.passes.algebra import simplify_algebra_in_place
from graphc.passes.common_subexpressions import eliminate_common_subexpressions_in_place
from graphc.passes.constant_folding import fold_constants_in_place
from graphc.passes.dead_code import eliminate_dead_code_in_place
from graphc.passes.views import collapse_views_in_place

# each rewrites the graph it is given and says whether it changed it; `simplify` copies the graph
# once and runs them on that copy (a copy per pass and round was most of simplify's time)
PIPELINE = (
    collapse_views_in_place,
    fold_constants_in_place,
    simplify_algebra_in_place,
    eliminate_common_subexpressions_in_place,
    eliminate_dead_code_in_place,
)


def simplify(graph: Graph, max_rounds: int = 10) -> tuple[Graph, bool]:
    """A simplified copy of `graph`, and whether any pass changed it."""
    if max_rounds < 1:
        raise ValueError(f"simplify: max_rounds must be at least 1, got {max_rounds}")
    graph = graph.copy()
    changed = False
    for _ in range(max_rounds):
        changed_this_round = False
        for simplify_pass in PIPELINE:
            _continue_ids_as_a_copy_would(graph)
            changed_this_round |= simplify_pass(graph)
        if not changed_this_round:
            break
        changed = True
    return graph, changed


def _continue_ids_as_a_copy_would(graph: Graph) -> None:
    """New nodes get ids after the highest one left, as they did when every pass worked on a fresh
    copy (`Graph.copy` starts counting there), so the simplified graph, its generated code and the
    cache keys made from it stay what they were."""
    graph._next_id = max(graph.nx, default=-1) + 1
