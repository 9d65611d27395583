"""Lower contractions: matmul through BLAS (or a loop nest when BLAS cannot read the operands),
and 2-d convolution as im2col + BLAS (forward and both backward forms), col2im for the input
gradient."""
from __future__ import annotations

import math

from codegen.kernel_ir import Accumulate, Const, Declare, Gemm, Let, Load, Loop, Op, Store, Var
from graphc.lowering import index as ix
from graphc.lowering.loops import LoopKernelBuilder, _nest, c_literal
from graphc.passes.fuse import gemm_operand

BLAS_TYPES = ("float", "double")


def build_matmul(graph, kernel_plan, buffer_of, names) -> tuple[list, bool]:
    """Statements for a matmul kernel, and whether they call BLAS."""
    node = graph.node(kernel_plan.contraction_node)
    a, b = (graph.node(i) for i in node.inputs)
    layouts = [gemm_operand(graph, i) for i in node.inputs]
    if node.dtype.c_type in BLAS_TYPES and all(l is not None and l[0] in buffer_of for l in layouts):
        return [_gemm(graph, node, a, b, layouts, buffer_of)], True
    return _loop_matmul(graph, kernel_plan, buffer_of, names), False


def _gemm(graph, node, a, b, layouts, buffer_of) -> Gemm:
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = math.prod(node.shape[:-2])
    (a_base, a_trans, a_bcast), (b_base, b_trans, b_bcast) = layouts
    a_cols = graph.node(a_base).shape[-1]
    b_cols = graph.node(b_base).shape[-1]
    return Gemm(buffer_of[a_base], buffer_of[b_base], buffer_of[node.id], m, n, k, a_trans, b_trans,
                lda=a_cols, ldb=b_cols, ldc=n, ctype=node.dtype.c_type, batch=batch,
                batch_stride_a=0 if a_bcast else m * k, batch_stride_b=0 if b_bcast else k * n,
                batch_stride_c=m * n)


def _loop_matmul(graph, kernel_plan, buffer_of, names) -> list:
    node = graph.node(kernel_plan.contraction_node)
    a_id, b_id = node.inputs
    members = kernel_plan.contraction_members or kernel_plan.members
    builder = LoopKernelBuilder(graph, [m for m in members if m != node.id], buffer_of, names)
    out_vars = [builder.fresh("i") for _ in node.shape]
    reduce_var = builder.fresh("r")
    builder.push()
    builder.push(out_vars)
    index = [Var(v) for v in out_vars]
    accumulator = builder.fresh("acc")
    builder.emit(Declare(accumulator, node.dtype.c_type, Const(c_literal(0, node.dtype))))
    builder.push([reduce_var])
    left = builder.value(a_id, index[:-1] + [Var(reduce_var)])
    right = builder.value(b_id, index[:-2] + [Var(reduce_var), index[-1]])
    builder.emit(Accumulate(accumulator, "+", Op("({0} * {1})", (left, right))))
    inner = builder.pop()
    k = graph.node(a_id).shape[-1]
    builder.emit(Loop(reduce_var, k, inner, simd=True, reduce=(("+", accumulator),)))
    builder.emit(Store(buffer_of[node.id], ix.linear(index, node.shape), Var(accumulator)))
    body = builder.pop()
    return builder.pop() + _nest(out_vars, node.shape, body, parallel=True, simd_inner=False)


# ---- convolution ------------------------------------------------------------------------------
def _geometry(attrs, x_shape, w_shape):
    n, c, h, w = x_shape
    o, c_group, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return dict(n=n, c=c, h=h, w=w, o=o, cg=c_group, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh,
                dw=dw, ho=ho, wo=wo, groups=attrs["groups"])


def cols_elements(attrs, x_shape, w_shape) -> int:
    g = _geometry(attrs, x_shape, w_shape)
    return g["n"] * g["c"] * g["kh"] * g["kw"] * g["ho"] * g["wo"]


def _im2col(g, x, cols, ctype) -> list:
    """cols[n, (c*kh + i)*kw + j, p*wo + q] = x[n, c, p*sh - ph + i*dh, q*sw - pw + j*dw] (0 outside)."""
    n, c, i, j, p, q = (Var(v) for v in ("n", "c", "i", "j", "p", "q"))
    row = Op("((({0} * %d + {1}) * %d + {2}) * %d + {3})" % (g["c"], g["kh"], g["kw"]), (n, c, i, j))
    y = Op("({0} * %d - %d + {1} * %d)" % (g["sh"], g["ph"], g["dh"]), (p, i))
    x_pos = Op("({0} * %d - %d + {1} * %d)" % (g["sw"], g["pw"], g["dw"]), (q, j))
    inside = Op("({0} && {1})", (ix.in_range(Var("y"), g["h"]), ix.in_range(Var("x"), g["w"])))
    source = Op("((({0} * %d + {1}) * %d + {2}) * %d + {3})" % (g["c"], g["h"], g["w"]),
                (n, c, ix.clamp(Var("y"), g["h"]), ix.clamp(Var("x"), g["w"])))
    inner = [Let("x", "int64_t", x_pos),
             Store(cols, Op("({0} * %d + {1})" % (g["ho"] * g["wo"]), (row, Op("{0} * %d + {1}" % g["wo"], (p, q)))),
                   Op("({0} ? {1} : 0)", (inside, Load(x, source))))]
    body = [Let("y", "int64_t", y), Loop("q", g["wo"], inner, simd=True)]
    return [Loop("n", g["n"], [Loop("c", g["c"], [Loop("i", g["kh"], [Loop("j", g["kw"], [
        Loop("p", g["ho"], body)])])])], parallel=True)]


