"""dtypes, conversions and PyTorch's type promotion (tables checked against PyTorch 2.13)."""
import numpy as np
import pytest

import graphc
from helpers import DTYPE_NAMES, assert_close, gdtype, random_array

F32, F64, I32, I64, B = "float32", "float64", "int32", "int64", "bool"

# promote_types(row, column), in DTYPE_NAMES order: float32 float64 int32 int64 bool
PROMOTE = {
    F32: [F32, F64, F32, F32, F32],
    F64: [F64, F64, F64, F64, F64],
    I32: [F32, F64, I32, I64, I32],
    I64: [F32, F64, I64, I64, I64],
    B:   [F32, F64, I32, I64, B],
}
# dimensioned tensor (row) + 0-d tensor (column)
PROMOTE_0D = {
    F32: [F32, F32, F32, F32, F32],
    F64: [F64, F64, F64, F64, F64],
    I32: [F32, F64, I32, I32, I32],
    I64: [F32, F64, I64, I64, I64],
    B:   [F32, F64, I32, I64, B],
}
# tensor (row; dimensioned or 0-d alike) + Python True, 2, 2.5
PROMOTE_SCALAR = {
    F32: [F32, F32, F32], F64: [F64, F64, F64], I32: [I32, I32, F32], I64: [I64, I64, F32],
    B: [B, I64, F32],
}
PAIRS = [(a, b) for a in DTYPE_NAMES for b in DTYPE_NAMES]


def test_dtype_objects_and_aliases():
    assert graphc.float is graphc.float32 and graphc.double is graphc.float64
    assert graphc.long is graphc.int64 and graphc.int is graphc.int32
    assert repr(graphc.float32) == "graphc.float32" and repr(graphc.bool) == "graphc.bool"
    for name in DTYPE_NAMES:
        assert gdtype(name).is_floating_point == name.startswith("float")
        assert graphc.zeros(1, dtype=gdtype(name)).element_size() == np.dtype(name).itemsize


@pytest.mark.parametrize("a, b", PAIRS)
def test_tensor_tensor_promotion(rng, a, b):
    xa = random_array(rng, (3,), a)
    x = graphc.tensor(xa)
    ya = random_array(rng, (2, 3), b)
    y = graphc.tensor(ya)
    expected = PROMOTE[a][DTYPE_NAMES.index(b)]
    result = graphc.add(x, y)
    reference = (xa.astype(np.float64) + ya.astype(np.float64)) if expected != B else (xa | ya)
    assert_close(result, reference, dtype=expected)
    assert_close(x * y, xa.astype(np.float64) * ya.astype(np.float64) if expected != B else xa & ya,
                 dtype=expected)
    assert (x == y).dtype is graphc.bool
    assert graphc.where(y > 0 if b != B else y, x, y).dtype is gdtype(expected)


@pytest.mark.parametrize("a, b", PAIRS)
def test_tensor_zero_dim_promotion(rng, a, b):
    xa, ya = random_array(rng, (4,), a), random_array(rng, (), b)
    expected = PROMOTE_0D[a][DTYPE_NAMES.index(b)]
    result = graphc.tensor(xa) + graphc.tensor(ya)
    reference = xa.astype(np.float64) + ya.astype(np.float64) if expected != B else xa | ya
    assert_close(result, reference, dtype=expected)
    # two 0-d tensors promote like two dimensioned ones
    zero_d = graphc.tensor(random_array(rng, (), a)) + graphc.tensor(ya)
    assert zero_d.shape == () and zero_d.dtype is gdtype(PROMOTE[a][DTYPE_NAMES.index(b)])


@pytest.mark.parametrize("a", DTYPE_NAMES)
@pytest.mark.parametrize("shape", [(3,), ()])
def test_tensor_python_scalar_promotion(rng, a, shape):
    xa = random_array(rng, shape, a)
    x = graphc.tensor(xa)
    for column, scalar in enumerate([True, int(rng.integers(1, 9)), float(rng.uniform(0.1, 3))]):
        expected = PROMOTE_SCALAR[a][column]
        for result in (x + scalar, scalar + x):
            reference = xa.astype(np.float64) + scalar if expected != B else xa | scalar
            assert_close(result, reference, dtype=expected)


@pytest.mark.parametrize("a", [I32, I64, B])
def test_true_division_of_integers_is_float(rng, a):
    xa = random_array(rng, (5,), a)
    ya = random_array(rng, (5,), I32, nonzero=True)
    x, y = graphc.tensor(xa), graphc.tensor(ya)
    assert_close(x / 2, xa.astype(np.float64) / 2, dtype=F32)
    assert_close(x / y, xa.astype(np.float64) / ya, dtype=F32)
    assert_close(3 / y, 3 / ya.astype(np.float64), dtype=F32)
    assert_close(graphc.tensor(xa, dtype=graphc.int64).div(y), xa.astype(np.float64) / ya, dtype=F32)


