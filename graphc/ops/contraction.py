"""Contractions: batched matmul and 2-d convolution (with the two forms its vjp needs)."""
from __future__ import annotations

import numpy as np

from graphc.ops.table import CONTRACTION, OpDef, register


# ---- matmul: (..., m, k) @ (..., k, n), batch dims equal (the front end broadcasts) ----------
def _matmul_infer(shapes, types, attrs):
    a, b = tuple(shapes[0]), tuple(shapes[1])
    if len(a) < 2 or len(a) != len(b) or a[:-2] != b[:-2] or a[-1] != b[-2]:
        raise ValueError(f"cannot multiply shapes {list(a)} and {list(b)}")
    if types[0] is not types[1]:
        raise ValueError(f"operand dtypes differ: {types[0].name} and {types[1].name}")
    return a[:-1] + (b[-1],), types[0]


def _transpose_last(e, handle):
    rank = len(e.shape(handle))
    return e.permute(handle, dims=tuple(range(rank - 2)) + (rank - 1, rank - 2))


def _matmul_vjp(e, n, g):
    a, b = n.inputs
    return [e.matmul(g, _transpose_last(e, b)), e.matmul(_transpose_last(e, a), g)]


register(OpDef("matmul", CONTRACTION, _matmul_infer,
               lambda arrays, attrs, shape, dtype: np.matmul(*arrays).astype(dtype.numpy, copy=False),
               _matmul_vjp, backward_name="MmBackward0"))


# ---- conv2d: x (N, C, H, W), w (O, C/groups, kh, kw) ----------------------------------------
def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_geometry(x_shape, w_shape, attrs):
    n, c, h, w = x_shape
    o, c_per_group, kh, kw = w_shape
    groups = attrs["groups"]
    if c != c_per_group * groups or o % groups:
        raise ValueError(f"input {list(x_shape)} and weight {list(w_shape)} do not match for "
                         f"groups={groups}")
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded input {h}x{w}")
    return (n, o, ho, wo)


def _conv_infer(shapes, types, attrs):
    if len(shapes[0]) != 4 or len(shapes[1]) != 4:
        raise ValueError(f"expects 4-d input and weight, got {list(shapes[0])} and {list(shapes[1])}")
    if types[0] is not types[1] or not types[0].is_floating_point:
        raise ValueError(f"expects matching float dtypes, got {types[0].name} and {types[1].name}")
    return _conv_geometry(shapes[0], shapes[1], attrs), types[0]


def _windows(padded, i, j, attrs, out_h, out_w):
    """The input pixels that kernel tap (i, j) meets, for every output position."""
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    return padded[:, :, i * dh: i * dh + sh * (out_h - 1) + 1: sh,
                  j * dw: j * dw + sw * (out_w - 1) + 1: sw]


def _pad_input(x, attrs):
    ph, pw = attrs["padding"]
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _grouped(array, groups, axis=1):
    return np.split(array, groups, axis=axis)


def conv2d_reference(x, w, attrs):
    groups = attrs["groups"]
    n, o, out_h, out_w = _conv_geometry(x.shape, w.shape, attrs)
    padded = _pad_input(x, attrs)
    result = np.zeros((n, o, out_h, out_w), dtype=np.result_type(x, w))
    for group, (xg, wg) in enumerate(zip(_grouped(padded, groups), _grouped(w, groups, 0))):
        rows = slice(group * wg.shape[0], (group + 1) * wg.shape[0])
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                result[:, rows] += np.einsum("nchw,oc->nohw", _windows(xg, i, j, attrs, out_h, out_w),
                                             wg[:, :, i, j])
    return result


