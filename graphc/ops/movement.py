"""Movement primitives: reshape, permute, expand, slice, pad, cat; gather and scatter_add.

The first five are views in generated code (index arithmetic, no copy) unless a consumer needs
contiguous memory.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ops.table import MOVEMENT, OpDef, register


def _movement(name, infer, evaluate, vjp, backward_name):
    return register(OpDef(name, MOVEMENT, infer, evaluate, vjp, backward_name=backward_name))


# ---- reshape ------------------------------------------------------------------------------
def _reshape_infer(shapes, types, attrs):
    shape = tuple(attrs["shape"])
    if math.prod(shape) != math.prod(shapes[0]) or any(s < 0 for s in shape):
        raise ValueError(f"shape {list(shape)} is invalid for input of size {math.prod(shapes[0])}")
    return shape, types[0]


_movement("reshape", _reshape_infer,
          lambda arrays, attrs, shape, dtype: arrays[0].reshape(shape),
          lambda e, n, g: [e.reshape(g, shape=e.shape(n.inputs[0]))], "ViewBackward0")


# ---- permute ------------------------------------------------------------------------------
def _permute_infer(shapes, types, attrs):
    dims = tuple(attrs["dims"])
    if sorted(dims) != list(range(len(shapes[0]))):
        raise ValueError(f"dims {list(dims)} are not a permutation of {len(shapes[0])} dims")
    return tuple(shapes[0][d] for d in dims), types[0]


def _permute_vjp(e, n, g):
    dims = n.attrs["dims"]
    inverse = tuple(sorted(range(len(dims)), key=lambda i: dims[i]))
    return [e.permute(g, dims=inverse)]


_movement("permute", _permute_infer,
          lambda arrays, attrs, shape, dtype: np.transpose(arrays[0], attrs["dims"]),
          _permute_vjp, "PermuteBackward0")


# ---- expand (numpy broadcast_to rules: new leading dims, size-1 dims stretched) -------------
def _expand_infer(shapes, types, attrs):
    source, target = tuple(shapes[0]), tuple(attrs["shape"])
    lead = len(target) - len(source)
    if lead < 0 or any(s != 1 and s != t for s, t in zip(source, target[lead:])):
        raise ValueError(f"cannot expand shape {list(source)} to {list(target)}")
    return target, types[0]


_movement("expand", _expand_infer,
          lambda arrays, attrs, shape, dtype: np.broadcast_to(arrays[0], shape),
          lambda e, n, g: [e.sum_to(g, e.shape(n.inputs[0]))], "ExpandBackward0")


# ---- slice (per axis start, stop, positive step) --------------------------------------------
def _slice_infer(shapes, types, attrs):
    shape = tuple(shapes[0])
    starts, stops, steps = attrs["starts"], attrs["stops"], attrs["steps"]
    if not len(starts) == len(stops) == len(steps) == len(shape):
        raise ValueError("slice needs a start, stop and step for every axis")
    out = []
    for size, start, stop, step in zip(shape, starts, stops, steps):
        if step <= 0 or not 0 <= start <= size or not 0 <= stop <= size:
            raise ValueError(f"bad slice {start}:{stop}:{step} for a dim of size {size}")
        out.append(len(range(start, stop, step)))
    return tuple(out), types[0]


def _slice_evaluate(arrays, attrs, shape, dtype):
    index = tuple(slice(a, b, c) for a, b, c in zip(attrs["starts"], attrs["stops"], attrs["steps"]))
    return arrays[0][index]


def _slice_vjp(e, n, g):
    """Put the slice back in place: interleave zeros for a step, then pad to the full size."""
    full = e.shape(n.inputs[0])
    result = g
    pads = []
    for axis, (size, start, step) in enumerate(zip(full, n.attrs["starts"], n.attrs["steps"])):
        length = e.shape(result)[axis]
        if step > 1 and length > 0:
            shape = e.shape(result)
            split = shape[:axis + 1] + (1,) + shape[axis + 1:]
            spread = e.reshape(result, shape=split)
            gaps = tuple((0, step - 1) if i == axis + 1 else (0, 0) for i in range(len(split)))
            spread = e.pad(spread, pads=gaps, value=0.0)
            merged = shape[:axis] + (length * step,) + shape[axis + 1:]
            result = e.reshape(spread, shape=merged)
            covered = min(length * step, size - start)
            if covered < length * step:
                bounds = e.shape(result)
                result = e.slice(result, starts=(0,) * len(bounds),
                                 stops=tuple(covered if i == axis else b for i, b in enumerate(bounds)),
                                 steps=(1,) * len(bounds))
        extent = e.shape(result)[axis]
        pads.append((start if extent else 0, size - (start if extent else 0) - extent))
    if any(p != (0, 0) for p in pads):
        result = e.pad(result, pads=tuple(pads), value=0.0)
    return [result]


_movement("slice", _slice_infer, _slice_evaluate, _slice_vjp, "SliceBackward0")


# ---- pad (constant value, non-negative widths) ----------------------------------------------
def _pad_infer(shapes, types, attrs):
    pads = attrs["pads"]
    if len(pads) != len(shapes[0]) or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(f"pads {pads} must be one non-negative (low, high) pair per axis")
    return tuple(s + lo + hi for s, (lo, hi) in zip(shapes[0], pads)), types[0]


def _pad_evaluate(arrays, attrs, shape, dtype):
    return np.pad(arrays[0], attrs["pads"], constant_values=np.array(attrs["value"]).astype(dtype.numpy))


def _pad_vjp(e, n, g):
    shape = e.shape(n.inputs[0])
    pads = n.attrs["pads"]
    return [e.slice(g, starts=tuple(lo for lo, _ in pads),
                    stops=tuple(lo + s for (lo, _), s in zip(pads, shape)), steps=(1,) * len(shape))]


_movement("pad", _pad_infer, _pad_evaluate, _pad_vjp, "ConstantPadNdBackward0")


# ---- cat ------------------------------------------------------------------------------------
def _cat_infer(shapes, types, attrs):
    axis = attrs["axis"]
    first = tuple(shapes[0])
    if not 0 <= axis < len(first):
        raise ValueError(f"axis {axis} out of range for {len(first)} dims")
    for shape, dtype in zip(shapes, types):
        if len(shape) != len(first) or any(s != f for i, (s, f) in enumerate(zip(shape, first)) if i != axis):
            raise ValueError(f"sizes must match except in dim {axis}: got {[list(s) for s in shapes]}")
        if dtype is not types[0]:
            raise ValueError(f"operand dtypes differ: {[t.name for t in types]}")
    total = sum(shape[axis] for shape in shapes)
    return first[:axis] + (total,) + first[axis + 1:], types[0]


def _cat_vjp(e, n, g):
    axis = n.attrs["axis"]
    shape = e.shape(g)
    grads, offset = [], 0
    for source in n.inputs:
        size = e.shape(source)[axis]
        grads.append(e.slice(g, starts=tuple(offset if i == axis else 0 for i in range(len(shape))),
                             stops=tuple(offset + size if i == axis else s for i, s in enumerate(shape)),
                             steps=(1,) * len(shape)))
        offset += size
    return grads


_movement("cat", _cat_infer,
          lambda arrays, attrs, shape, dtype: np.concatenate(arrays, axis=attrs["axis"]),
          _cat_vjp, "CatBackward0")


# ---- gather / scatter_add (data-dependent indexing along one axis) ---------------------------
def _check_index(index_shape, index_dtype, other_shape, axis, what):
    if index_dtype.name not in ("int64", "int32"):
        raise ValueError(f"index must be an integer tensor, got {index_dtype.name}")
    if len(index_shape) != len(other_shape):
        raise ValueError(f"index has {len(index_shape)} dims, {what} has {len(other_shape)}")
    for d, (i, o) in enumerate(zip(index_shape, other_shape)):
        if d != axis and i != o:
            raise ValueError(f"index shape {list(index_shape)} must match {what} shape "
                             f"{list(other_shape)} except in dim {axis}")


def _gather_infer(shapes, types, attrs):
    axis = attrs["axis"]
    _check_index(shapes[1], types[1], shapes[0], axis, "input")
    return tuple(shapes[1]), types[0]


def _gather_evaluate(arrays, attrs, shape, dtype):
    source, index = arrays
    axis = attrs["axis"]
    size = source.shape[axis]
    if index.size and (index.min() < -size or index.max() >= size):
        bad = index[(index < -size) | (index >= size)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for dimension {axis} with size {size}")
    return np.take_along_axis(source, index.astype(np.int64), axis)


def _gather_vjp(e, n, g):
    source, index = n.inputs
    return [e.scatter_add(index, g, axis=n.attrs["axis"], shape=e.shape(source)), None]


register(OpDef("gather", MOVEMENT, _gather_infer, _gather_evaluate, _gather_vjp,
               backward_name="GatherBackward0"))


def _scatter_add_infer(shapes, types, attrs):
    index_shape, source_shape = shapes
    if tuple(index_shape) != tuple(source_shape):
        raise ValueError(f"index shape {list(index_shape)} differs from source {list(source_shape)}")
    out = tuple(attrs["shape"])
    _check_index(index_shape, types[0], out, attrs["axis"], "output")
    return out, types[1]


def _scatter_add_evaluate(arrays, attrs, shape, dtype):
    index, source = arrays
    axis = attrs["axis"]
    out = np.zeros(shape, dtype=dtype.numpy)
    grid = list(np.indices(index.shape, sparse=True))
    grid[axis] = index.astype(np.int64)
    np.add.at(out, tuple(grid), source)
    return out


def _scatter_add_vjp(e, n, g):
    index, _ = n.inputs
    return [None, e.gather(g, index, axis=n.attrs["axis"])]


register(OpDef("scatter_add", MOVEMENT, _scatter_add_infer, _scatter_add_evaluate,
               _scatter_add_vjp, backward_name="ScatterAddBackward0"))