def test_integer_ops_stay_integer(rng):
    xa = random_array(rng, (6,), I32, low=-20, high=20)
    ya = random_array(rng, (6,), I32, low=1, high=5, positive=True)
    x, y = graphc.tensor(xa), graphc.tensor(ya)
    assert_close(x // 3, xa // 3, dtype=I32)
    assert_close(x % y, xa % ya, dtype=I32)
    assert_close(x ** 2, xa.astype(np.int64) ** 2, dtype=I32)
    assert_close(2 ** y, 2 ** ya.astype(np.int64), dtype=I32)
    assert_close(x ** 0.5 if np.all(xa >= 0) else abs(x) ** 0.5,
                 np.abs(xa) ** 0.5, dtype=F32)
    assert_close(2.0 ** y, 2.0 ** ya.astype(np.float64), dtype=F32)


@pytest.mark.parametrize("a", DTYPE_NAMES)
def test_comparisons_give_bool(rng, a):
    xa, ya = random_array(rng, (2, 3), a), random_array(rng, (3,), a)
    x, y = graphc.tensor(xa), graphc.tensor(ya)
    for result, reference in ((x < y, xa < ya), (x >= y, xa >= ya), (x == y, xa == ya),
                              (x != 1, xa != 1), (x > 0.5, xa > 0.5)):
        assert_close(result, reference, dtype=B)


@pytest.mark.parametrize("a, expected", [(F32, F32), (F64, F64), (I32, I64), (I64, I64), (B, I64)])
def test_sum_and_prod_of_integers_are_int64(rng, a, expected):
    xa = random_array(rng, (3, 4), a, low=-3, high=3)
    x = graphc.tensor(xa)
    assert_close(x.sum(), xa.astype(np.float64).sum(), dtype=expected)
    assert_close(x.sum(1), xa.astype(np.float64).sum(1), dtype=expected)
    assert_close(x.prod(0), xa.astype(np.float64).prod(0), dtype=expected)
    assert_close(x.sum(dtype=graphc.float64), xa.astype(np.float64).sum(), dtype=F64)


@pytest.mark.parametrize("a", [I32, I64, B])
def test_float_only_math_on_integers_gives_default_float(rng, a):
    xa = random_array(rng, (4,), a, positive=True)
    x = graphc.tensor(xa)
    assert_close(x.exp(), np.exp(xa.astype(np.float64)), dtype=F32)
    assert_close(x.sqrt(), np.sqrt(xa.astype(np.float64)), dtype=F32)
    assert_close(x.sigmoid(), 1 / (1 + np.exp(-xa.astype(np.float64))), dtype=F32)


@pytest.mark.parametrize("source", DTYPE_NAMES)
@pytest.mark.parametrize("method, target", [("float", F32), ("double", F64), ("long", I64),
                                            ("int", I32), ("bool", B)])
def test_conversion_methods(rng, source, method, target):
    xa = random_array(rng, (2, 3), source, low=-5, high=5)
    x = graphc.tensor(xa)
    result = getattr(x, method)()
    # float -> int truncates toward zero, anything -> bool is "!= 0", as NumPy's astype
    assert_close(result, xa.astype(np.dtype(target)), dtype=target)
    assert_close(x.to(gdtype(target)), xa.astype(np.dtype(target)), dtype=target)
    assert_close(x.to(dtype=gdtype(target)), xa.astype(np.dtype(target)), dtype=target)
    if source == target:
        assert result is x and x.to(gdtype(target)) is x


def test_to_other_tensor_and_device(rng):
    x = graphc.tensor(rng.uniform(-2, 2, size=3))
    other = graphc.zeros(1, dtype=graphc.int32)
    assert x.to(other).dtype is graphc.int32
    assert x.to("cpu") is x and x.cpu() is x
    assert x.device == graphc.device("cpu") and str(x.device) == "cpu"
    assert x.type() == "graphc.DoubleTensor"


def test_set_default_dtype_changes_float_inference(rng):
    values = rng.uniform(-1, 1, size=3)
    assert graphc.get_default_dtype() is graphc.float32
    graphc.set_default_dtype(graphc.float64)
    try:
        assert graphc.tensor(values.tolist()).dtype is graphc.float64
        assert graphc.zeros(2).dtype is graphc.float64
        assert (graphc.arange(3) / 2).dtype is graphc.float64
        assert (graphc.tensor([1, 2], dtype=graphc.int32) * 1.5).dtype is graphc.float64
        assert (graphc.ones(2, dtype=graphc.float32) * 1.5).dtype is graphc.float32
    finally:
        graphc.set_default_dtype(graphc.float32)
    assert graphc.tensor(values.tolist()).dtype is graphc.float32
    with pytest.raises(TypeError, match="floating-point"):
        graphc.set_default_dtype(graphc.int64)


def test_mean_of_integers_is_an_error(rng):
    x = graphc.tensor(random_array(rng, (3,), I64))
    with pytest.raises(RuntimeError, match="mean: .*Input dtype must be a floating point"):
        x.mean()
    assert_close(x.mean(dtype=graphc.float64), x.numpy().astype(np.float64).mean(), dtype=F64)
