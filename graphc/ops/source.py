"""Sources: graph inputs, constants, iota and counter-based random numbers."""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.ops.table import SOURCE, OpDef, register
from graphc import philox


def _input_infer(shapes, types, attrs):
    raise ValueError("inputs are made with Graph.placeholder")


def _input_evaluate(arrays, attrs, shape, dtype):
    raise ValueError("inputs are bound by the interpreter, not evaluated")


register(OpDef("input", SOURCE, _input_infer, _input_evaluate))

register(OpDef(
    "constant", SOURCE,
    lambda shapes, types, attrs: ((), dtypes.by_name(attrs["dtype"])),
    lambda arrays, attrs, shape, dtype: np.array(attrs["value"], dtype=dtype.numpy)))


def _iota_infer(shapes, types, attrs):
    shape = tuple(attrs["shape"])
    if not 0 <= attrs["axis"] < len(shape):
        raise ValueError(f"axis {attrs['axis']} out of range for shape {list(shape)}")
    return shape, dtypes.by_name(attrs["dtype"])


def _iota_evaluate(arrays, attrs, shape, dtype):
    axis = attrs["axis"]
    line = np.arange(shape[axis], dtype=dtype.numpy)
    return np.broadcast_to(line.reshape([-1 if i == axis else 1 for i in range(len(shape))]), shape)


register(OpDef("iota", SOURCE, _iota_infer, _iota_evaluate))


def _rand_infer(shapes, types, attrs):
    if tuple(shapes[0]) != (2,) or types[0] is not dtypes.int64:
        raise ValueError("rand takes a key: an int64 tensor [seed, offset]")
    if attrs.get("lane", 0) not in range(4):
        raise ValueError("lane must be 0..3")
    return tuple(attrs["shape"]), dtypes.float32


def _rand_evaluate(arrays, attrs, shape, dtype):
    seed, offset = (int(v) for v in arrays[0])
    count = int(np.prod(shape, dtype=np.int64))
    return philox.uniform(seed, offset, count, attrs.get("lane", 0)).reshape(shape)


register(OpDef("rand", SOURCE, _rand_infer, _rand_evaluate))
