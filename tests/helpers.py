"""Shared helpers for the Tensor API tests: random inputs built twice (a graphc tensor and the
NumPy array it must equal), optionally laid out as a non-contiguous view, and comparisons of
graphc results with a NumPy reference.

Every test gets fresh random values from the `rng` fixture (conftest.py); nothing here hard-codes
an expected output.
"""
from __future__ import annotations

import numpy as np

import graphc

DTYPE_NAMES = ("float32", "float64", "int32", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")
NUMERIC_DTYPES = FLOAT_DTYPES + INT_DTYPES

# how each layout turns a fresh base tensor into the tensor under test
LAYOUTS = ("contiguous", "transposed", "strided")

# shapes covering 0-d, 1-d, an empty dim, and 2-d/3-d
SHAPES = [(), (5,), (0,), (3, 4), (2, 0, 3), (2, 3, 4)]


def gdtype(name: str) -> graphc.dtype:
    return getattr(graphc, name)


def random_array(rng, shape, dtype: str = "float32", low=-3.0, high=3.0, nonzero=False,
                 positive=False) -> np.ndarray:
    """Random values of `dtype` (as the NumPy dtype graphc stores)."""
    shape = tuple(shape)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype in INT_DTYPES:
        lo, hi = (1, int(high) + 1) if positive else (int(low), int(high) + 1)
        values = rng.integers(lo, hi, size=shape)
        if nonzero:
            values = np.where(values == 0, hi - 1 if hi - 1 != 0 else 1, values)
        return np.asarray(values.astype(np.dtype(dtype)))
    lo = max(low, 0.0) if positive else low
    values = rng.uniform(lo, high, size=shape)
    if nonzero or positive:
        values = np.where(np.abs(values) < 0.1, 0.5, values)
    return np.asarray(values.astype(np.dtype(dtype)))


def layout_as(array: np.ndarray, layout: str):
    """A graphc tensor equal to `array`, laid out as `layout`:

    contiguous: a fresh tensor; transposed: a permuted view of a tensor holding the transpose;
    strided: every other element of a larger tensor along the last dim, at a storage offset.
    0-d and 1-element arrays only come contiguous.
    """
    if layout == "contiguous" or array.ndim == 0:
        return graphc.tensor(array)
    if layout == "transposed":
        if array.ndim < 2:
            return layout_as(array, "strided")
        order = tuple(reversed(range(array.ndim)))
        base = graphc.tensor(np.ascontiguousarray(np.transpose(array, order)))
        return base.permute(order)
    if layout == "strided":
        padded_shape = array.shape[:-1] + (2 * array.shape[-1] + 1,)
        base = np.zeros(padded_shape, dtype=array.dtype)
        base[..., 1::2] = array
        tensor = graphc.tensor(base)
        view = tensor[..., 1::2]
        return view
    raise ValueError(layout)


def make_pair(rng, shape, dtype: str = "float32", layout: str = "contiguous", **kwargs):
    """(graphc tensor, NumPy array) holding the same random values.

    The array keeps the tensor's dtype; use `.astype(np.float64)` for a float64 reference.
    """
    array = random_array(rng, shape, dtype, **kwargs)
    tensor = layout_as(array, layout)
    assert tuple(tensor.shape) == array.shape
    if layout != "contiguous" and array.ndim >= 1 and min(array.shape) > 1:
        assert not tensor.is_contiguous(), (layout, array.shape)
    return tensor, array


def to_numpy(value) -> np.ndarray:
    if isinstance(value, graphc.Tensor):
        return np.array(value.numpy())
    return np.asarray(value)


# tolerances relative to the result's dtype
TOLERANCE = {"float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13)}


def assert_close(result, expected, dtype: str | None = None, rtol=None, atol=None,
                 equal_nan=True):
    """`result` (a graphc tensor) equals `expected` (NumPy, any precision) in shape and value;
    and has dtype `dtype` when given. Float results are compared with the result dtype's
    tolerance, others exactly."""
    assert isinstance(result, graphc.Tensor), type(result)
    expected = np.asarray(expected)
    assert tuple(result.shape) == expected.shape, (tuple(result.shape), expected.shape)
    if dtype is not None:
        assert result.dtype is gdtype(dtype), (result.dtype, dtype)
    actual = to_numpy(result)
    assert actual.shape == expected.shape
    assert actual.dtype == result.dtype.numpy
    if result.dtype.is_floating_point:
        default_rtol, default_atol = TOLERANCE[result.dtype.name]
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                                   rtol=rtol if rtol is not None else default_rtol,
                                   atol=atol if atol is not None else default_atol,
                                   equal_nan=equal_nan)
    else:
        np.testing.assert_array_equal(actual, expected.astype(actual.dtype)
                                      if expected.dtype != actual.dtype else expected)


def reference_dtype(dtype: str) -> np.dtype:
    """The dtype a NumPy reference computes in: float64 for floats, int64 for ints."""
    return {"float32": np.float64, "float64": np.float64, "int32": np.int64, "int64": np.int64,
            "bool": np.bool_}[dtype]


def line_of(path: str, marker: str) -> int:
    """The number of the line of `path` holding `marker` (a comment tag such as `# SQRT-LINE`), so a
    test can check that an error names the user's line without hard-coding it."""
    with open(path) as file:
        for number, line in enumerate(file, 1):
            if marker in line and "line_of(" not in line:
                return number
    raise AssertionError(f"{marker} is not in {path}")
