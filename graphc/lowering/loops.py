"""Lower loop kernels (pointwise, reductions, fused row reductions) to codegen's kernel IR.

`LoopKernelBuilder.value(node, index)` returns the C expression for one element of a node at a
multi-index: values held in memory are loads; inlined nodes are computed from their inputs' values
(views become index arithmetic); each value is computed once per scope as a named temporary.
Reductions that run inside the kernel emit their loop into the enclosing outer scope.
"""
from __future__ import annotations

import math

import numpy as np

from codegen.kernel_ir import Accumulate, Const, Declare, Expr, Let, Load, Loop, Op, Store, Var
from graphc import dtypes
from graphc.lowering import index as ix
from graphc.ops import ELEMENTWISE, REDUCE, table


class FusionFailed(Exception):
    """A fused reduction turned out not to fit its consumer's loops: materialize it and re-plan."""

    def __init__(self, node_id: int):
        super().__init__(f"node %{node_id} cannot be fused")
        self.node_id = node_id


def c_literal(value, dtype) -> str:
    if dtype.category == dtypes.FLOATING:
        value = float(np.array(value, dtype=dtype.numpy))
        if math.isnan(value):
            return "NAN"
        if math.isinf(value):
            return "INFINITY" if value > 0 else "(-INFINITY)"
        # the shortest decimal that reads back as the same value, so the source stays readable
        text = str(np.float32(value)) if dtype is dtypes.float32 else repr(value)
        if "e" not in text and "." not in text:
            text += ".0"
        return f"{text}{'f' if dtype is dtypes.float32 else ''}"
    if dtype.category == dtypes.INTEGER:
        return f"INT64_C({int(value)})" if dtype is dtypes.int64 else f"({int(value)})"
    return "true" if value else "false"


REDUCE_INIT = {"sum": lambda d: c_literal(0, d), "prod": lambda d: c_literal(1, d),
               "max": lambda d: "(-INFINITY)" if d.is_floating_point else (
                   "INT64_MIN" if d is dtypes.int64 else "INT32_MIN" if d is dtypes.int32 else "false")}
COMBINE_OF = {"sum": "+", "prod": "*", "max": "max"}


class Scope:
    def __init__(self, variables):
        self.statements: list = []
        self.cache: dict = {}
        self.variables = set(variables)


