"""Render a kernel-IR `Program` as one CUDA C++ translation unit plus a launch manifest.

The kernel IR is the one the C renderer reads; only the mapping of its loops onto the GPU is
decided here. Each kernel's top-level statements are split into launches, each an
`extern "C" __global__` function taking its buffers as typed `__restrict__` pointers:

- a `Gemm` is a launch of its own (a shared-memory tiled matmul from the prelude);
- a top-level loop nest without a reduction in it runs one thread per iteration: the perfect
  nest of static loops becomes one flat index (div/mod back to the loop variables) walked by a
  grid-stride loop, so any grid size is correct;
- a loop nest whose body holds a reduction loop (a row reduction, softmax), or other loops but
  too few outer iterations to fill the GPU with threads (col2im per image), runs one block per
  outer iteration: reduction loops are strided over the block's
  threads and combined with warp shuffles and shared memory, other loops are strided over the
  threads, straight-line work is computed by every thread (it is pure) and stored by thread 0;
- statements at the top level that belong together (an accumulator, the reduction filling it
  and the loop that uses it: a full reduction, `x - x.mean()`) run as one block.

Statements inside a thread's share of the work render as C (C++ syntax). A store that adds to
the value it reads (`out[i] = out[i] + x`, scatter_add and col2im) becomes `atomicAdd`, because
other threads may add to the same element.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import jinja2

from codegen.kernel_ir import (Accumulate, Const, Declare, Expr, Gemm, If, Kernel, Let, Load, Loop, Op,
                               Program, Store, Var, walk_statements)
from codegen.render_c import COMBINE, _comment_safe, render_expr

THREADS = 256            # threads per block of one-thread-per-iteration launches
MAX_THREADS = 1024       # the most a block may have
MAX_BLOCKS = 65535       # grids are grid-stride loops: more work than this reuses the blocks
MAX_GRID_Y = 65535       # CUDA's limit on gridDim.y (and z): the matmul's row tiles stride past it
GEMM_TILE = 16           # the tiled matmul's tile edge (GEMM_TILE^2 threads per block)
WARP = 32
# a loop nest whose body has loops but no reduction runs one thread per outer iteration (its
# inner loops serial in the thread) when it has at least this many iterations, else one block each
THREAD_PER_ITERATION_MIN = 2048


@dataclass(frozen=True)
class Launch:
    """One `__global__` launch of the manifest: what the runtime needs to run it.

    params: buffer names in parameter order (temps are passed as arena base + their offset).
    grid, block: CUDA's (x, y, z) launch dimensions; a launch with no blocks is skipped.
    shared_bytes: dynamic shared memory per block.
    kernel: the kernel-IR kernel it came from; mapping: how its loops were mapped, in words.
    gemm: for a matrix-product launch, its `Gemm`, so a runtime may run it with a library GEMM
    (cuBLAS) instead of the tiled kernel; None for every other launch.
    """
    name: str
    params: tuple
    grid: tuple
    block: tuple
    shared_bytes: int = 0
    kernel: str = ""
    mapping: str = ""
    gemm: object = None

    @property
    def blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def threads_per_block(self) -> int:
        return math.prod(self.block)

    @property
    def total_threads(self) -> int:
        return self.blocks * self.threads_per_block


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("codegen", "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_cuda_program(program: Program) -> tuple[str, list]:
    """(CUDA source, launch manifest): the manifest lists every launch in the order to run."""
    functions, manifest = [], []
    for kernel in program.kernels:
        for function, launch in KernelSplitter(program, kernel).launches():
            functions.append(function)
            manifest.append(launch)
    source = environment().get_template("program.cu.jinja").render(
        program=program, functions=functions, uses_random=program.uses_random, checks_indices=program.checks_indices,
        uses_gemm=any(s for k in program.kernels for s in k.body if isinstance(s, Gemm)), tile=GEMM_TILE)
    return source, manifest


# ---- what a statement reads, writes and names ---------------------------------------------------
def _expr_names(expr, found: set) -> set:
    if isinstance(expr, Var):
        found.add(expr.name)
    elif isinstance(expr, Op):
        for argument in expr.args:
            _expr_names(argument, found)
    elif isinstance(expr, Load):
        _expr_names(expr.index, found)
        if expr.mask is not None:
            _expr_names(expr.mask, found)
            _expr_names(expr.other, found)
    return found


def _expr_buffers(expr, found: set) -> set:
    if isinstance(expr, Op):
        for argument in expr.args:
            _expr_buffers(argument, found)
    elif isinstance(expr, Load):
        found.add(expr.buffer)
        for part in (expr.index, expr.mask, expr.other):
            if part is not None:
                _expr_buffers(part, found)
    return found




def _expressions(statement) -> list:
    if isinstance(statement, (Let, Accumulate)):
        return [statement.value]
    if isinstance(statement, Declare):
        return [statement.init]
    if isinstance(statement, Store):
        return [statement.index, statement.value]
    if isinstance(statement, If):
        return [statement.condition]
    if isinstance(statement, Loop):
        return [e for e in (statement.start, statement.stop) if e is not None]
    return []


def used_names(statements) -> set:
    found: set = set()
    for statement in walk_statements(statements):
        for expr in _expressions(statement):
            _expr_names(expr, found)
        if isinstance(statement, Accumulate):
            found.add(statement.name)
    return found


def defined_names(statement) -> set:
    return {s.name for s in walk_statements([statement]) if isinstance(s, (Let, Declare))}


def buffers_of(statements) -> tuple[set, set]:
    """(buffers read, buffers written) by the statements."""
    read, written = set(), set()
    for statement in walk_statements(statements):
        for expr in _expressions(statement):
            _expr_buffers(expr, read)
        if isinstance(statement, Store):
            written.add(statement.buffer)
        elif isinstance(statement, Gemm):
            read |= {statement.a, statement.b}
            written.add(statement.c)
            if statement.sum_batches:
                read.add(statement.c)
    return read, written


def _writes(statements) -> bool:
    return any(isinstance(s, (Store, Gemm)) for s in walk_statements(statements))


def _has_loop(statements) -> bool:
    return any(isinstance(s, Loop) for s in walk_statements(statements))


def _has_reduction(statements) -> bool:
    return any(isinstance(s, Loop) and _carried(s) for s in walk_statements(statements))


def _carried(loop: Loop) -> dict:
    """Accumulators a loop adds into that were declared outside it: name -> combine.

    Read from the body rather than from `loop.reduce`, so a loop that accumulates is treated as
    a reduction whatever its flags say."""
    inside = {s.name for s in walk_statements(loop.body) if isinstance(s, Declare)}
    carried = {}
    for statement in walk_statements(loop.body):
        if isinstance(statement, Accumulate) and statement.name not in inside:
            carried.setdefault(statement.name, statement.combine)
    return carried


def _static(loop: Loop) -> bool:
    return loop.start is None and loop.stop is None


def _perfect_nest(loop: Loop, reduction: bool) -> list:
    """The loops of a perfect nest of static loops starting at `loop` (all reductions or none)."""
    nest = [loop]
    while (len(nest[-1].body) == 1 and isinstance(nest[-1].body[0], Loop) and _static(nest[-1].body[0])
           and bool(_carried(nest[-1].body[0])) == reduction):
        nest.append(nest[-1].body[0])
    return nest


def _accumulated_value(store: Store):
    """For `buf[i] = buf[i] + x` the added x, else None: such stores become atomic adds."""
    value = store.value
    if not isinstance(value, Op) or len(value.args) != 2:
        return None
    if re.sub(r"[\s()]", "", value.template) != "{0}+{1}":
        return None
    first = value.args[0]
    if isinstance(first, Load) and first.buffer == store.buffer and first.index == store.index and first.mask is None:
        return value.args[1]
    return None


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (max(value, 1) - 1).bit_length())


def _block_threads(statements) -> int:
    """Threads for a block that strides its loops: enough for the longest loop, a whole number
    of warps (the block reduction shuffles whole warps), at most MAX_THREADS."""
    longest = 1
    for statement in walk_statements(statements):
        if isinstance(statement, Loop):
            nest = _perfect_nest(statement, bool(_carried(statement))) if _static(statement) else [statement]
            longest = max(longest, math.prod(l.extent for l in nest))
    return min(MAX_THREADS, max(WARP, _next_power_of_two(longest)))


# ---- splitting a kernel into launches ------------------------------------------------------------
class KernelSplitter:
    """Turns one kernel-IR kernel into its launches (rendered function text + manifest entry)."""

    def __init__(self, program: Program, kernel: Kernel):
        self.program = program
        self.kernel = kernel

    def segments(self) -> list:
        """Groups of top-level statements that run as one launch, in order; each with the pure
        top-level Lets it needs (they are recomputed in every launch that reads them)."""
        shared_lets: list = []          # top-level Lets that depend on nothing computed in a launch
        pure_names: set = set()
        groups: list = []               # [statements, names defined in the group]
        for statement in self.kernel.body:
            names = used_names([statement])
            if isinstance(statement, Let) and names <= pure_names:
                shared_lets.append(statement)
                pure_names.add(statement.name)
                continue
            if isinstance(statement, Gemm):
                groups.append([[statement], set()])
                continue
            # a statement that reads what earlier groups define joins them (and all between)
            first = next((i for i, (_, group_names) in enumerate(groups) if names & group_names), None)
            if first is None:
                groups.append([[statement], defined_names(statement)])
                continue
            merged = [[s for group, _ in groups[first:] for s in group] + [statement],
                      set().union(*(n for _, n in groups[first:])) | defined_names(statement)]
            if any(isinstance(s, Gemm) for s in merged[0]):
                raise ValueError(f"{self.kernel.name}: a value computed before a GEMM is used after it")
            groups[first:] = [merged]
        result = []
        for statements, _ in groups:
            needed = used_names(statements)
            lets = []
            for let in reversed(shared_lets):   # the Lets it reads, and the Lets those read
                if let.name in needed:
                    lets.insert(0, let)
                    needed |= used_names([let])
            result.append((lets, statements))
        return result

    def launches(self):
        segments = self.segments()
        count = len(segments)
        for position, (lets, statements) in enumerate(segments):
            name = self.kernel.name if count == 1 else f"{self.kernel.name}_{position}"
            part = "" if count == 1 else f"part {position + 1} of {count}: "
            if isinstance(statements[0], Gemm):
                yield self._gemm_launch(name, part, statements[0])
            elif len(statements) == 1 and isinstance(statements[0], Loop) and _static(statements[0]) \
                    and not _carried(statements[0]):
                yield self._grid_launch(name, part, lets, statements[0])
            else:
                yield self._single_block_launch(name, part, lets, statements)

    # -- the three launch shapes
    def _grid_launch(self, name, part, lets, loop: Loop):
        nest = _perfect_nest(loop, reduction=False)
        body = nest[-1].body
        total = math.prod(l.extent for l in nest)
        writer = BodyWriter(self.program)
        text = writer.statements(lets, 1)
        text += "\n" if text else ""
        if _has_loop(body) and (_has_reduction(body) or total < THREAD_PER_ITERATION_MIN):
            threads = _block_threads(body)
            blocks = min(total, MAX_BLOCKS)
            text += writer.flat_loop(nest, "blockIdx.x", "gridDim.x", 1,
                                            lambda depth: writer.block(body, depth))
            mapping = (f"one block of {threads} threads per iteration of {_nest_text(nest)} "
                       f"({total} iterations); the loops inside strided over the block's threads")
            shared = writer.shared_bytes(threads)
        else:
            threads = THREADS
            blocks = min(-(-total // threads), MAX_BLOCKS)
            text += writer.flat_loop(nest, "(blockIdx.x * (int64_t)blockDim.x + threadIdx.x)",
                                            "((int64_t)gridDim.x * blockDim.x)", 1,
                                            lambda depth: writer.thread(body, depth))
            mapping = f"one thread per iteration of {_nest_text(nest)} ({total} threads, grid-stride)"
            if _has_loop(body):
                mapping += "; the loops inside run in each thread"
            shared = 0
        return self._function(name, part + mapping, lets + [loop], text, threads), \
            Launch(name, self._params(lets + [loop]), (blocks, 1, 1), (threads, 1, 1), shared,
                   self.kernel.name, part + mapping)

    def _single_block_launch(self, name, part, lets, statements):
        writer = BodyWriter(self.program)
        threads = _block_threads(statements)
        text = writer.statements(lets, 1)
        text += ("\n" if text else "") + writer.block(statements, 1)
        mapping = f"one block of {threads} threads; loops strided over its threads"
        return self._function(name, part + mapping, lets + statements, text, threads), \
            Launch(name, self._params(lets + statements), (1, 1, 1), (threads, 1, 1),
                   writer.shared_bytes(threads), self.kernel.name, part + mapping)

    def _gemm_launch(self, name, part, gemm: Gemm):
        empty = gemm.m == 0 or gemm.n == 0
        batches = 1 if gemm.sum_batches else min(gemm.batch, MAX_BLOCKS)
        grid = (0, 0, 0) if empty else (-(-gemm.n // GEMM_TILE), min(-(-gemm.m // GEMM_TILE), MAX_GRID_Y), batches)
        call = (f"  graphc_gemm<{gemm.ctype}, {str(gemm.transpose_a).lower()}, {str(gemm.transpose_b).lower()}>("
                f"{gemm.a} + {gemm.offset_a}, {gemm.b} + {gemm.offset_b}, {gemm.c} + {gemm.offset_c},\n"
                f"      {gemm.m}, {gemm.n}, {gemm.k}, {gemm.lda}, {gemm.ldb}, {gemm.ldc}, {gemm.batch}, "
                f"{gemm.batch_stride_a}, {gemm.batch_stride_b}, {gemm.batch_stride_c}, "
                f"{str(gemm.sum_batches).lower()});")
        transposes = "".join(f", {o} transposed" for o, t in (("A", gemm.transpose_a), ("B", gemm.transpose_b)) if t)
        mapping = (f"tiled matmul C[{gemm.m}x{gemm.n}] {'+=' if gemm.sum_batches else '='} "
                   f"A[{gemm.m}x{gemm.k}] B[{gemm.k}x{gemm.n}]{transposes}, {gemm.batch} batch(es)"
                   + (" summed" if gemm.sum_batches else "") + f", {GEMM_TILE}x{GEMM_TILE} tiles")
        threads = GEMM_TILE * GEMM_TILE
        return self._function(name, part + mapping, [gemm], call, threads), \
            Launch(name, self._params([gemm]), grid, (GEMM_TILE, GEMM_TILE, 1), 0, self.kernel.name,
                   part + mapping, gemm)

    # -- pieces
    def _params(self, statements) -> tuple:
        read, written = buffers_of(statements)
        order = {b.name: i for i, b in enumerate(self.program.buffers)}
        return tuple(sorted(read | written, key=order.__getitem__))

    def _function(self, name, mapping, statements, body_text, threads) -> dict:
        read, written = buffers_of(statements)
        params = []
        for buffer_name in self._params(statements):
            buffer = self.program.buffer(buffer_name)
            const = "" if buffer_name in written else "const "
            restrict = "__restrict__ " if buffer.restrict else ""
            params.append(f"{const}{buffer.ctype} *{restrict}{buffer_name}")
        comment = [_comment_safe(line) for line in self.kernel.comment] + [_comment_safe(mapping)]
        return {"name": name, "comment": comment, "params": params, "body": body_text, "threads": threads}


def _nest_text(nest) -> str:
    return " x ".join(f"{l.var}<{l.extent}" for l in nest)


# ---- statements --------------------------------------------------------------------------------------
class BodyWriter:
    """Renders statements for the three contexts a launch has: straight C inside one thread's
    work, block-level code run by every thread of a block, and flat index loops."""

    def __init__(self, program: Program):
        self.program = program
        self.types: dict = {}          # accumulator name -> ctype, from its Declare
        self.counter = 0
        self.reduces = False           # whether any block reduction was emitted
        self.compensated: set = set()  # float sums being added with Kahan's compensation

    def fresh(self) -> str:
        self.counter += 1
        return f"flat{self.counter - 1}"

    def shared_bytes(self, threads: int) -> int:
        """Dynamic shared memory for the block reductions: one 8-byte slot per warp."""
        return 8 * max(1, threads // WARP) if self.reduces else 0

    def statements(self, statements, depth: int) -> str:
        return "\n".join(self.thread_statement(s, depth) for s in statements)

    # -- inside one thread's work: as in C, with atomic adds
    def thread(self, statements, depth: int) -> str:
        return "\n".join(self.thread_statement(s, depth) for s in statements)

    def thread_statement(self, statement, depth: int) -> str:
        pad = "  " * depth
        if isinstance(statement, Let):
            return f"{pad}const {statement.ctype} {statement.name} = {render_expr(statement.value)};"
        if isinstance(statement, Declare):
            self.types[statement.name] = statement.ctype
            return f"{pad}{statement.ctype} {statement.name} = {render_expr(statement.init)};"
        if isinstance(statement, Accumulate):
            if statement.name in self.compensated and statement.combine == "+":
                name = statement.name
                return f"{pad}graphc_kahan_add({name}, {name}_lost, {render_expr(statement.value)});"
            value = COMBINE[statement.combine].format(statement.name, render_expr(statement.value))
            return f"{pad}{statement.name} = {value};"
        if isinstance(statement, Store):
            return pad + self._store(statement)
        if isinstance(statement, If):
            return self._if(statement, depth, self.thread)
        if isinstance(statement, Loop):
            start = render_expr(statement.start) if statement.start is not None else "0"
            stop = render_expr(statement.stop) if statement.stop is not None else str(statement.extent)
            v = statement.var
            return (f"{pad}for (int64_t {v} = {start}; {v} < {stop}; {v}++) {{\n"
                    f"{self.thread(statement.body, depth + 1)}\n{pad}}}")
        raise TypeError(f"cannot render {statement!r} inside a thread's work")

    def _store(self, store: Store) -> str:
        added = _accumulated_value(store)
        if added is not None:
            return f"graphc_atomic_add(&{store.buffer}[{render_expr(store.index)}], {render_expr(added)});"
        return f"{store.buffer}[{render_expr(store.index)}] = {render_expr(store.value)};"

    def _if(self, statement: If, depth: int, render) -> str:
        pad = "  " * depth
        text = f"{pad}if ({render_expr(statement.condition)}) {{\n{render(statement.body, depth + 1)}\n{pad}}}"
        if statement.orelse:
            text += f" else {{\n{render(statement.orelse, depth + 1)}\n{pad}}}"
        return text

    # -- flat loops over a perfect nest
    def flat_loop(self, nest, first: str, step: str, depth: int, body) -> str:
        """for (flat = first; flat < total; flat += step), the nest's variables recovered by
        div/mod (innermost fastest, as the loops ran)."""
        pad = "  " * depth
        flat = self.fresh()
        total = math.prod(l.extent for l in nest)
        lines = [f"{pad}for (int64_t {flat} = {first}; {flat} < {total}; {flat} += {step}) {{"]
        stride = 1
        for position, loop in enumerate(reversed(nest)):
            outermost = position == len(nest) - 1
            value = flat if stride == 1 else f"{flat} / {stride}"
            if not outermost:
                value = f"{value} % {loop.extent}" if stride == 1 else f"({value}) % {loop.extent}"
            lines.append(f"{pad}  const int64_t {loop.var} = {value};")
            stride *= loop.extent
        lines.append(body(depth + 1))
        lines.append(f"{pad}}}")
        return "\n".join(lines)

    # -- block level: every thread of the block runs this, uniformly
    def block(self, statements, depth: int) -> str:
        """Pure statements run on every thread (each holds the values), stores of scalars on
        thread 0, loops strided over the threads. A barrier separates a phase that writes memory
        from what comes before and after it; a phase is a loop, an `if`, or a run of straight-line
        statements."""
        pad = "  " * depth
        phases: list = []
        for statement in statements:
            straight = not isinstance(statement, (Loop, If))
            if straight and phases and phases[-1][0]:
                phases[-1][1].append(statement)
            else:
                phases.append((straight, [statement]))
        pieces, synced = [], True
        for position, (_, members) in enumerate(phases):
            writes = _writes(members)
            if writes and pieces and not synced:
                pieces.append(f"{pad}__syncthreads();")
            pieces.extend(self.block_statement(s, depth) for s in members)
            synced = False
            if writes and position < len(phases) - 1:
                pieces.append(f"{pad}__syncthreads();")
                synced = True
        return "\n".join(pieces)

    def block_statement(self, statement, depth: int) -> str:
        pad = "  " * depth
        if isinstance(statement, (Let, Declare, Accumulate)):
            return self.thread_statement(statement, depth)
        if isinstance(statement, Store):
            return f"{pad}if (threadIdx.x == 0) {self._store(statement)}"
        if isinstance(statement, If):   # its condition is the same on every thread
            return self._if(statement, depth, self.block)
        if isinstance(statement, Loop):
            carried = _carried(statement)
            if carried:
                return self._block_reduction(statement, carried, depth)
            return self._strided(statement, False, depth)
        raise TypeError(f"cannot render {statement!r} at block level")

    def _strided(self, loop: Loop, reduction: bool, depth: int) -> str:
        """The loop (a perfect static nest flattened) spread over the block's threads."""
        if _static(loop):
            nest = _perfect_nest(loop, reduction)
            return self.flat_loop(nest, "threadIdx.x", "blockDim.x", depth,
                                  lambda inner: self.thread(nest[-1].body, inner))
        pad = "  " * depth
        start = render_expr(loop.start) if loop.start is not None else "0"
        stop = render_expr(loop.stop) if loop.stop is not None else str(loop.extent)
        v = loop.var
        return (f"{pad}for (int64_t {v} = {start} + threadIdx.x; {v} < {stop}; {v} += blockDim.x) {{\n"
                f"{self.thread(loop.body, depth + 1)}\n{pad}}}")

    def _block_reduction(self, loop: Loop, carried: dict, depth: int) -> str:
        """Each thread accumulates its share from the accumulator's initial value (an identity
        of its combine: 0, 1, -inf, false), then the partial results are combined across the
        block (a tree: warp shuffles, then one slot per warp); every thread ends holding the total.
        A thread's share of a floating-point sum can be long (a full reduction of n elements gives
        each of 1024 threads n/1024): it is added with Kahan's compensation, so its error does not
        grow with its length, the C backend's blocked pairwise sums' counterpart."""
        pad = "  " * depth
        compensated = [name for name, combine in carried.items()
                       if combine == "+" and self.types.get(name) in ("float", "double") and name not in self.compensated]
        lines = [f"{pad}{self.types[name]} {name}_lost = 0;  /* Kahan: what rounding dropped from {name} */"
                 for name in compensated]
        self.compensated.update(compensated)
        try:
            lines.append(self._strided(loop, True, depth))
        finally:
            self.compensated.difference_update(compensated)
        lines += [f"{pad}{name} = graphc_kahan_total({name}, {name}_lost);" for name in compensated]
        for name, combine in carried.items():
            ctype = self.types.get(name)
            if ctype is None:
                raise ValueError(f"accumulator {name} of loop {loop.var} has no declaration in scope")
            expression = COMBINE[combine].format("a", "b")
            lines.append(f"{pad}{name} = graphc_block_reduce({name}, "
                         f"[](const {ctype} a, const {ctype} b) -> {ctype} {{ return {expression}; }});")
            self.reduces = True
        return "\n".join(lines)
