"""Render a kernel-IR `Program` to one C translation unit.

Jinja renders the skeleton (prelude, one static function per kernel, the entry point); the
statements and expressions of each kernel body are rendered here, recursively, with two-space
indentation, so the generated file reads like hand-written C.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jinja2

from codegen.kernel_ir import (Accumulate, Buffer, Const, Declare, Expr, Gemm, If, Kernel, Let, Load, Loop,
                               Op, Program, Store, Var, walk_statements)

# math functions given vector variants through libmvec prototypes in the prelude
SIMD_FUNCTIONS = ("exp", "log", "sin", "cos", "tanh", "erf")
# <math.h> functions the prelude makes type-generic (float arguments call the f-suffixed one)
GENERIC_UNARY = ("acos", "asin", "atan", "acosh", "asinh", "atanh", "cos", "sin", "tan", "cosh", "sinh", "tanh",
                 "exp", "exp2", "expm1", "log", "log10", "log1p", "log2", "cbrt", "fabs", "sqrt", "erf", "erfc",
                 "lgamma", "tgamma", "ceil", "floor", "nearbyint", "rint", "round", "trunc")
GENERIC_BINARY = ("atan2", "copysign", "fdim", "fmax", "fmin", "fmod", "hypot", "nextafter", "pow", "remainder")
# below this many elements a kernel runs on one thread: OpenMP's fork costs more than it saves
PARALLEL_THRESHOLD = 1 << 18
# floating-point sums add about this many elements into a block sum (a vectorized loop: each lane
# adds SUM_BLOCK / lanes of them); block sums are combined pairwise (see the prelude)
SUM_BLOCK = 512
# a sum at a kernel's top level over at least PARALLEL_THRESHOLD elements runs in chunks of whole
# blocks on all threads: at least SUM_CHUNK elements each and at most SUM_CHUNKS of them, fixed by
# the shapes alone, so the result does not depend on the number of threads
SUM_CHUNK = 1 << 16
SUM_CHUNKS = 1024
SUM_SUFFIX = {"float": "f32", "double": "f64"}
SUM_LANES = {"float": 32, "double": 16}   # two 64-byte vectors of partial sums


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("codegen", "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_program(program: Program, entry: str = "graphc_entry", profile: bool = False,
                   stepping: bool = False) -> str:
    """One C translation unit; `profile` adds per-kernel timers (graphc_kernel_seconds);
    `stepping` adds `graphc_run_kernel(index, buffers)`, one kernel at a time, for the check modes."""
    kernels = [{"name": k.name, "comment": [_comment_safe(line) for line in k.comment],
                "declarations": _declarations(program, k),
                "body": render_statements(k.body, 1, k.work, declared_types(k.body))} for k in program.kernels]
    return environment().get_template("program.c.jinja").render(
        program=program, kernels=kernels, entry=entry, profile=profile, stepping=stepping, uses_blas=program.uses_blas,
        uses_random=program.uses_random, checks_indices=program.checks_indices,
        simd_functions=SIMD_FUNCTIONS, generic_unary=GENERIC_UNARY, generic_binary=GENERIC_BINARY)


def _comment_safe(text: str) -> str:
    """User file names go into comments only, and never end the comment early."""
    return text.replace("*/", "* /").replace("\n", " ")


def _declarations(program: Program, kernel: Kernel) -> list:
    lines = []
    for name in kernel.buffers:
        buffer = program.buffer(name)
        if buffer.role == "temp":
            lines.append(f"{buffer.ctype} *restrict {name} = ({buffer.ctype} *)((char *)buffers[{program.arena_slot}]"
                         f" + {buffer.offset});")
        else:
            qualifier = "*restrict" if buffer.restrict else "*"
            lines.append(f"{buffer.ctype} {qualifier} {name} = ({buffer.ctype} *)buffers[{buffer.slot}];")
    return lines


# ---- expressions -----------------------------------------------------------------------------------
def render_expr(expr: Expr) -> str:
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Const):
        return expr.text
    if isinstance(expr, Op):
        return expr.template.format(*(render_expr(a) for a in expr.args))
    if isinstance(expr, Load):
        access = f"{expr.buffer}[{render_expr(expr.index)}]"
        if expr.mask is None:
            return access
        return f"({render_expr(expr.mask)} ? {access} : {render_expr(expr.other)})"
    raise TypeError(f"cannot render {expr!r}")


# ---- statements ------------------------------------------------------------------------------------
# 'max' keeps the running value on ties (amax of [0., -0.] is 0., PyTorch's) and takes a NaN from
# either side
COMBINE = {"+": "{0} + {1}", "*": "{0} * {1}", "max": "(({1} > {0} || {1} != {1}) ? {1} : {0})",
           "max_ordered": "({1} > {0} ? {1} : {0})", "|": "{0} | {1}"}
OPENMP_REDUCTION = {"+": "+", "*": "*", "max": "max", "|": "|"}


def declared_types(statements) -> dict:
    """name -> ctype of every accumulator the statements declare (nested ones included)."""
    types = {}
    for statement in walk_statements(statements):
        if isinstance(statement, Declare):
            types[statement.name] = statement.ctype
    return types




def render_statements(statements, depth: int, work: int = 0, types: dict | None = None) -> str:
    """Statements at `depth` (1: a kernel's top level). `types` (accumulator -> ctype, see
    `declared_types`) lets floating-point sums render accurately; without it they are read from
    the statements."""
    if types is None:
        types = declared_types(statements)
    return "\n".join(render_statement(s, depth, work, types) for s in statements)


def render_statement(statement, depth: int, work: int, types: dict | None = None) -> str:
    pad = "  " * depth
    types = {} if types is None else types
    if isinstance(statement, Let):
        return f"{pad}const {statement.ctype} {statement.name} = {render_expr(statement.value)};"
    if isinstance(statement, Store):
        return f"{pad}{statement.buffer}[{render_expr(statement.index)}] = {render_expr(statement.value)};"
    if isinstance(statement, Declare):
        return f"{pad}{statement.ctype} {statement.name} = {render_expr(statement.init)};"
    if isinstance(statement, Accumulate):
        value = COMBINE[statement.combine].format(statement.name, render_expr(statement.value))
        return f"{pad}{statement.name} = {value};"
    if isinstance(statement, Loop):
        sums = _float_sums(statement, types)
        if sums:
            blocked = SumNest.of(statement, sums, types)
            if blocked is not None:
                return blocked.render(depth, work)
        return _render_loop(statement, depth, work, types)
    if isinstance(statement, Gemm):
        return _render_gemm(statement, depth)
    if isinstance(statement, If):
        text = (f"{pad}if ({render_expr(statement.condition)}) {{\n"
                f"{render_statements(statement.body, depth + 1, work, types)}\n{pad}}}")
        if statement.orelse:
            text += f" else {{\n{render_statements(statement.orelse, depth + 1, work, types)}\n{pad}}}"
        return text
    raise TypeError(f"cannot render statement {statement!r}")


def _render_loop(loop: Loop, depth: int, work: int, types: dict, parallel: bool = True) -> str:
    pad = "  " * depth
    lines = []
    clauses = []
    if loop.reduce:
        # reductions vectorize with OpenMP's clause; a float max carries a NaN flag beside it
        # (see the lowering), because OpenMP's max does not propagate NaN
        clauses = [f"reduction({OPENMP_REDUCTION[c]}:{name})" for c, name in loop.reduce]
    if parallel and loop.parallel and work >= PARALLEL_THRESHOLD and loop.extent > 1:
        pragma = "omp parallel for simd" if loop.simd and not loop.reduce else "omp parallel for"
        lines.append(f"{pad}#pragma {pragma} schedule(static)")
    elif loop.simd:
        lines.append(f"{pad}#pragma omp simd {' '.join(clauses)}".rstrip())
    start = render_expr(loop.start) if loop.start is not None else "0"
    stop = render_expr(loop.stop) if loop.stop is not None else str(loop.extent)
    lines.append(f"{pad}for (int64_t {loop.var} = {start}; {loop.var} < {stop}; {loop.var}++) {{")
    lines.append(render_statements(loop.body, depth + 1, work, types))
    lines.append(f"{pad}}}")
    return "\n".join(lines)


# ---- accurate floating-point sums ---------------------------------------------------------------------
def _float_sums(loop: Loop, types: dict) -> tuple:
    """The accumulators a reduction loop sums in floating point, when that is all it carries."""
    if not loop.reduce or any(c != "+" or types.get(name) not in SUM_SUFFIX for c, name in loop.reduce):
        return ()
    return tuple(name for _, name in loop.reduce)


def _static(loop: Loop) -> bool:
    return loop.start is None and loop.stop is None


def _additions(statements, names) -> int:
    """How many values one pass over `statements` adds into the accumulators (at most)."""
    total = 0
    for statement in statements:
        if isinstance(statement, Accumulate) and statement.name in names:
            total += 1
        elif isinstance(statement, Loop):
            total += statement.extent * _additions(statement.body, names)
        elif isinstance(statement, If):
            total += max(_additions(statement.body, names), _additions(statement.orelse, names))
    return total


def _renamed(statements, names: dict) -> list:
    """The statements with their accumulations into `names` redirected (old -> new name)."""
    result = []
    for statement in statements:
        if isinstance(statement, Accumulate) and statement.name in names:
            statement = dataclasses.replace(statement, name=names[statement.name])
        elif isinstance(statement, Loop):
            statement = dataclasses.replace(
                statement, body=_renamed(statement.body, names),
                reduce=tuple((c, names.get(name, name)) for c, name in statement.reduce))
        elif isinstance(statement, If):
            statement = dataclasses.replace(statement, body=_renamed(statement.body, names),
                                            orelse=_renamed(statement.orelse, names))
        result.append(statement)
    return result


@dataclasses.dataclass
class SumNest:
    """A floating-point sum rendered accurately, never as one long running sum.

    The nest of static loops that carries the sums is cut at `blocked` (an index into `loops`):
    that loop runs in steps of `step` iterations, each step about SUM_BLOCK additions into a block
    sum, fresh per step. Block sums go into a binary counter of partial sums (graphc_sum_push),
    which adds them pairwise; graphc_sum_total adds up what the counter holds. The error grows as
    log2 of the number of blocks instead of with the number of elements, as with NumPy's pairwise
    and PyTorch's cascade sums.

    Where the blocked loop is the innermost one (a row, a contiguous vector) the block sum is
    SUM_LANES[ctype] partial sums (two 64-byte vectors), lane k adding the block's elements k,
    k + lanes, ..., and the counter holds such vectors (graphc_lanes_push): the lanes are added
    pairwise once, at the end. Each lane adds 16 elements of a block, as NumPy's pairwise sum
    does, and two vectors of lanes let two additions run at once. Folding every block's lanes
    into one number instead cost up to 10% (log_softmax rows).
    Elsewhere (loops inside the blocked one) the block sum is one number.

    At a kernel's top level a large sum runs its outermost loop in chunks on all threads, each
    chunk a pairwise sum of its blocks; the chunk sums are combined in order, so the bits do not
    depend on the number of threads.
    """
    loops: list                # the perfect nest, outermost first
    sums: tuple                # accumulator names
    types: dict
    blocked: int
    step: int
    per_iteration: list        # additions per iteration of each loop of the nest

    @classmethod
    def of(cls, loop: Loop, sums: tuple, types: dict):
        if not _static(loop):
            return None
        loops = [loop]
        while (len(loops[-1].body) == 1 and isinstance(loops[-1].body[0], Loop) and _static(loops[-1].body[0])
               and loops[-1].body[0].reduce):
            loops.append(loops[-1].body[0])
        per_iteration = [0] * len(loops)
        inner = _additions(loops[-1].body, set(sums))
        for position in range(len(loops) - 1, -1, -1):
            per_iteration[position] = inner
            inner *= loops[position].extent
        if inner <= SUM_BLOCK or per_iteration[0] == 0:
            return None   # short enough for the plain loop (its lanes are the blocks)
        blocked = max(p for p in range(len(loops)) if loops[p].extent * per_iteration[p] > SUM_BLOCK)
        step = max(1, SUM_BLOCK // per_iteration[blocked])
        return cls(loops, sums, types, blocked, step, per_iteration)

    @property
    def lanes(self) -> int:
        """Lanes of the block sums (1: one number per block)."""
        loop = self.loops[self.blocked]
        widths = {SUM_LANES[self.types[n]] for n in self.sums}
        if (self.blocked < len(self.loops) - 1 or not loop.simd or len(widths) != 1
                or any(isinstance(s, (Loop, If)) for s in loop.body)):
            return 1
        width = widths.pop()
        return width if self.step % width == 0 else 1

    def _ctype(self, name) -> str:
        return self.types[name]

    def _suffix(self, name) -> str:
        return SUM_SUFFIX[self._ctype(name)]

    def blocks(self) -> int:
        """Blocks the whole nest pushes (a bound for one chunk's)."""
        blocks = -(-self.loops[self.blocked].extent // self.step)
        return blocks * math.prod(loop.extent for loop in self.loops[:self.blocked])

    def _counter(self, pad, lanes: int, pushes: int) -> list:
        """The binary counters: `pushes` blocks fill at most bit_length(pushes) + 1 levels."""
        levels = max(1, pushes).bit_length() + 1
        shape = f"[{levels}][{lanes}]" if lanes > 1 else f"[{levels}]"
        return [f"{pad}{self._ctype(n)} {n}_sums{shape}; int64_t {n}_blocks = 0;" for n in self.sums]

    def _total(self, name, lanes: int) -> str:
        kind = "lanes" if lanes > 1 else "sum"
        return f"graphc_{kind}_total_{self._suffix(name)}({name}_sums, {name}_blocks)"

    def _description(self) -> str:
        additions = self.step * self.per_iteration[self.blocked]
        lanes = self.lanes
        if lanes > 1:
            return f"blocks of {additions} additions in {lanes} lanes, combined pairwise"
        return f"blocks of {additions} additions, combined pairwise"

    def render(self, depth: int, work: int) -> str:
        pad = "  " * depth
        total = self.loops[0].extent * self.per_iteration[0]
        chunk = self._chunk_iterations()
        if depth == 1 and work >= PARALLEL_THRESHOLD and total >= PARALLEL_THRESHOLD and chunk is not None:
            return self._render_parallel(depth, work, chunk)
        lanes = self.lanes
        lines = [f"{pad}{{  /* accurate sum: {self._description()} */"]
        lines += self._counter(pad + "  ", lanes, self.blocks())
        lines.append(self._render_range(depth + 1, work, "0", str(self.loops[0].extent)))
        lines += [f"{pad}  {n} = {n} + {self._total(n, lanes)};" for n in self.sums]
        lines.append(f"{pad}}}")
        return "\n".join(lines)

    def _chunk_iterations(self):
        """Iterations of the outermost loop per parallel chunk (whole blocks), or None for one chunk."""
        outer = self.loops[0]
        unit = self.step if self.blocked == 0 else 1      # iterations that make whole blocks
        unit_additions = unit * self.per_iteration[0]
        units = -(-outer.extent // unit)
        per_chunk = max(-(-SUM_CHUNK // unit_additions), -(-units // SUM_CHUNKS))
        chunks = -(-units // per_chunk)
        return None if chunks < 2 else per_chunk * unit

    def _render_parallel(self, depth: int, work: int, chunk: int) -> str:
        pad = "  " * depth
        outer = self.loops[0]
        chunks = -(-outer.extent // chunk)
        c = f"{outer.var}_chunk"
        lanes = self.lanes
        lines = [f"{pad}{{  /* accurate sum: {self._description()}, in {chunks} chunks of {chunk} iterations "
                 f"of {outer.var} (the same on any number of threads) */"]
        lines += [f"{pad}  {self._ctype(n)} {n}_chunks[{chunks}];" for n in self.sums]
        lines.append(f"{pad}  #pragma omp parallel for schedule(static)")
        lines.append(f"{pad}  for (int64_t {c} = 0; {c} < {chunks}; {c}++) {{")
        inner_pad = pad + "    "
        lines += self._counter(inner_pad, lanes, self.blocks())
        lines.append(f"{inner_pad}const int64_t {outer.var}_start = {c} * {chunk}, {outer.var}_end = "
                     f"{outer.var}_start + {chunk} < {outer.extent} ? {outer.var}_start + {chunk} : {outer.extent};")
        lines.append(self._render_range(depth + 2, work, f"{outer.var}_start", f"{outer.var}_end"))
        lines += [f"{inner_pad}{n}_chunks[{c}] = {self._total(n, lanes)};" for n in self.sums]
        lines.append(f"{pad}  }}")
        lines += self._counter(pad + "  ", 1, chunks)
        lines.append(f"{pad}  for (int64_t {c} = 0; {c} < {chunks}; {c}++) {{")
        lines += [f"{pad}    graphc_sum_push_{self._suffix(n)}({n}_sums, &{n}_blocks, {n}_chunks[{c}]);"
                  for n in self.sums]
        lines.append(f"{pad}  }}")
        lines += [f"{pad}  {n} = {n} + {self._total(n, 1)};" for n in self.sums]
        lines.append(f"{pad}}}")
        return "\n".join(lines)

    def _render_range(self, depth: int, work: int, start: str, stop: str) -> str:
        """The nest with its outermost loop over [start, stop), block sums pushed to the counters."""
        lines, closing = [], []
        for position, loop in enumerate(self.loops[:self.blocked]):
            pad = "  " * (depth + position)
            low, high = (start, stop) if position == 0 else ("0", str(loop.extent))
            lines.append(f"{pad}for (int64_t {loop.var} = {low}; {loop.var} < {high}; {loop.var}++) {{")
            closing.insert(0, f"{pad}}}")
        depth += self.blocked
        pad = "  " * depth
        loop = self.loops[self.blocked]
        low, high = (start, stop) if self.blocked == 0 else ("0", str(loop.extent))
        lanes = self.lanes
        if self.step == 1:   # each iteration of this loop is a block: the loops inside add it up
            parts = {n: f"{n}_part" for n in self.sums}
            lines.append(f"{pad}for (int64_t {loop.var} = {low}; {loop.var} < {high}; {loop.var}++) {{")
            lines += [f"{pad}  {self._ctype(n)} {part} = 0;" for n, part in parts.items()]
            lines.append(render_statements(_renamed(loop.body, parts), depth + 1, work, self.types))
        else:
            block = f"{loop.var}_block"
            lines.append(f"{pad}for (int64_t {block} = {low}; {block} < {high}; {block} += {self.step}) {{")
            exact = high.isdigit() and low.isdigit() and (int(high) - int(low)) % self.step == 0
            if exact:
                end = f"{block} + {self.step}"
            else:
                end = f"{loop.var}_stop"
                lines.append(f"{pad}  const int64_t {end} = {block} + {self.step} < {high} ? {block} + {self.step} : {high};")
            if lanes > 1:
                lines += self._lane_loops(loop, depth + 1, work, block, end, exact)
                parts = {n: f"{n}_lanes" for n in self.sums}
            else:
                parts = {n: f"{n}_part" for n in self.sums}
                lines += [f"{pad}  {self._ctype(n)} {part} = 0;" for n, part in parts.items()]
                inner = dataclasses.replace(loop, body=_renamed(loop.body, parts), start=Var(block), stop=Var(end),
                                            parallel=False, reduce=tuple((c, parts[n]) for c, n in loop.reduce))
                lines.append(_render_loop(inner, depth + 1, work, self.types, parallel=False))
        kind = "lanes" if lanes > 1 else "sum"
        lines += [f"{pad}  graphc_{kind}_push_{self._suffix(n)}({n}_sums, &{n}_blocks, {part});"
                  for n, part in parts.items()]
        lines.append(f"{pad}}}")
        return "\n".join(lines + closing)

    def _lane_loops(self, loop: Loop, depth: int, work: int, block: str, end: str, exact: bool) -> list:
        """One block [block, end) of the innermost loop, added into `lanes` partial sums: whole
        vectors of lanes (the loop the compiler vectorizes), then the last few elements, if any."""
        pad = "  " * depth
        lanes = self.lanes
        v = loop.var
        lane = f"{v}_lane"
        lines = [f"{pad}{self._ctype(n)} {n}_lanes[{lanes}] = {{0}};" for n in self.sums]
        slots = {n: f"{n}_lanes[{v} - {lane}]" for n in self.sums}
        body = _renamed(loop.body, slots)
        whole = dataclasses.replace(loop, body=body, start=Var(lane), stop=Var(f"{lane} + {lanes}"), parallel=False,
                                    reduce=())
        if exact:
            lines.append(f"{pad}for (int64_t {lane} = {block}; {lane} < {end}; {lane} += {lanes}) {{")
            lines.append(_render_loop(whole, depth + 1, work, self.types, parallel=False))
            lines.append(f"{pad}}}")
            return lines
        lines.append(f"{pad}int64_t {lane} = {block};")
        lines.append(f"{pad}for (; {lane} + {lanes} <= {end}; {lane} += {lanes}) {{")
        lines.append(_render_loop(whole, depth + 1, work, self.types, parallel=False))
        lines.append(f"{pad}}}")
        tail = dataclasses.replace(whole, stop=Var(end), simd=False)
        lines.append(_render_loop(tail, depth, work, self.types, parallel=False))
        return lines


def _render_gemm(gemm: Gemm, depth: int) -> str:
    pad = "  " * depth
    function = {"float": "scipy_cblas_sgemm", "double": "scipy_cblas_dgemm"}[gemm.ctype]
    trans_a = "CblasTrans" if gemm.transpose_a else "CblasNoTrans"
    trans_b = "CblasTrans" if gemm.transpose_b else "CblasNoTrans"
    beta = "(batch > 0)" if gemm.sum_batches else "0"
    call = (f"{function}(CblasRowMajor, {trans_a}, {trans_b}, {gemm.m}, {gemm.n}, {gemm.k}, 1, "
            f"{gemm.a} + {gemm.offset_a} + batch * {gemm.batch_stride_a}, {gemm.lda}, "
            f"{gemm.b} + {gemm.offset_b} + batch * {gemm.batch_stride_b}, {gemm.ldb}, {beta}, "
            f"{gemm.c} + {gemm.offset_c} + batch * {gemm.batch_stride_c}, {gemm.ldc});")
    if gemm.m == 0 or gemm.n == 0:
        return f"{pad}/* empty matrix product */"
    if gemm.k == 0:  # BLAS leaves C untouched when K is 0: the product is zeros
        size = gemm.m * gemm.n
        return (f"{pad}for (int64_t batch = 0; batch < {gemm.batch}; batch++)\n"
                f"{pad}  for (int64_t i = 0; i < {size}; i++) "
                f"{gemm.c}[{gemm.offset_c} + batch * {gemm.batch_stride_c} + i] = 0;")
    return (f"{pad}for (int64_t batch = 0; batch < {gemm.batch}; batch++) {{\n"
            f"{pad}  {call}\n{pad}}}")
