"""Creation functions: tensor, as_tensor, from_numpy, zeros/ones/full/empty, arange, linspace, eye,
the random sources and their seeding, and the *_like variants."""
import numpy as np
import pytest

import graphc
from helpers import DTYPE_NAMES, assert_close, gdtype, random_array


def random_shape(rng, ndim=None):
    ndim = int(rng.integers(0, 4)) if ndim is None else ndim
    return tuple(int(s) for s in rng.integers(1, 5, size=ndim))


# ---- tensor(), as_tensor(), from_numpy() -----------------------------------------------------
@pytest.mark.parametrize("kind, expected", [("float", "float32"), ("int", "int64"),
                                            ("bool", "bool"), ("mixed", "float32"),
                                            ("bool_int", "int64")])
def test_tensor_from_nested_lists_infers_dtype(rng, kind, expected):
    shape = (2,) + random_shape(rng, 1)
    values = rng.uniform(-5, 5, size=shape)
    if kind == "int":
        values = np.round(values).astype(np.int64)
    elif kind == "bool":
        values = values > 0
    data = values.tolist()
    if kind == "mixed":        # ints and floats together -> the default float
        data[0][0] = int(round(data[0][0]))
    if kind == "bool_int":     # bools and ints together -> int64
        data = (np.round(values).astype(np.int64)).tolist()
        data[0][0] = True
    result = graphc.tensor(data)
    assert_close(result, np.array(data, dtype=np.float64 if expected == "float32" else None),
                 dtype=expected)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_tensor_from_numpy_array_keeps_dtype_and_copies(rng, dtype):
    array = random_array(rng, random_shape(rng), dtype)
    result = graphc.tensor(array)
    assert_close(result, array, dtype=dtype)
    before = array.copy()
    if array.ndim:
        array.reshape(-1)[0] = not array.reshape(-1)[0] if dtype == "bool" else array.reshape(-1)[0] + 1
    else:
        array[()] = not array[()] if dtype == "bool" else array[()] + 1
    assert_close(result, before, dtype=dtype)  # tensor() copies


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_tensor_dtype_argument_converts(rng, dtype):
    values = rng.uniform(-4, 4, size=random_shape(rng, 2))
    result = graphc.tensor(values.tolist(), dtype=gdtype(dtype))
    assert_close(result, values.astype(np.dtype(dtype)), dtype=dtype)


def test_tensor_scalars_are_0d(rng):
    value = float(rng.uniform(-3, 3))
    scalar = graphc.tensor(value)
    assert scalar.shape == () and scalar.ndim == 0 and scalar.numel() == 1
    assert scalar.dtype is graphc.float32
    assert scalar.item() == pytest.approx(value, rel=1e-6)
    integer = graphc.tensor(int(rng.integers(-100, 100)))
    assert integer.dtype is graphc.int64 and integer.shape == ()
    assert graphc.tensor(True).dtype is graphc.bool
    assert graphc.tensor(np.float64(value)).dtype is graphc.float64
    assert graphc.tensor(np.int32(3)).dtype is graphc.int32


def test_tensor_empty_lists():
    assert graphc.tensor([]).shape == (0,)
    assert graphc.tensor([]).dtype is graphc.float32
    nested = graphc.tensor([[], []])
    assert nested.shape == (2, 0) and nested.dtype is graphc.float32
    assert graphc.tensor([], dtype=graphc.int64).dtype is graphc.int64


def test_tensor_from_list_of_tensors(rng):
    rows = [rng.uniform(-1, 1, size=3) for _ in range(4)]
    result = graphc.tensor([graphc.tensor(r) for r in rows])
    assert_close(result, np.stack(rows), dtype="float64")


def test_as_tensor_shares_memory_when_dtype_matches(rng):
    array = rng.uniform(-1, 1, size=(3, 4))
    shared = graphc.as_tensor(array)
    copied = graphc.as_tensor(array, dtype=graphc.float32)
    original = array.copy()
    array[1, 2] = 100.0
    assert shared[1, 2].item() == 100.0
    assert_close(copied, original, dtype="float32")
    t = graphc.tensor(array)
    assert graphc.as_tensor(t) is t
    converted = graphc.as_tensor(t, dtype=graphc.float32)
    assert_close(converted, array, dtype="float32")
    listed = graphc.as_tensor(array.tolist())
    assert_close(listed, array, dtype="float32")


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_from_numpy_shares_memory_both_ways(rng, dtype):
    array = random_array(rng, (3, 4), dtype)
    tensor = graphc.from_numpy(array)
    assert tensor.dtype is gdtype(dtype)
    new = random_array(rng, (4,), dtype)
    array[1] = new                                # numpy write is seen by the tensor
    assert_close(tensor[1], new, dtype=dtype)
    other = random_array(rng, (3,), dtype)
    tensor[:, 2] = graphc.tensor(other)          # tensor write is seen by numpy
    np.testing.assert_array_equal(array[:, 2], other)
    assert np.shares_memory(tensor.numpy(), array)


