"""Fusion: decide which values get memory, and group the rest into the kernels that compute them.

A value is materialized (given a buffer) only where it must be: graph outputs, contraction and
scatter results and operands, reductions that cannot run inside their consumer's loop, and
non-trivial values needed by more than one kernel. Every other node is inlined into the kernel of
each value that uses it: elementwise chains and views become one loop with index arithmetic, and a
reduction over the trailing axes of its consumer's domain runs inside that consumer's loop nest
(a row softmax is one kernel: max, sum and the normalized write share the row loop).

The result is an analysis (`FusionPlan`); lowering turns each `KernelPlan` into codegen's kernel IR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc.ir.graph import Graph
from graphc.ops import CONTRACTION, ELEMENTWISE, MOVEMENT, REDUCE, SOURCE, table

# values that are cheap to recompute in every kernel that reads them: loads and index arithmetic
TRIVIAL_OPS = {"reshape", "permute", "expand", "slice", "pad", "cat", "gather", "constant", "iota", "cast"}
# elementwise ops worth computing again rather than storing and loading (no transcendental math,
# no division); a small cone of them feeding several kernels is recomputed in each
EXPENSIVE_OPS = {"exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "pow", "div", "reciprocal",
                 "floor_divide", "remainder", "rand"}
CHEAP_CONE_LIMIT = 6


@dataclass
class KernelPlan:
    """One kernel: it writes `root`'s value; `members` are the nodes computed inside it."""
    root: int
    kind: str  # 'pointwise' | 'reduce' | 'matmul' | 'conv2d' | 'conv2d_input_grad' | 'conv2d_weight_grad' | 'scatter'
    members: list = field(default_factory=list)
    inner_axes: int = 0  # trailing axes of the root's domain reduced by fused reductions
    contraction: int | None = None  # a matmul/conv whose output this pointwise kernel finishes in place
    contraction_members: list = field(default_factory=list)  # the contraction and its operand views

    @property
    def contraction_node(self) -> int:
        """The matmul/conv node this kernel runs (the root itself unless it has an epilogue)."""
        return self.contraction if self.contraction is not None else self.root


@dataclass
class FusionPlan:
    graph: Graph
    materialized: set
    kernels: list

    def kernel_of(self, node_id: int) -> KernelPlan:
        for kernel in self.kernels:
            if node_id in kernel.members:
                return kernel
        raise KeyError(node_id)

    def describe(self) -> str:
        lines = []
        for index, kernel in enumerate(self.kernels):
            ops = ", ".join(f"%{m} {self.graph.node(m).op}" for m in kernel.members)
            lines.append(f"kernel {index} [{kernel.kind}] writes %{kernel.root}: {ops}")
        return "\n".join(lines)


def kernel_kind(op: str) -> str:
    if op == "matmul":
        return "matmul"
    if op.startswith("conv2d"):
        return op
    if op == "scatter_add":
        return "scatter"
    if table.get(op).category == REDUCE:
        return "reduce"
    return "pointwise"


def gemm_operand(graph: Graph, node_id: int):
    """How BLAS can read a matmul operand without a copy: (base, transposed, batch_broadcast).

    Accepted: a materializable base, optionally behind a permute swapping the last two axes and an
    expand of leading batch axes (stride 0 between batches). None when a copy is needed.
    """
    node = graph.node(node_id)
    broadcast = False
    if node.op == "expand":
        source = graph.node(node.inputs[0])
        lead = len(node.shape) - len(source.shape)
        batch_source = (1,) * lead + source.shape
        if batch_source[-2:] != node.shape[-2:] or any(s != 1 for s in batch_source[:-2]):
            return None
        broadcast, node = True, source
        if node.op == "reshape" and node.shape[-2:] == graph.node(node.inputs[0]).shape[-2:] and \
                all(s == 1 for s in node.shape[:-2]) and len(graph.node(node.inputs[0]).shape) == 2:
            node = graph.node(node.inputs[0])
    transposed = False
    if node.op == "permute":
        rank = len(node.shape)
        if tuple(node.attrs["dims"]) == tuple(range(rank - 2)) + (rank - 1, rank - 2):
            transposed, node = True, graph.node(node.inputs[0])
    if node.op in ("constant", "iota"):
        return None
    return node.id, transposed, broadcast


# a chain of elementwise ops longer than this is cut into several kernels: one expression per
# element as deep as a lazy loop that never reads (`total += x` ten thousand times) would be
# rendered recursively and compiled slowly, and gains nothing over a buffer every 64 ops
MAX_FUSED_DEPTH = 64