def conv2d_input_grad_reference(gy, w, attrs):
    groups = attrs["groups"]
    n, c, h, width = attrs["input_shape"]
    ph, pw = attrs["padding"]
    out_h, out_w = gy.shape[2:]
    padded = np.zeros((n, c, h + 2 * ph, width + 2 * pw), dtype=gy.dtype)
    per_group_out = w.shape[0] // groups
    per_group_in = w.shape[1]
    for group in range(groups):
        gg = gy[:, group * per_group_out:(group + 1) * per_group_out]
        wg = w[group * per_group_out:(group + 1) * per_group_out]
        target = padded[:, group * per_group_in:(group + 1) * per_group_in]
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                _windows(target, i, j, attrs, out_h, out_w)[...] += np.einsum(
                    "nohw,oc->nchw", gg, wg[:, :, i, j])
    return padded[:, :, ph:ph + h, pw:pw + width]


def conv2d_weight_grad_reference(x, gy, attrs):
    groups = attrs["groups"]
    o, per_group_in, kh, kw = attrs["weight_shape"]
    out_h, out_w = gy.shape[2:]
    padded = _pad_input(x, attrs)
    result = np.zeros(attrs["weight_shape"], dtype=gy.dtype)
    per_group_out = o // groups
    for group in range(groups):
        xg = padded[:, group * per_group_in:(group + 1) * per_group_in]
        gg = gy[:, group * per_group_out:(group + 1) * per_group_out]
        for i in range(kh):
            for j in range(kw):
                result[group * per_group_out:(group + 1) * per_group_out, :, i, j] = np.einsum(
                    "nohw,nchw->oc", gg, _windows(xg, i, j, attrs, out_h, out_w))
    return result


def _conv_attrs(attrs):
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _conv_vjp(e, n, g):
    x, w = n.inputs
    attrs = _conv_attrs(n.attrs)
    return [e.conv2d_input_grad(g, w, input_shape=e.shape(x), **attrs),
            e.conv2d_weight_grad(x, g, weight_shape=e.shape(w), **attrs)]


def _input_grad_infer(shapes, types, attrs):
    gy, w = shapes
    expected = _conv_geometry(tuple(attrs["input_shape"]), tuple(w), attrs)
    if tuple(gy) != expected:
        raise ValueError(f"output gradient {list(gy)} does not match the convolution {list(expected)}")
    return tuple(attrs["input_shape"]), types[0]


def _input_grad_vjp(e, n, g):
    # linear in both operands: conv2d_input_grad(gy, w) = transpose of conv2d(., w) applied to gy
    gy, w = n.inputs
    attrs = _conv_attrs(n.attrs)
    return [e.conv2d(g, w, **attrs), e.conv2d_weight_grad(g, gy, weight_shape=e.shape(w), **attrs)]


def _weight_grad_infer(shapes, types, attrs):
    x, gy = shapes
    expected = _conv_geometry(tuple(x), tuple(attrs["weight_shape"]), attrs)
    if tuple(gy) != expected:
        raise ValueError(f"output gradient {list(gy)} does not match the convolution {list(expected)}")
    return tuple(attrs["weight_shape"]), types[0]


def _weight_grad_vjp(e, n, g):
    x, gy = n.inputs
    attrs = _conv_attrs(n.attrs)
    return [e.conv2d_input_grad(gy, g, input_shape=e.shape(x), **attrs), e.conv2d(x, g, **attrs)]


register(OpDef("conv2d", CONTRACTION, _conv_infer,
               lambda arrays, attrs, shape, dtype: conv2d_reference(*arrays, attrs).astype(dtype.numpy),
               _conv_vjp, backward_name="ConvolutionBackward0"))
register(OpDef("conv2d_input_grad", CONTRACTION, _input_grad_infer,
               lambda arrays, attrs, shape, dtype:
               conv2d_input_grad_reference(*arrays, attrs).astype(dtype.numpy),
               _input_grad_vjp, backward_name="ConvolutionBackwardBackward0"))
register(OpDef("conv2d_weight_grad", CONTRACTION, _weight_grad_infer,
               lambda arrays, attrs, shape, dtype:
               conv2d_weight_grad_reference(*arrays, attrs).astype(dtype.numpy),
               _weight_grad_vjp, backward_name="ConvolutionBackwardBackward0"))