def build_conv(graph, kernel_plan, buffer_of, scratch) -> list:
    """Statements for conv2d, conv2d_input_grad or conv2d_weight_grad; `scratch` is the cols buffer."""
    node = graph.node(kernel_plan.contraction_node)
    kind = node.op
    ctype = node.dtype.c_type
    if kind == "conv2d":
        x_id, w_id = node.inputs
        g = _geometry(node.attrs, graph.node(x_id).shape, graph.node(w_id).shape)
    elif kind == "conv2d_weight_grad":
        x_id, gy_id = node.inputs
        g = _geometry(node.attrs, graph.node(x_id).shape, node.attrs["weight_shape"])
    else:
        gy_id, w_id = node.inputs
        g = _geometry(node.attrs, node.attrs["input_shape"], graph.node(w_id).shape)
    groups = g["groups"]
    og = g["o"] // groups
    ckk = g["cg"] * g["kh"] * g["kw"]       # rows of cols per group
    pixels = g["ho"] * g["wo"]
    all_rows = g["c"] * g["kh"] * g["kw"]
    out = buffer_of[node.id]
    statements = []
    if kind == "conv2d":
        statements += _im2col(g, buffer_of[x_id], scratch, ctype)
        for group in range(groups):
            statements.append(Gemm(buffer_of[w_id], scratch, out, og, pixels, ckk, False, False, lda=ckk,
                                   ldb=pixels, ldc=pixels, ctype=ctype, batch=g["n"], batch_stride_a=0,
                                   batch_stride_b=all_rows * pixels, batch_stride_c=g["o"] * pixels,
                                   offset_a=group * og * ckk, offset_b=group * ckk * pixels,
                                   offset_c=group * og * pixels))
    elif kind == "conv2d_weight_grad":
        statements += _im2col(g, buffer_of[x_id], scratch, ctype)
        for group in range(groups):
            statements.append(Gemm(buffer_of[gy_id], scratch, out, og, ckk, pixels, False, True, lda=pixels,
                                   ldb=pixels, ldc=ckk, ctype=ctype, batch=g["n"],
                                   batch_stride_a=g["o"] * pixels, batch_stride_b=all_rows * pixels,
                                   batch_stride_c=0, offset_a=group * og * pixels,
                                   offset_b=group * ckk * pixels, offset_c=group * og * ckk, sum_batches=True))
    else:
        for group in range(groups):
            statements.append(Gemm(buffer_of[w_id], buffer_of[gy_id], scratch, ckk, pixels, og, True, False,
                                   lda=ckk, ldb=pixels, ldc=pixels, ctype=ctype, batch=g["n"],
                                   batch_stride_a=0, batch_stride_b=g["o"] * pixels,
                                   batch_stride_c=all_rows * pixels, offset_a=group * og * ckk,
                                   offset_b=group * og * pixels, offset_c=group * ckk * pixels))
        statements += _col2im(g, scratch, out, ctype)
    return statements


def _col2im(g, cols, out, ctype) -> list:
    """x_grad[n, c, y, x] = sum over taps (i, j) that read (y, x) of cols[n, (c, i, j), (p, q)]."""
    n, c, y, x, i, j = (Var(v) for v in ("n", "c", "y", "x", "i", "j"))
    row_y = Op("({0} + %d - {1} * %d)" % (g["ph"], g["dh"]), (y, i))
    row_x = Op("({0} + %d - {1} * %d)" % (g["pw"], g["dw"]), (x, j))
    p = Op("({0} / %d)" % g["sh"], (Var("ty"),))
    q = Op("({0} / %d)" % g["sw"], (Var("tx"),))
    valid = Op("({0} >= 0 && {0} %% %d == 0 && {1} < %d && {2} >= 0 && {2} %% %d == 0 && {3} < %d)"
               % (g["sh"], g["ho"], g["sw"], g["wo"]), (Var("ty"), p, Var("tx"), q))
    row = Op("((({0} * %d + {1}) * %d + {2}) * %d + {3})" % (g["c"], g["kh"], g["kw"]), (n, c, i, j))
    column = Op("({0} * %d + {1})" % g["wo"], (ix.clamp(p, g["ho"]), ix.clamp(q, g["wo"])))
    load = Load(cols, Op("({0} * %d + {1})" % (g["ho"] * g["wo"]), (row, column)))
    taps = [Let("ty", "int64_t", row_y), Let("tx", "int64_t", row_x),
            Accumulate("acc", "+", Op("({0} ? {1} : 0)", (valid, load)))]
    pixel = [Declare("acc", ctype, Const("0")),
             Loop("i", g["kh"], [Loop("j", g["kw"], taps)]),
             Store(out, Op("((({0} * %d + {1}) * %d + {2}) * %d + {3})" % (g["c"], g["h"], g["w"]), (n, c, y, x)),
                   Var("acc"))]
    return [Loop("n", g["n"], [Loop("c", g["c"], [Loop("y", g["h"], [Loop("x", g["w"], pixel, simd=True)])])],
                 parallel=True)]