def fuse(graph: Graph, force_materialize=()) -> FusionPlan:
    """Plan kernels for `graph` (which is not modified)."""
    order = graph.topo_order()
    outputs = set(graph.outputs)
    forced = set(force_materialize)
    needs_memory = set()  # operands that a contraction or scatter reads from memory
    for node_id in order:
        node = graph.node(node_id)
        kind = kernel_kind(node.op) if node.op != "input" else None
        if kind in ("matmul",):
            for operand in node.inputs:
                layout = gemm_operand(graph, operand)
                needs_memory.add(layout[0] if layout is not None else operand)
        elif kind in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"):
            needs_memory.update(node.inputs)
        elif kind == "scatter":
            needs_memory.add(node.inputs[0])

    materialized: set = set()
    roots_of: dict = {}
    inner_axes: dict = {}
    depth_of: dict = {}   # how many fused ops lie between a node and its kernel's root
    for node_id in reversed(order):
        node = graph.node(node_id)
        if node.op == "input":
            continue
        users = graph.users(node_id)
        roots = set()
        for user in users:
            roots |= roots_of.get(user, set())
        depth = 1 + max((depth_of.get(user, 0) for user in users), default=0)
        kind = kernel_kind(node.op)
        must = (node_id in outputs or node_id in forced or node_id in needs_memory
                or kind != "pointwise" and kind != "reduce" or depth > MAX_FUSED_DEPTH)
        if kind == "reduce" and not must and _row_fusable(graph, node, roots, inner_axes):
            [root] = roots
            inner_axes[root] = len(node.attrs["axes"])
            roots_of[node_id] = roots
            continue
        shared = len(roots) > 1 and node.op not in TRIVIAL_OPS and not _cheap(graph, node_id)
        if kind == "reduce" or must or shared:
            materialized.add(node_id)
            roots_of[node_id] = {node_id}
        elif roots:
            roots_of[node_id] = roots
            depth_of[node_id] = depth
        # a node with no users and not an output is dead: nothing computes it

    epilogues = _epilogues(graph, materialized, roots_of, outputs | forced)
    kernels = []
    for node_id in order:
        if node_id in materialized and node_id not in epilogues.values():
            kernel = KernelPlan(node_id, kernel_kind(graph.node(node_id).op),
                                inner_axes=inner_axes.get(node_id, 0))
            if node_id in epilogues:
                kernel.contraction = epilogues[node_id]
                kernel.kind = kernel_kind(graph.node(kernel.contraction).op)
            kernels.append(kernel)
    materialized -= set(epilogues.values())
    by_root = {k.root: k for k in kernels}
    redirect = {contraction: root for root, contraction in epilogues.items()}
    for node_id in order:
        if graph.node(node_id).op == "input":
            continue
        for root in sorted(roots_of.get(node_id, ())):
            kernel = by_root[redirect.get(root, root)]
            kernel.members.append(node_id)
            if root in redirect:
                kernel.contraction_members.append(node_id)
    return FusionPlan(graph, materialized, kernels)


def _cheap(graph: Graph, node_id: int) -> bool:
    """Is recomputing this value in each kernel that needs it cheaper than a buffer? True for a few
    comparisons, selects and additions over loads (a ReLU mask, a one-hot of an argmax)."""
    count, stack, seen = 0, [node_id], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = graph.node(current)
        category = table.get(node.op).category if node.op != "input" else SOURCE
        if category == CONTRACTION:
            return False  # keep matmul/conv results whole: their consumer can be a fused epilogue
        if node.op in ("input", "constant", "iota") or category == REDUCE:
            continue  # a load, a literal, or a value that gets its own buffer anyway
        if node.op in EXPENSIVE_OPS or category not in (ELEMENTWISE, MOVEMENT) or node.op == "scatter_add":
            return False
        count += 1
        if count > CHEAP_CONE_LIMIT:
            return False
        stack.extend(node.inputs)
    return True


def _epilogues(graph: Graph, materialized: set, roots_of: dict, keep: set) -> dict:
    """Pointwise root -> the matmul/conv whose result it finishes (bias, activation).

    The contraction writes straight into the root's buffer and the root's loop then reads and
    rewrites it in place, element by element, so the raw product never gets a buffer of its own.
    """
    epilogues = {}
    for node_id in materialized:
        node = graph.node(node_id)
        if kernel_kind(node.op) not in ("matmul", "conv2d") or node_id in keep:
            continue
        users = graph.users(node_id)
        roots = set()
        for user in users:
            if user in materialized:
                roots.add(None)
            roots |= roots_of.get(user, {None})
        if len(roots) != 1 or None in roots:
            continue
        [root] = roots
        root_node = graph.node(root)
        if (kernel_kind(root_node.op) == "pointwise" and root_node.shape == node.shape
                and root_node.dtype is node.dtype and root not in epilogues):
            epilogues[root] = node_id
    return epilogues


def _row_fusable(graph: Graph, node, roots: set, inner_axes: dict) -> bool:
    """Can reduction `node` run inside the loop nest of the single kernel that uses it?"""
    if len(roots) != 1:
        return False
    [root] = roots
    root_node = graph.node(root)
    source_shape = graph.node(node.inputs[0]).shape
    axes = tuple(node.attrs["axes"])
    rank = len(source_shape)
    if not axes or axes != tuple(range(rank - len(axes), rank)):
        return False
    root_kind = kernel_kind(root_node.op)
    if root_kind == "pointwise":
        domain = root_node.shape
    elif root_kind == "reduce":
        if tuple(root_node.attrs["axes"]) != axes:
            return False
        domain = graph.node(root_node.inputs[0]).shape
    else:
        return False
    if tuple(domain) != tuple(source_shape):
        return False
    return inner_axes.get(root, len(axes)) == len(axes)
