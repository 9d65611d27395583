"""Algebraic identities: operations that give back an operand, or a value known in advance.

"1" and "0" are uniform values: a 0-d constant, possibly seen through views (``expand``).

    x * 1, 1 * x, x / 1, x + 0, 0 + x, x - 0   -> x
    neg(neg(x)), cast(x) to x's own dtype        -> x
    where(c, x, x), where(true, x, y)            -> x;  where(false, x, y) -> y
    a reduction over no axes                     -> x
    x + neg(y), neg(y) + x                       -> x - y;  x - neg(y) -> x + y
    x * 0, 0 * x  (integer and bool only)        -> 0
    transpose(a @ b)                             -> transpose(b) @ transpose(a)
    x > 0 used beside relu(x) = where(x > 0, x, 0) -> relu(x) > 0 for the other uses
    x <= 0 used beside relu(x) = where(x <= 0, 0, x) -> relu(x) <= 0 for the other uses
    reshape(reduce(x, keepdims=True)) dropping the kept dims -> reduce(x, keepdims=False)

Integer results stay bitwise equal. Float rewrites are exact in IEEE arithmetic: x * 0 is not
folded for floats (inf * 0 and nan * 0 are nan), nor x / 1 for integers (the reference divides
in float64). The one float difference is the sign of a zero: x + 0 (and a sum over no axes,
which adds 0) gives +0.0 for x = -0.0, and the rewrite keeps -0.0; the two compare equal.
"""
from __future__ import annotations

from graphc import dtypes
from graphc.ir.graph import Graph, Node
from graphc.ops import REDUCE, is_category
from graphc.passes.rewrite import holds, replace, uniform_constant


def simplify_algebra(graph: Graph) -> tuple[Graph, bool]:
    """A copy of `graph` with algebraic identities applied; and whether any applied."""
    graph = graph.copy()
    return graph, simplify_algebra_in_place(graph)


def simplify_algebra_in_place(graph: Graph) -> bool:
    """`simplify_algebra` on `graph` itself; whether it changed."""
    changed = False
    for node_id in graph.topo_order():
        node = graph.node(node_id)
        rule = RULES.get(node.op)
        if rule is None and is_category(node.op, REDUCE):
            rule = _reduce
        replacement = rule(graph, node) if rule else None
        if replacement is REWIRED:
            changed = True
        elif replacement is not None:
            replace(graph, node_id, replacement)
            changed = True
    return changed


REWIRED = object()  # a rule changed other nodes' operands; its own node stays


def _is_neg(graph: Graph, node_id: int) -> bool:
    return graph.node(node_id).op == "neg"


def _mul(graph: Graph, node: Node):
    x, y = node.inputs
    if holds(graph, y, 1):
        return x
    if holds(graph, x, 1):
        return y
    if not node.dtype.is_floating_point:  # x * 0 is 0 only where there is no inf or nan
        if holds(graph, y, 0):
            return y
        if holds(graph, x, 0):
            return x
    return None


def _add(graph: Graph, node: Node):
    x, y = node.inputs
    if holds(graph, y, 0):
        return x
    if holds(graph, x, 0):
        return y
    if _is_neg(graph, y):  # x + (-y) is x - y, bit for bit
        return graph.call("sub", [x, graph.node(y).inputs[0]], node.where)
    if _is_neg(graph, x):
        return graph.call("sub", [y, graph.node(x).inputs[0]], node.where)
    return None


def _sub(graph: Graph, node: Node):
    x, y = node.inputs
    if node.dtype is dtypes.bool_:  # numpy refuses to subtract bools: keep the error
        return None
    if holds(graph, y, 0):
        return x
    if _is_neg(graph, y):
        return graph.call("add", [x, graph.node(y).inputs[0]], node.where)
    return None


def _div(graph: Graph, node: Node):
    x, y = node.inputs
    if node.dtype.is_floating_point and holds(graph, y, 1):
        return x
    return None


