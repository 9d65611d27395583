"""Render a kernel-IR `Program` to one C translation unit.

Jinja renders the skeleton (prelude, one static function per kernel, the entry point); the
statements and expressions of each kernel body are rendered here, recursively, with two-space
indentation, so the generated file reads like hand-written C.
"""
from __future__ import annotations

import functools

import jinja2

from codegen.kernel_ir import (Accumulate, Buffer, Const, Declare, Expr, Gemm, If, Kernel, Let, Load, Loop,
                               Op, Program, Store, Var)

# math functions given vector variants through libmvec prototypes in the prelude
SIMD_FUNCTIONS = ("exp", "log", "sin", "cos", "tanh", "erf")
# <math.h> functions the prelude makes type-generic (float arguments call the f-suffixed one)
GENERIC_UNARY = ("acos", "asin", "atan", "acosh", "asinh", "atanh", "cos", "sin", "tan", "cosh", "sinh", "tanh",
                 "exp", "exp2", "expm1", "log", "log10", "log1p", "log2", "cbrt", "fabs", "sqrt", "erf", "erfc",
                 "lgamma", "tgamma", "ceil", "floor", "nearbyint", "rint", "round", "trunc")
GENERIC_BINARY = ("atan2", "copysign", "fdim", "fmax", "fmin", "fmod", "hypot", "nextafter", "pow", "remainder")
# below this many elements a kernel runs on one thread: OpenMP's fork costs more than it saves
PARALLEL_THRESHOLD = 1 << 18


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
                "body": render_statements(k.body, 1, k.work)} for k in program.kernels]
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
COMBINE = {"+": "{0} + {1}", "*": "{0} * {1}", "max": "GRAPHC_MAX({0}, {1})",
           "max_ordered": "({1} > {0} ? {1} : {0})", "|": "{0} | {1}"}
OPENMP_REDUCTION = {"+": "+", "*": "*", "max": "max", "|": "|"}


def render_statements(statements, depth: int, work: int = 0) -> str:
    return "\n".join(render_statement(s, depth, work) for s in statements)


def render_statement(statement, depth: int, work: int) -> str:
    pad = "  " * depth
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
        return _render_loop(statement, depth, work)
    if isinstance(statement, Gemm):
        return _render_gemm(statement, depth)
    if isinstance(statement, If):
        text = f"{pad}if ({render_expr(statement.condition)}) {{\n{render_statements(statement.body, depth + 1, work)}\n{pad}}}"
        if statement.orelse:
            text += f" else {{\n{render_statements(statement.orelse, depth + 1, work)}\n{pad}}}"
        return text
    raise TypeError(f"cannot render statement {statement!r}")


def _render_loop(loop: Loop, depth: int, work: int) -> str:
    pad = "  " * depth
    lines = []
    clauses = []
    if loop.reduce:
        # reductions vectorize with OpenMP's clause; a float max carries a NaN flag beside it
        # (see the lowering), because OpenMP's max does not propagate NaN
        clauses = [f"reduction({OPENMP_REDUCTION[c]}:{name})" for c, name in loop.reduce]
    if loop.parallel and work >= PARALLEL_THRESHOLD and loop.extent > 1:
        pragma = "omp parallel for simd" if loop.simd and not loop.reduce else "omp parallel for"
        lines.append(f"{pad}#pragma {pragma} schedule(static)")
    elif loop.simd:
        lines.append(f"{pad}#pragma omp simd {' '.join(clauses)}".rstrip())
    start = render_expr(loop.start) if loop.start is not None else "0"
    stop = render_expr(loop.stop) if loop.stop is not None else str(loop.extent)
    lines.append(f"{pad}for (int64_t {loop.var} = {start}; {loop.var} < {stop}; {loop.var}++) {{")
    lines.append(render_statements(loop.body, depth + 1, work))
    lines.append(f"{pad}}}")
    return "\n".join(lines)


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
