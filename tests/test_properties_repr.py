"""Tensor properties (shape/size, dtype, device, ndim, numel, stride, storage_offset, T, len,
iteration) and printing (repr of tensors of every dtype and layout, Size)."""
import re

import numpy as np
import pytest

import graphc
from helpers import DTYPE_NAMES, LAYOUTS, SHAPES, assert_close, gdtype, make_pair


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_basic_properties(rng, shape, dtype):
    x, a = make_pair(rng, shape, dtype)
    assert x.shape == shape and x.size() == shape and isinstance(x.shape, graphc.Size)
    assert isinstance(x.shape, tuple)
    assert x.dtype is gdtype(dtype)
    assert x.device == graphc.device("cpu") and x.device.type == "cpu"
    assert x.ndim == x.dim() == len(shape)
    assert x.numel() == a.size == graphc.numel(x)
    assert x.stride() == tuple(s // a.itemsize for s in np.array(a, order="C").strides) or 0 in shape
    assert x.storage_offset() == 0
    assert x.is_contiguous()
    assert x.element_size() == a.itemsize
    assert x.is_floating_point() == dtype.startswith("float") == graphc.is_floating_point(x)
    assert graphc.is_tensor(x) and not graphc.is_tensor(a)
    for dim in range(-len(shape), len(shape)):
        assert x.size(dim) == shape[dim]
        assert x.stride(dim) == x.stride()[dim]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_properties_of_views(rng, layout):
    x, a = make_pair(rng, (3, 4), "float32", layout)
    assert x.is_contiguous() == (layout == "contiguous")
    if layout == "strided":
        assert x.stride() == (9, 2) and x.storage_offset() == 1
    if layout == "transposed":
        assert x.stride() == (1, 3) and x.storage_offset() == 0
    assert x.T.shape == (4, 3) and x.T.stride() == tuple(reversed(x.stride()))
    assert_close(x.T, a.T, dtype="float32")
    assert len(x) == 3 and [tuple(r.shape) for r in x] == [(4,)] * 3
    for row, reference in zip(x, a):
        assert_close(row, reference, dtype="float32")
    assert_close(x.t(), a.T, dtype="float32")


def test_iteration_over_1d_gives_0d_tensors(rng):
    x, a = make_pair(rng, (5,), "int64")
    items = list(x)
    assert all(isinstance(i, graphc.Tensor) and i.shape == () for i in items)
    assert [i.item() for i in items] == a.tolist()
    assert len(graphc.zeros(0, 3)) == 0 and list(graphc.zeros(0, 3)) == []


# ---- Size -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_size_repr_and_tuple_behaviour(shape):
    size = graphc.zeros(shape).shape
    text = "graphc.Size([" + ", ".join(str(s) for s in shape) + "])"
    assert repr(size) == text and str(size) == text
    assert size == shape and tuple(size) == shape and hash(size) == hash(shape)
    assert size.numel() == int(np.prod(shape))
    assert isinstance(size[1:], graphc.Size)
    assert len(size) == len(shape)
    extended = size + (7,)
    assert extended == shape + (7,) and isinstance(extended, graphc.Size)
    assert isinstance((7,) + size, tuple)
    assert repr(graphc.Size([3, 2])) == "graphc.Size([3, 2])"


def test_size_indexing(rng):
    shape = tuple(int(s) for s in rng.integers(1, 6, size=3))
    size = graphc.rand(*shape).size()
    assert size[0] == shape[0] and size[-1] == shape[-1] and isinstance(size[0], int)
    assert list(size) == list(shape)
    rows, cols, depth = size
    assert (rows, cols, depth) == shape


# ---- repr ---------------------------------------------------------------------------------
NUMBER = re.compile(r"-?(?:nan|inf|\d+\.?\d*(?:e[+-]\d+)?)")


def _numbers(text):
    body = text.split("dtype=")[0].split("size=")[0].split("requires_grad")[0].split("grad_fn")[0]
    return [float(n) for n in NUMBER.findall(body.replace("True", "1").replace("False", "0"))]


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_repr_shows_values_and_dtype(rng, dtype, layout):
    x, a = make_pair(rng, (3, 4), dtype, layout, low=-50, high=50)
    text = repr(x)
    assert text.startswith("tensor([[") and text.endswith("])" if dtype in ("float32", "int64", "bool")
                                                        else f"dtype=graphc.{dtype})")
    assert str(x) == text
    # one line per row; the dtype goes on a line of its own when the last row leaves no room for it
    # (PyTorch's layout: scientific notation, which a value near 0 triggers, makes rows longer)
    assert sum("[" in line for line in text.splitlines()) == 3
    assert text.count("\n") == 2 or text.splitlines()[-1].strip().startswith("dtype=")
    printed = np.array(_numbers(text))
    assert printed.size == 12
    if dtype.startswith("float"):
        np.testing.assert_allclose(printed, a.reshape(-1), atol=5e-5 * 50)
    else:
        np.testing.assert_array_equal(printed, a.reshape(-1).astype(np.float64))
    # a view prints like its contiguous copy
    assert repr(x.contiguous()) == text


def test_repr_0d_empty_and_autograd(rng):
    value = int(rng.integers(-100, 100))
    assert repr(graphc.tensor(value)) == f"tensor({value})"
    assert repr(graphc.tensor(value, dtype=graphc.int32)) == f"tensor({value}, dtype=graphc.int32)"
    assert repr(graphc.tensor(True)) == "tensor(True)"
    assert repr(graphc.zeros(0)) == "tensor([])"
    assert repr(graphc.zeros(2, 0, dtype=graphc.int32)) == "tensor([], size=(2, 0), dtype=graphc.int32)"
    w = graphc.tensor(rng.uniform(-1, 1, size=2), dtype=graphc.float32, requires_grad=True)
    assert repr(w).endswith("requires_grad=True)")
    assert repr(w * 2).endswith("grad_fn=<MulBackward0>)")
    assert repr((w * 2).sum()).endswith("grad_fn=<SumBackward0>)")
    assert f"{graphc.tensor(2.345678):.2f}" == "2.35"


def test_repr_of_pending_value_computes_it(rng):
    x, a = make_pair(rng, (2, 2), "float64")
    y = x * 3
    numbers = _numbers(repr(y))
    np.testing.assert_allclose(numbers, (a * 3).reshape(-1), atol=1e-4 * max(1, np.abs(a * 3).max()))


def test_device_objects():
    cpu = graphc.device("cpu")
    assert repr(cpu) == "device(type='cpu')" and str(cpu) == "cpu"
    assert cpu == "cpu" and graphc.device("cuda:1").index == 1
    with pytest.raises(RuntimeError, match="device type"):
        graphc.device("tpu")