def _neg(graph: Graph, node: Node):
    source = graph.node(node.inputs[0])
    if source.op != "neg" or node.dtype is dtypes.bool_:  # numpy refuses to negate bools
        return None
    return source.inputs[0]


def _cast(graph: Graph, node: Node):
    source = graph.node(node.inputs[0])
    return source.id if source.dtype is node.dtype else None


def _where(graph: Graph, node: Node):
    condition, x, y = node.inputs
    if x == y:
        return x
    if uniform_constant(graph, condition) is not None:
        return x if holds(graph, condition, True) else y
    return None


def _reduce(graph: Graph, node: Node):
    return node.inputs[0] if not node.attrs["axes"] else None


def _permute(graph: Graph, node: Node):
    """(a @ b)^T = b^T @ a^T: BLAS reads transposed operands for free, so the transposed product
    needs no copy kernel (the weight gradient of a Linear layer has this form). Applied when the
    product has no other use."""
    source = graph.node(node.inputs[0])
    rank = len(node.shape)
    swap_last = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    if source.op != "matmul" or tuple(node.attrs["dims"]) != swap_last or graph.users(source.id) != [node.id]:
        return None
    a, b = source.inputs
    a_t = graph.call("permute", [a], source.where, dims=swap_last)
    b_t = graph.call("permute", [b], source.where, dims=swap_last)
    return graph.call("matmul", [b_t, a_t], source.where)


def _gt(graph: Graph, node: Node):
    """ReLU's mask from its output: where(x > 0, x, 0) is positive exactly where x > 0, so other
    uses of the mask (the backward pass) can read relu(x) instead of x. Then x is needed by the
    forward only and fuses into its producer (a GEMM's epilogue writes relu(x) in place)."""
    return _relu_mask(graph, node, lambda where, x: where.inputs[1] == x and holds(graph, where.inputs[2], 0))


def _le(graph: Graph, node: Node):
    """The same for graphc's relu, where(x <= 0, 0, x) (NaN passes: NaN <= 0 is False): relu(x) <= 0
    exactly where x <= 0, and relu(NaN) is NaN."""
    return _relu_mask(graph, node, lambda where, x: where.inputs[2] == x and holds(graph, where.inputs[1], 0))


def _relu_mask(graph: Graph, node: Node, is_relu):
    """For a mask `x op 0` feeding a relu select: its other users read `relu(x) op 0` instead."""
    x, zero = node.inputs
    if not holds(graph, zero, 0):
        return None
    relu = [u for u in graph.users(node.id)
            if graph.node(u).op == "where" and graph.node(u).inputs[0] == node.id and is_relu(graph.node(u), x)]
    others = [u for u in graph.users(node.id) if u not in relu]
    if not relu or not others:
        return None
    mask = graph.call(node.op, [relu[0], zero], node.where)
    for user in others:
        user_node = graph.node(user)
        user_node.inputs = tuple(mask if i == node.id else i for i in user_node.inputs)
        graph.nx.remove_edge(node.id, user)
        graph.nx.add_edge(mask, user)
    return REWIRED  # the node itself stays: relu's where still uses it


def _reshape(graph: Graph, node: Node):
    """A reduction's kept size-1 dims, then a reshape that drops them: reduce without keeping them
    (so the result is written straight into its final buffer, with no copy kernel)."""
    source = graph.node(node.inputs[0])
    if not is_category(source.op, REDUCE) or not source.attrs.get("keepdims") or len(graph.users(source.id)) != 1:
        return None
    axes = source.attrs["axes"]
    dropped = tuple(s for i, s in enumerate(source.shape) if i not in axes)
    if tuple(node.shape) != dropped:
        return None
    return graph.call(source.op, list(source.inputs), source.where, axes=axes, keepdims=False)


RULES = {"reshape": _reshape, "gt": _gt, "le": _le, "permute": _permute, "mul": _mul, "add": _add, "sub": _sub, "div": _div, "neg": _neg, "cast": _cast,
         "where": _where}