class LoopKernelBuilder:
    """Builds the statements of one loop kernel."""

    def __init__(self, graph, members, buffer_of, names):
        self.graph = graph
        self.members = set(members)
        self.buffer_of = buffer_of    # node id -> buffer name for values in memory
        self.names = names            # shared counter source for temporaries
        self.scopes: list[Scope] = []
        self.outer_depth = 0          # scopes[outer_depth - 1] is where fused reductions go
        self.in_place = (None, None)  # (node, index): a value read in place, only at that index
        self.stash = None             # (reduction, its input, output buffer, root index): see _stash_for

    # ---- naming and scopes ---------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self.names[prefix] = self.names.get(prefix, -1) + 1
        return f"{prefix}{self.names[prefix]}"

    def push(self, variables=()) -> Scope:
        scope = Scope(variables)
        self.scopes.append(scope)
        return scope

    def pop(self) -> list:
        return self.scopes.pop().statements

    def _lookup(self, key):
        for scope in reversed(self.scopes):
            if key in scope.cache:
                return scope.cache[key]
        return None

    def emit(self, statement) -> None:
        self.scopes[-1].statements.append(statement)

    # ---- values --------------------------------------------------------------------------------
    def value(self, node_id: int, index) -> Expr:
        index = tuple(index)
        key = (node_id, index)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        node = self.graph.node(node_id)
        stash = self.stash
        if stash is not None and node_id == stash[1] and index == stash[3]:
            expr = Load(stash[2], ix.linear(index, self.graph.node(node_id).shape))
            name = self.fresh("v")
            self.emit(Let(name, self.graph.node(node_id).dtype.c_type, expr))
            self.scopes[-1].cache[key] = Var(name)
            return Var(name)
        if node_id not in self.members:
            if node_id == self.in_place[0] and index != self.in_place[1]:
                raise FusionFailed(node_id)  # read elsewhere than it is written: needs its own buffer
            buffer = self.buffer_of[node_id]
            expr = Load(buffer, ix.linear(index, node.shape))
        elif table.get(node.op).category == REDUCE:
            return self._fused_reduction(node, index)
        else:
            expr = self._compute(node, index)
        if isinstance(expr, (Var, Const)):
            self.scopes[-1].cache[key] = expr
            return expr
        name = self.fresh("v")
        self.emit(Let(name, node.dtype.c_type, expr))
        self.scopes[-1].cache[key] = Var(name)
        return Var(name)

    def _compute(self, node, index) -> Expr:
        op = node.op
        entry = table.get(op)
        if op == "cast":
            return Op(f"(({node.dtype.c_type}){{0}})", (self.value(node.inputs[0], index),))
        if entry.category == ELEMENTWISE:
            return Op(entry.c, tuple(self.value(i, index) for i in node.inputs))
        return getattr(self, f"_{op}")(node, index)

    # sources
    def _constant(self, node, index):
        return Const(c_literal(node.attrs["value"], node.dtype))

    def _iota(self, node, index):
        return Op(f"(({node.dtype.c_type}){{0}})", (index[node.attrs["axis"]],))

    def _rand(self, node, index):
        key = node.inputs[0]
        seed = self.value(key, (ix.const(0),))
        offset = self.value(key, (ix.const(1),))
        position = ix.linear(index, node.shape)
        return Op("graphc_uniform((uint64_t){0}, (uint64_t){1} + (uint64_t)({2}), %d)" % node.attrs.get("lane", 0),
                  (seed, offset, position))

    # views: index arithmetic on the way to the input
    def _reshape(self, node, index):
        source = self.graph.node(node.inputs[0])
        return self.value(source.id, ix.reshape_index(index, node.shape, source.shape))

    def _permute(self, node, index):
        dims = node.attrs["dims"]
        source_index = [None] * len(dims)
        for position, dim in enumerate(dims):
            source_index[dim] = index[position]
        return self.value(node.inputs[0], source_index)

    def _expand(self, node, index):
        source = self.graph.node(node.inputs[0])
        lead = len(node.shape) - len(source.shape)
        source_index = [ix.const(0) if size == 1 else index[lead + d] for d, size in enumerate(source.shape)]
        return self.value(source.id, source_index)

    def _slice(self, node, index):
        starts, steps = node.attrs["starts"], node.attrs["steps"]
        return self.value(node.inputs[0], [ix.add(ix.const(start), ix.mul(i, step))
                                           for i, start, step in zip(index, starts, steps)])

    def _pad(self, node, index):
        source = self.graph.node(node.inputs[0])
        masks, source_index = [], []
        for position, (low, high), size in zip(index, node.attrs["pads"], source.shape):
            shifted = ix.sub(position, ix.const(low))
            if low or high:
                masks.append(ix.in_range(shifted, size))
                shifted = ix.clamp(shifted, size)
            source_index.append(shifted)
        inner = self.value(source.id, source_index)
        if not masks:
            return inner
        mask = masks[0] if len(masks) == 1 else Op(" && ".join("{%d}" % i for i in range(len(masks))), tuple(masks))
        return Op("({0} ? {1} : {2})", (mask, inner, Const(c_literal(node.attrs["value"], node.dtype))))

    def _cat(self, node, index):
        axis = node.attrs["axis"]
        position = index[axis]
        pieces, offset = [], 0
        for source_id in node.inputs:
            size = self.graph.node(source_id).shape[axis]
            local = ix.clamp(ix.sub(position, ix.const(offset)), size)
            value = self.value(source_id, index[:axis] + (local,) + index[axis + 1:])
            pieces.append((offset + size, value))
            offset += size
        return _select(position, pieces)

    def _gather(self, node, index):
        source_id, index_id = node.inputs
        axis = node.attrs["axis"]
        size = self.graph.node(source_id).shape[axis]
        chosen = ix.checked(Op("((int64_t){0})", (self.value(index_id, index),)), size, node.id)
        return self.value(source_id, index[:axis] + (chosen,) + index[axis + 1:])

    # ---- reductions ----------------------------------------------------------------------------
    def reduction(self, node, index, outer_index_vars) -> Var:
        """Emit `node`'s reduction for one output element into the current scope."""
        source = self.graph.node(node.inputs[0])
        axes = tuple(node.attrs["axes"])
        keepdims = node.attrs.get("keepdims", False)
        accumulator = self.fresh("acc")
        combine = COMBINE_OF[node.op]
        self.emit(Declare(accumulator, node.dtype.c_type, Const(REDUCE_INIT[node.op](node.dtype))))
        loop_vars = {axis: self.fresh("r") for axis in axes}
        source_index, position = [], 0
        for dim in range(len(source.shape)):
            if dim in loop_vars:
                source_index.append(Var(loop_vars[dim]))
                position += 1 if keepdims else 0
            else:
                source_index.append(index[position])
                position += 1
        if small_reduction(source.shape, axes):
            return self._unrolled_reduction(node, source, axes, source_index, accumulator, combine)
        self.push(loop_vars.values())
        value = self.value(source.id, source_index)
        if self.stash is not None and self.stash[0] == node.id:
            self.emit(Store(self.stash[2], ix.linear(source_index, source.shape), value))
        nan_flag = None
        if combine == "max" and node.dtype.is_floating_point:
            # a vectorizable max (OpenMP's max reduction drops NaN), plus a flag that brings NaN
            # back afterwards: NumPy's and PyTorch's max propagate it
            nan_flag = self.fresh("nan")
            self.emit(Accumulate(accumulator, "max_ordered", value))
            self.emit(Accumulate(nan_flag, "|", Op("({0} != {0})", (value,))))
            reduce_clause = (("max", accumulator), ("|", nan_flag))
        else:
            self.emit(Accumulate(accumulator, combine, value))
            reduce_clause = ((combine, accumulator),)
        body = self.pop()
        for depth, axis in enumerate(reversed(axes)):
            innermost = depth == 0
            body = [Loop(loop_vars[axis], source.shape[axis], body, simd=innermost, reduce=reduce_clause)]
        if nan_flag is not None:
            self.emit(Declare(nan_flag, "int32_t", Const("0")))  # int, not bool: lanes as wide as floats
        for statement in body:
            self.emit(statement)
        if nan_flag is not None:
            result = self.fresh("v")
            self.emit(Let(result, node.dtype.c_type, Op("({0} ? NAN : {1})", (Var(nan_flag), Var(accumulator)))))
            return Var(result)
        return Var(accumulator)

    def _unrolled_reduction(self, node, source, axes, source_index, accumulator, combine) -> Var:
        """A reduction over a few elements (a pooling window): one statement per element, so the
        loop around it (over the outputs) is the one the compiler vectorizes."""
        positions = [[]]
        for axis in axes:
            positions = [p + [(axis, k)] for p in positions for k in range(source.shape[axis])]
        for assignment in positions:
            chosen = dict(assignment)
            element_index = [ix.const(chosen[d]) if d in chosen else i for d, i in enumerate(source_index)]
            value = self.value(source.id, element_index)
            if self.stash is not None and self.stash[0] == node.id:
                self.emit(Store(self.stash[2], ix.linear(element_index, source.shape), value))
            self.emit(Accumulate(accumulator, combine, value))
        return Var(accumulator)

    def _fused_reduction(self, node, index) -> Var:
        free = _variables(index)
        target = None
        for depth in range(len(self.scopes) - 1, -1, -1):
            bound = set().union(*(s.variables for s in self.scopes[:depth + 1]))
            if free <= bound:
                target = depth
        if target is None or target > self.outer_depth - 1 and self.outer_depth:
            raise FusionFailed(node.id)
        # emit into the outermost scope where the index is defined
        saved = self.scopes
        self.scopes = saved[:target + 1]
        try:
            result = self.reduction(node, index, free)
        finally:
            self.scopes = saved
        saved[target].cache[(node.id, tuple(index))] = result
        return result


