"""Reductions over a set of axes, with or without keepdims."""
from __future__ import annotations

import numpy as np

from graphc.ops.table import REDUCE, OpDef, register


def reduce_infer(shapes, types, attrs):
    shape = tuple(shapes[0])
    axes = tuple(attrs["axes"])
    for axis in axes:
        if not 0 <= axis < len(shape):
            raise ValueError(f"axis {axis} out of range for shape {list(shape)}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {list(axes)}")
    if attrs.get("keepdims", False):
        out = tuple(1 if i in axes else s for i, s in enumerate(shape))
    else:
        out = tuple(s for i, s in enumerate(shape) if i not in axes)
    return out, types[0]


def keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _numpy_reduce(function, empty_error=None):
    def evaluate(arrays, attrs, shape, dtype):
        array = arrays[0]
        axes = tuple(attrs["axes"])
        if empty_error and any(array.shape[a] == 0 for a in axes):
            raise ValueError(empty_error)
        with np.errstate(all="ignore"):
            result = function(array, axis=axes, keepdims=attrs.get("keepdims", False))
        return np.asarray(result, dtype=dtype.numpy).reshape(shape)
    return evaluate


def _restore(e, n, handle):
    """Bring a reduced value back to the input's shape (reshape to keepdims, then expand)."""
    input_shape = e.shape(n.inputs[0])
    kept = e.reshape(handle, shape=keepdims_shape(input_shape, n.attrs["axes"]))
    return e.broadcast_to(kept, input_shape)


def _sum_vjp(e, n, g):
    return [_restore(e, n, g)]


def _max_vjp(e, n, g):
    # amax semantics: the gradient is split evenly between tied maxima (PyTorch's amax/max())
    x = n.inputs[0]
    winners = e.eq(x, _restore(e, n, n.id))
    count = e.sum(e.cast(winners, dtype=e.dtype(x).name), axes=n.attrs["axes"], keepdims=True)
    share = e.div(e.reshape(g, shape=e.shape(count)), count)
    return [e.where(winners, _restore(e, n, share), e.full_like(0.0, x))]


def _prod_vjp(e, n, g):
    # d prod / d x_i = prod / x_i: exact away from zeros (inputs containing zeros are not handled)
    return [e.div(e.mul(_restore(e, n, g), _restore(e, n, n.id)), n.inputs[0])]


register(OpDef("sum", REDUCE, reduce_infer, _numpy_reduce(np.sum), _sum_vjp, c="+",
               backward_name="SumBackward1"))
register(OpDef("max", REDUCE, reduce_infer,
               _numpy_reduce(np.max, "max(): cannot reduce over an empty dimension"), _max_vjp,
               c="max", backward_name="AmaxBackward0"))
register(OpDef("prod", REDUCE, reduce_infer, _numpy_reduce(np.prod), _prod_vjp, c="*",
               backward_name="ProdBackward1"))