@pytest.mark.parametrize("make, strides", [
    (lambda a: a[:, ::2], (6, 2)),
    (lambda a: a.T, (1, 6)),
    (lambda a: a[1:, 2:5], (6, 1)),
])
def test_from_numpy_non_contiguous_keeps_strides(rng, make, strides):
    base = rng.uniform(-1, 1, size=(4, 6))
    array = make(base)
    tensor = graphc.from_numpy(array)
    assert tensor.stride() == strides
    assert_close(tensor, array, dtype="float64")
    assert_close(tensor * 2, array * 2, dtype="float64")
    array[...] = rng.uniform(-1, 1, size=array.shape)   # writes through the view are seen
    assert_close(tensor, array, dtype="float64")


@pytest.mark.parametrize("numpy_dtype", [np.float16, np.complex64, np.uint8, np.int16])
def test_from_numpy_rejects_unsupported_dtypes(numpy_dtype):
    with pytest.raises(TypeError, match="float64, float32, int64, int32, and bool"):
        graphc.from_numpy(np.zeros(3, dtype=numpy_dtype))


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError, match="expected np.ndarray"):
        graphc.from_numpy([1.0, 2.0])


# ---- filled tensors ---------------------------------------------------------------------------
@pytest.mark.parametrize("function, value", [(graphc.zeros, 0), (graphc.ones, 1)])
@pytest.mark.parametrize("dtype", (None,) + DTYPE_NAMES)
def test_zeros_ones(rng, function, value, dtype):
    shape = random_shape(rng)
    kwargs = {} if dtype is None else {"dtype": gdtype(dtype)}
    for result in (function(*shape, **kwargs), function(shape, **kwargs), function(list(shape), **kwargs)):
        assert_close(result, np.full(shape, value), dtype=dtype or "float32")
        assert result.is_contiguous() and result.storage_offset() == 0


def test_empty_has_shape_and_dtype(rng):
    shape = random_shape(rng)
    result = graphc.empty(shape, dtype=graphc.int32)
    assert result.shape == shape and result.dtype is graphc.int32
    assert graphc.empty(*shape).dtype is graphc.float32
    assert graphc.empty(0, 3).shape == (0, 3)


@pytest.mark.parametrize("fill, expected", [("float", "float32"), ("int", "int64"), ("bool", "bool")])
def test_full_infers_dtype_from_fill_value(rng, fill, expected):
    shape = random_shape(rng)
    value = {"float": float(rng.uniform(-5, 5)), "int": int(rng.integers(-50, 50)),
             "bool": bool(rng.integers(0, 2))}[fill]
    assert_close(graphc.full(shape, value), np.full(shape, value), dtype=expected)
    assert_close(graphc.full(shape, value, dtype=graphc.float64), np.full(shape, float(value)),
                 dtype="float64")


def test_negative_dimension_is_an_error():
    with pytest.raises(RuntimeError, match="negative dimension"):
        graphc.zeros(2, -1)


# ---- ranges --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, dtype", [
    ((7,), "int64"), ((2, 11), "int64"), ((10, 0, -3), "int64"), ((-4, 9, 2), "int64"),
    ((0.0, 1.0, 0.1), "float32"), ((1, 2.5, 0.25), "float32"), ((5.5,), "float32"),
    ((3, 0), "int64"),
])
def test_arange_matches_numpy(args, dtype):
    result = graphc.arange(*args)
    expected = np.arange(*args)
    assert_close(result, expected, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "int32", "float32"])
def test_arange_dtype_argument(rng, dtype):
    end = int(rng.integers(3, 20))
    assert_close(graphc.arange(end, dtype=gdtype(dtype)), np.arange(end), dtype=dtype)


def test_arange_zero_step_is_an_error():
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        graphc.arange(0, 5, 0)


@pytest.mark.parametrize("steps", [0, 1, 2, 7])
def test_linspace(rng, steps):
    start, end = rng.uniform(-10, 10, size=2)
    assert_close(graphc.linspace(start, end, steps), np.linspace(start, end, steps), dtype="float32")
    assert_close(graphc.linspace(start, end, steps, dtype=graphc.float64),
                 np.linspace(start, end, steps), dtype="float64")


@pytest.mark.parametrize("n, m", [(1, None), (4, None), (3, 5), (5, 2), (0, 3)])
def test_eye(n, m):
    assert_close(graphc.eye(n, m), np.eye(n, m), dtype="float32")
    assert_close(graphc.eye(n, m, dtype=graphc.int64), np.eye(n, m), dtype="int64")