def _select(position, pieces):
    """The piece whose range holds `position`: a balanced tree of comparisons (depth log n), so a
    cat of a thousand tensors stays a shallow expression."""
    if len(pieces) == 1:
        return pieces[0][1]
    middle = len(pieces) // 2
    bound = pieces[middle - 1][0]
    return Op("({0} < %d ? {1} : {2})" % bound,
              (position, _select(position, pieces[:middle]), _select(position, pieces[middle:])))


UNROLL_LIMIT = 16  # reductions over at most this many elements are written out, not looped


def small_reduction(shape, axes) -> bool:
    return 0 < math.prod(shape[a] for a in axes) <= UNROLL_LIMIT


def _variables(expr_or_index) -> set:
    found = set()
    stack = list(expr_or_index) if isinstance(expr_or_index, (tuple, list)) else [expr_or_index]
    while stack:
        item = stack.pop()
        if isinstance(item, Var):
            found.add(item.name)
        elif isinstance(item, Op):
            stack.extend(item.args)
        elif isinstance(item, Load):
            stack.append(item.index)
            if item.mask is not None:
                stack.extend([item.mask, item.other])
    return found


def build_loop_kernel(graph, kernel_plan, buffer_of, names) -> list:
    """Statements of a pointwise or reduction kernel writing `kernel_plan.root`'s buffer."""
    root = graph.node(kernel_plan.root)
    members = [m for m in kernel_plan.members if m not in kernel_plan.contraction_members]
    builder = LoopKernelBuilder(graph, members, buffer_of, names)
    output = buffer_of[root.id]
    if kernel_plan.kind == "reduce":
        outer_shape, inner_shape = root.shape, ()
    else:
        split = len(root.shape) - kernel_plan.inner_axes
        outer_shape, inner_shape = root.shape[:split], root.shape[split:]
    outer_vars = [builder.fresh("i") for _ in outer_shape]
    inner_vars = [builder.fresh("j") for _ in inner_shape]
    builder.push()                      # the function body
    builder.push(outer_vars)            # inside the outer loops
    builder.outer_depth = 2
    if kernel_plan.kind == "reduce":
        index = tuple(Var(v) for v in outer_vars)
        value = builder.reduction(root, index, set(outer_vars))
        builder.emit(Store(output, ix.linear(index, root.shape), value))
    elif inner_vars:
        builder.push(inner_vars)
        index = tuple(Var(v) for v in outer_vars + inner_vars)
        builder.in_place = (kernel_plan.contraction, index)
        stash = _stash_for(graph, root, members, kernel_plan)
        if stash is not None:
            builder.stash = stash + (output, index)
        value = builder.value(root.id, index)
        builder.emit(Store(output, ix.linear(index, root.shape), value))
        body = builder.pop()
        body = _nest(inner_vars, inner_shape, body, parallel=False)
        for statement in body:
            builder.emit(statement)
    else:
        index = tuple(Var(v) for v in outer_vars)
        builder.in_place = (kernel_plan.contraction, index)
        value = builder.value(root.id, index)
        builder.emit(Store(output, ix.linear(index, root.shape), value))
    body = builder.pop()
    unrolled = kernel_plan.kind == "reduce" and small_reduction(graph.node(root.inputs[0]).shape, root.attrs["axes"])
    body = _nest(outer_vars, outer_shape, body, parallel=True,
                 simd_inner=not inner_vars and (kernel_plan.kind != "reduce" or unrolled))
    return builder.pop() + body


