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
    """The gradient split evenly between the elements equal to the maximum, as PyTorch's amax:
    grad / count * (x == max), so where the maximum is NaN (no element equals it) every element
    gets NaN. With attrs["nan_gradient"] == "nan_elements" (PyTorch's max() and min() over a whole
    tensor) a NaN maximum's gradient goes to the NaN elements instead, split evenly."""
    x = n.inputs[0]
    result = _restore(e, n, n.id)
    winners = e.eq(x, result)
    if n.attrs.get("nan_gradient") == "nan_elements" and e.dtype(x).is_floating_point:
        winners = e.logical_or(winners, e.logical_and(e.ne(x, x), e.ne(result, result)))
    mask = e.cast(winners, dtype=e.dtype(x).name)
    count = e.sum(mask, axes=n.attrs["axes"], keepdims=True)
    share = e.div(e.reshape(g, shape=e.shape(count)), count)
    return [e.mul(_restore(e, n, share), mask)]


def _max(array, axis, keepdims):
    """np.max, except that ties keep the first element in order (PyTorch's amax of [-0., 0.] is
    -0.; NumPy's is 0.), as the generated code's 'max' combine does; NaN if any element is NaN."""
    result = np.max(array, axis=axis, keepdims=True)
    if array.dtype.kind == "f" and array.size:
        moved = np.moveaxis(array, axis, tuple(range(array.ndim - len(axis), array.ndim)))
        flat = moved.reshape(moved.shape[:array.ndim - len(axis)] + (-1,))
        peak = result.reshape(flat.shape[:-1] + (1,))
        first = np.argmax(flat == peak, axis=-1)[..., None]
        chosen = np.take_along_axis(flat, first, axis=-1).reshape(result.shape)
        result = np.where(result != result, result, chosen)
    return result if keepdims else np.squeeze(result, axis=axis)


def _prod_vjp(e, n, g):
    # d prod / d x_i = prod / x_i: exact away from zeros (inputs containing zeros are not handled)
    return [e.div(e.mul(_restore(e, n, g), _restore(e, n, n.id)), n.inputs[0])]


register(OpDef("sum", REDUCE, reduce_infer, _numpy_reduce(np.sum), _sum_vjp, c="+",
               backward_name="SumBackward1"))
register(OpDef("max", REDUCE, reduce_infer,
               _numpy_reduce(_max, "max(): cannot reduce over an empty dimension"), _max_vjp,
               c="max", backward_name="AmaxBackward0"))
register(OpDef("prod", REDUCE, reduce_infer, _numpy_reduce(np.prod), _prod_vjp, c="*",
               backward_name="ProdBackward1"))