# ---- random sources -------------------------------------------------------------------------
@pytest.mark.parametrize("function", [graphc.rand, graphc.randn])
def test_random_shape_dtype_and_seed(rng, function):
    shape = random_shape(rng, 2)
    seed = int(rng.integers(0, 2 ** 31))
    graphc.manual_seed(seed)
    first = function(*shape)
    second = function(shape)                 # the stream advances: new values
    graphc.manual_seed(seed)
    again = function(shape)                  # the same seed repeats the stream
    assert first.shape == shape and first.dtype is graphc.float32
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), second.numpy())
    graphc.manual_seed(seed + 1)
    assert not np.array_equal(function(shape).numpy(), first.numpy())
    assert function(shape, dtype=graphc.float64).dtype is graphc.float64
    assert function(()).shape == ()
    assert function(0, 3).shape == (0, 3)


def test_rand_is_uniform_on_unit_interval(rng):
    graphc.manual_seed(int(rng.integers(0, 2 ** 31)))
    sample = graphc.rand(200_000).numpy().astype(np.float64)
    assert sample.min() >= 0.0 and sample.max() < 1.0
    assert abs(sample.mean() - 0.5) < 0.005
    assert abs(sample.var() - 1 / 12) < 0.002
    histogram, _ = np.histogram(sample, bins=10, range=(0, 1))
    assert np.all(np.abs(histogram / sample.size - 0.1) < 0.005)


def test_randn_is_standard_normal(rng):
    graphc.manual_seed(int(rng.integers(0, 2 ** 31)))
    sample = graphc.randn(200_000).numpy().astype(np.float64)
    assert np.all(np.isfinite(sample))
    assert abs(sample.mean()) < 0.01
    assert abs(sample.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(sample) < 1.0) - 0.6827) < 0.01


def test_randint_range_dtype_and_seed(rng):
    low, high = sorted(int(v) for v in rng.choice(np.arange(-20, 20), size=2, replace=False))
    seed = int(rng.integers(0, 2 ** 31))
    graphc.manual_seed(seed)
    values = graphc.randint(low, high, (50, 40))
    graphc.manual_seed(seed)
    again = graphc.randint(low, high, (50, 40))
    assert values.dtype is graphc.int64 and values.shape == (50, 40)
    array = values.numpy()
    np.testing.assert_array_equal(array, again.numpy())
    assert array.min() == low and array.max() == high - 1   # every value appears in 2000 draws
    assert graphc.randint(5, (3,)).numpy().max() < 5
    assert graphc.randint(0, 3, (4,), dtype=graphc.int32).dtype is graphc.int32


def test_randint_empty_range_is_an_error():
    with pytest.raises(RuntimeError, match="from=3 >= to=3"):
        graphc.randint(3, 3, (2,))


# ---- *_like ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_like_functions_copy_shape_and_dtype(rng, dtype):
    source = graphc.tensor(random_array(rng, random_shape(rng, 2), dtype))
    shape = tuple(source.shape)
    assert_close(graphc.zeros_like(source), np.zeros(shape), dtype=dtype)
    assert_close(graphc.ones_like(source), np.ones(shape), dtype=dtype)
    value = int(rng.integers(0, 2)) if dtype == "bool" else int(rng.integers(-9, 9))
    assert_close(graphc.full_like(source, value), np.full(shape, value), dtype=dtype)
    assert_close(graphc.zeros_like(source, dtype=graphc.float64), np.zeros(shape), dtype="float64")


def test_full_like_casts_fill_to_input_dtype(rng):
    source = graphc.arange(int(rng.integers(2, 6)))
    value = float(rng.uniform(1.1, 9.9))
    assert_close(graphc.full_like(source, value), np.full(source.shape, int(value)), dtype="int64")


@pytest.mark.parametrize("function", [graphc.rand_like, graphc.randn_like])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_like(rng, function, dtype):
    source = graphc.zeros(random_shape(rng, 2), dtype=gdtype(dtype))
    result = function(source)
    assert result.shape == source.shape and result.dtype is gdtype(dtype)
    values = result.numpy()
    assert np.all(np.isfinite(values)) and len(np.unique(values)) == values.size


@pytest.mark.parametrize("function", [graphc.rand_like, graphc.randn_like])
def test_random_like_of_integers_is_an_error(rng, function):
    source = graphc.tensor(random_array(rng, (3,), "int64"))
    with pytest.raises(TypeError, match="floating-point dtype"):
        function(source)
    with pytest.raises(TypeError, match="int32"):
        graphc.rand(2, dtype=graphc.int32)


@pytest.mark.parametrize("function", [graphc.rand, graphc.randn, graphc.randint])
def test_same_seed_same_values_on_every_backend(rng, monkeypatch, function):
    from graphc import backend
    seed = int(rng.integers(0, 2 ** 31))
    args = (0, 100, (7, 9)) if function is graphc.randint else (7, 9)
    results = []
    for name in ("numpy", "c"):
        monkeypatch.setattr(backend, "_default", name)
        monkeypatch.setattr(backend, "_compile_after", 0)
        graphc.manual_seed(seed)
        results.append(function(*args).numpy())
    np.testing.assert_array_equal(results[0], results[1])
