"""Lower contractions: matmul through BLAS (or a loop nest when BLAS cannot read the operands),
and 2-d convolution as im2col + BLAS (forward and both backward forms), col2im for the input
gradient."""
from __future__ import annotations

import math

from codegen.kernel_ir import Accumulate, Const, Declare, Gemm, If, Let, Load, Loop, Op, Store, Var
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


def _column_bounds(g, tap: Var):
    """The output columns q whose input column q*sw - pw + tap*dw lies inside [0, w): [low, high)."""
    shift = Op("({0} * %d - %d)" % (g["dw"], g["pw"]), (tap,))            # input column of q = 0
    low = Op("({0} >= 0 ? 0 : (-({0}) + %d) / %d)" % (g["sw"] - 1, g["sw"]), (shift,))
    high = Op("({0} > %d ? 0 : ((%d - {0}) / %d + 1 < %d ? (%d - {0}) / %d + 1 : %d))"
              % (g["w"] - 1, g["w"] - 1, g["sw"], g["wo"], g["w"] - 1, g["sw"], g["wo"]), (shift,))
    return shift, low, high


def _im2col(g, x, cols, ctype) -> list:
    """cols[n, (c*kh + i)*kw + j, p*wo + q] = x[n, c, p*sh - ph + i*dh, q*sw - pw + j*dw] (0 outside).

    The columns inside the image are found once per tap, so the inner loop is a plain strided copy.
    """
    n, c, i, j, p, q = (Var(v) for v in ("n", "c", "i", "j", "p", "q"))
    shift, low, high = _column_bounds(g, j)
    row = Op("(((({0} * %d + {1}) * %d + {2}) * %d + {3}) * %d + {4}) * %d"
             % (g["c"], g["kh"], g["kw"], g["ho"], g["wo"]), (n, c, i, j, p))
    source_row = Op("(({0} * %d + {1}) * %d + {2}) * %d" % (g["c"], g["h"], g["w"]), (n, c, Var("y")))
    zero = Const(c_literal(0, _dtype_of(ctype)))
    inside = [Let("low", "int64_t", low), Let("high", "int64_t", high),
              Loop("q", g["wo"], [Store(cols, Op("{0} + {1}", (Var("row"), q)), zero)], stop=Var("low")),
              Loop("q", g["wo"], [Store(cols, Op("{0} + {1}", (Var("row"), q)),
                                        Load(x, Op("{0} + {1} * %d + {2}" % g["sw"], (Var("source"), q, Var("shift")))))],
                   simd=True, start=Var("low"), stop=Var("high")),
              Loop("q", g["wo"], [Store(cols, Op("{0} + {1}", (Var("row"), q)), zero)], start=Var("high"))]
    outside = [Loop("q", g["wo"], [Store(cols, Op("{0} + {1}", (Var("row"), q)), zero)], simd=True)]
    body = [Let("y", "int64_t", Op("({0} * %d - %d + {1} * %d)" % (g["sh"], g["ph"], g["dh"]), (p, i))),
            Let("row", "int64_t", row), Let("shift", "int64_t", shift),
            If(ix.in_range(Var("y"), g["h"]), [Let("source", "int64_t", source_row)] + inside, outside)]
    return [Loop("n", g["n"], [Loop("c", g["c"], [Loop("i", g["kh"], [Loop("j", g["kw"], [
        Loop("p", g["ho"], body)])])])], parallel=True)]


def _dtype_of(ctype):
    from graphc import dtypes
    return dtypes.float32 if ctype == "float" else dtypes.float64


def build_conv(graph, kernel_plan, buffer_of, scratch, columns_ready: bool = False) -> list:
    """Statements for conv2d, conv2d_input_grad or conv2d_weight_grad; `scratch` is the cols buffer
    (already filled with the input's columns when `columns_ready`)."""
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
        if not columns_ready:
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
    """x_grad[n, c, y, x] = sum of cols[n, (c, i, j), (p, q)] over the taps that read (y, x).

    Written as a scatter: zero x_grad, then add each tap's row of columns into the input row it
    came from (the columns inside the image found once per tap). One thread owns each image n, so
    the additions never race.
    """
    n, c, i, j, p, q = (Var(v) for v in ("n", "c", "i", "j", "p", "q"))
    plane = g["c"] * g["h"] * g["w"]
    zero = Const(c_literal(0, _dtype_of(ctype)))
    shift, low, high = _column_bounds(g, j)
    row = Op("(((({0} * %d + {1}) * %d + {2}) * %d + {3}) * %d + {4}) * %d"
             % (g["c"], g["kh"], g["kw"], g["ho"], g["wo"]), (n, c, i, j, p))
    target_row = Op("(({0} * %d + {1}) * %d + {2}) * %d" % (g["c"], g["h"], g["w"]), (n, c, Var("y")))
    target = Op("{0} + {1} * %d + {2}" % g["sw"], (Var("target"), q, Var("shift")))
    add = Store(out, target, Op("{0} + {1}", (Load(out, target), Load(cols, Op("{0} + {1}", (Var("row"), q))))))
    body = [Let("y", "int64_t", Op("({0} * %d - %d + {1} * %d)" % (g["sh"], g["ph"], g["dh"]), (p, i))),
            If(ix.in_range(Var("y"), g["h"]),
               [Let("row", "int64_t", row), Let("shift", "int64_t", shift), Let("target", "int64_t", target_row),
                Loop("q", g["wo"], [add], simd=g["sw"] == 1, start=low, stop=high)])]
    image = [Loop("z", plane, [Store(out, Op("{0} * %d + {1}" % plane, (n, Var("z"))), zero)], simd=True),
             Loop("c", g["c"], [Loop("i", g["kh"], [Loop("j", g["kw"], [Loop("p", g["ho"], body)])])])]
    return [Loop("n", g["n"], image, parallel=True)]