def _stash_for(graph, root, members, kernel_plan):
    """(reduction, its input X) when a row kernel would compute X twice per element: once inside
    the fused reduction over the row and again to write the row (softmax's exp). The reduction pass
    then stores X into the output row (the row is in cache) and the write pass reads it back."""
    if kernel_plan.contraction is not None:
        return None
    member_set = set(members)
    for member in members:
        node = graph.node(member)
        if node.id == root.id or table.get(node.op).category != REDUCE:
            continue
        source = graph.node(node.inputs[0])
        if (source.id not in member_set or source.shape != root.shape or source.dtype is not root.dtype
                or table.get(source.op).category != ELEMENTWISE):
            continue
        if _reached_elementwise(graph, root.id, source.id, member_set):
            return (node.id, source.id)
    return None


def _reached_elementwise(graph, start: int, target: int, members: set) -> bool:
    """Does `start` use `target` through elementwise members only (so at the same index)?"""
    stack, seen = [start], set()
    while stack:
        current = stack.pop()
        if current == target:
            return True
        if current in seen or current not in members:
            continue
        seen.add(current)
        node = graph.node(current)
        if table.get(node.op).category == ELEMENTWISE:
            stack.extend(node.inputs)
    return False


def _nest(variables, shape, body, parallel: bool, simd_inner: bool = True) -> list:
    """Wrap `body` in loops over `shape` (outermost first); innermost vectorized."""
    for depth, (variable, extent) in enumerate(reversed(list(zip(variables, shape)))):
        outermost = depth == len(variables) - 1
        body = [Loop(variable, extent, body, parallel=parallel and outermost,
                     simd=simd_inner and depth == 0)]
    return body
