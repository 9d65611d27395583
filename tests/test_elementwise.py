"""Elementwise ops against NumPy (float64 reference) on fresh random inputs: unary math, binary
arithmetic with broadcasting and Python scalars (plain, reflected and functional forms),
comparisons, clamp, where, maximum/minimum, pow; over dtypes, 0-d/empty shapes and
non-contiguous views."""
import operator

import numpy as np
import pytest

import graphc
from helpers import (FLOAT_DTYPES, INT_DTYPES, LAYOUTS, NUMERIC_DTYPES, SHAPES, assert_close,
                     make_pair, random_array)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


# name -> (graphc function, float64 reference, input domain, result stays integer for int input)
UNARY = {
    "exp": (lambda x: x.exp(), np.exp, {}, False),
    "log": (lambda x: x.log(), np.log, {"positive": True}, False),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, {"positive": True}, False),
    "rsqrt": (lambda x: x.rsqrt(), lambda a: 1 / np.sqrt(a), {"positive": True}, False),
    "sin": (lambda x: x.sin(), np.sin, {}, False),
    "cos": (lambda x: x.cos(), np.cos, {}, False),
    "tanh": (lambda x: x.tanh(), np.tanh, {}, False),
    "sigmoid": (lambda x: x.sigmoid(), _sigmoid, {}, False),
    "reciprocal": (lambda x: x.reciprocal(), lambda a: 1 / a, {"nonzero": True}, False),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), {}, True),
    "abs": (lambda x: x.abs(), np.abs, {}, True),
    "neg": (lambda x: x.neg(), np.negative, {}, True),
    "sign": (lambda x: x.sign(), np.sign, {}, True),
    "square": (lambda x: x.square(), np.square, {}, True),
    "unary_minus": (operator.neg, np.negative, {}, True),
    "unary_plus": (operator.pos, lambda a: a, {}, True),
    "builtin_abs": (abs, np.abs, {}, True),
}
# the graphc.<name> functional forms
FUNCTIONAL_UNARY = ["exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs",
                    "neg", "sign"]


def _result_dtype(dtype, keeps_int):
    return dtype if dtype in FLOAT_DTYPES or keeps_int else "float32"


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_unary(rng, name, dtype):
    function, reference, domain, keeps_int = UNARY[name]
    for shape in SHAPES:
        x, a = make_pair(rng, shape, dtype, **domain)
        assert_close(function(x), reference(a.astype(np.float64)), dtype=_result_dtype(dtype, keeps_int))


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_unary_on_views(rng, name, layout):
    function, reference, domain, _ = UNARY[name]
    for shape in [(4,), (3, 5), (2, 3, 4)]:
        x, a = make_pair(rng, shape, "float32", layout, **domain)
        assert_close(function(x), reference(a.astype(np.float64)), dtype="float32")


@pytest.mark.parametrize("name", FUNCTIONAL_UNARY)
def test_unary_functional_form(rng, name):
    _, reference, domain, _ = UNARY[name]
    x, a = make_pair(rng, (3, 4), "float64", "transposed", **domain)
    assert_close(getattr(graphc, name)(x), reference(a), dtype="float64")


def test_sigmoid_is_stable_for_large_inputs(rng):
    a = rng.uniform(80, 120, size=6) * rng.choice([-1, 1], size=6)
    x = graphc.tensor(a, dtype=graphc.float32)
    result = x.sigmoid().numpy()
    assert np.all(np.isfinite(result))
    assert_close(x.sigmoid(), _sigmoid(a.astype(np.float32).astype(np.float64)), dtype="float32")


# ---- binary arithmetic --------------------------------------------------------------------------
def _floor_divide(a, b):
    return np.floor(a / b)


# name -> (operator, graphc function name, reference, domain of the right operand, left operand)
BINARY = {
    "add": (operator.add, "add", np.add, {}, {}),
    "sub": (operator.sub, "sub", np.subtract, {}, {}),
    "mul": (operator.mul, "mul", np.multiply, {}, {}),
    "div": (operator.truediv, "div", np.divide, {"nonzero": True}, {}),
    "floor_divide": (operator.floordiv, "floor_divide", _floor_divide, {"nonzero": True}, {}),
    "remainder": (operator.mod, "remainder", np.remainder, {"nonzero": True}, {}),
    "pow": (operator.pow, "pow", np.power, {"low": 0, "high": 3}, {"positive": True}),
    "maximum": (None, "maximum", np.maximum, {}, {}),
    "minimum": (None, "minimum", np.minimum, {}, {}),
}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,)),
                    ((4,), ()), ((), ()), ((0, 3), (1, 3)), ((3, 1), (1, 0)), ((1,), (2, 0))]


# rounding to an integer is discontinuous: a float32 quotient that rounds onto an integer floors
# differently from the exact one, so these are computed at the inputs' own precision
DISCONTINUOUS = ("floor_divide", "remainder")


def _binary_reference(name, a, b, dtype):
    _, _, reference, _, _ = BINARY[name]
    if name in DISCONTINUOUS and dtype == "float32":
        return np.asarray(reference(a, b))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    result = reference(a64, b64)
    if dtype in INT_DTYPES and name == "div":
        return result
    if dtype in INT_DTYPES:
        return np.asarray(reference(a.astype(np.int64), b.astype(np.int64)))
    return result


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_binary_broadcasting(rng, name, dtype):
    symbol, function_name, _, right_domain, left_domain = BINARY[name]
    expected_dtype = "float32" if name == "div" and dtype in INT_DTYPES else dtype
    for left_shape, right_shape in BROADCAST_SHAPES:
        x, a = make_pair(rng, left_shape, dtype, **left_domain)
        y, b = make_pair(rng, right_shape, dtype, **right_domain)
        reference = _binary_reference(name, a, b, dtype)
        assert_close(getattr(graphc, function_name)(x, y), reference, dtype=expected_dtype)
        assert_close(getattr(x, function_name)(y), reference, dtype=expected_dtype)
        if symbol is not None:
            assert_close(symbol(x, y), reference, dtype=expected_dtype)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("left_layout, right_layout", [("transposed", "strided"),
                                                       ("strided", "transposed"),
                                                       ("contiguous", "transposed")])
def test_binary_on_views(rng, name, left_layout, right_layout):
    _, function_name, _, right_domain, left_domain = BINARY[name]
    for left_shape, right_shape in [((3, 4), (3, 4)), ((2, 3, 4), (3, 4)), ((4, 1), (1, 5))]:
        x, a = make_pair(rng, left_shape, "float64", left_layout, **left_domain)
        y, b = make_pair(rng, right_shape, "float64", right_layout, **right_domain)
        assert_close(getattr(graphc, function_name)(x, y), _binary_reference(name, a, b, "float64"),
                     dtype="float64")


@pytest.mark.parametrize("name", [n for n in sorted(BINARY) if BINARY[n][0] is not None])
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_binary_with_python_scalars(rng, name, dtype):
    symbol, function_name, reference, right_domain, left_domain = BINARY[name]
    x, a = make_pair(rng, (3, 4), dtype, "strided", **left_domain)
    if dtype in INT_DTYPES:
        scalar = int(random_array(rng, (), "int64", **right_domain))
    else:
        scalar = float(random_array(rng, (), "float64", **right_domain))
    expected_dtype = "float32" if name == "div" and dtype in INT_DTYPES else dtype
    compute = np.int64 if dtype in INT_DTYPES and name != "div" else np.float64
    if name in DISCONTINUOUS and dtype == "float32":
        compute = np.float32
    assert_close(symbol(x, scalar), reference(a.astype(compute), compute(scalar)), dtype=expected_dtype)
    assert_close(getattr(x, function_name)(scalar), reference(a.astype(compute), compute(scalar)),
                 dtype=expected_dtype)
    # reflected: scalar <op> tensor (the tensor must be a valid right operand)
    y, b = make_pair(rng, (3, 4), dtype, "transposed", **right_domain)
    left = abs(scalar) + 1 if name == "pow" else scalar
    assert_close(symbol(left, y), reference(compute(left), b.astype(compute)), dtype=expected_dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_int_tensor_with_float_scalar(rng, dtype):
    x, a = make_pair(rng, (2, 5), "int64", "transposed", nonzero=True)
    scalar = float(rng.uniform(0.5, 3.0))
    assert_close(x * scalar, a * scalar, dtype="float32")
    assert_close(scalar - x, scalar - a, dtype="float32")
    assert_close(scalar / x, scalar / a, dtype="float32")
    assert_close(x // scalar, np.floor(a.astype(np.float32) / np.float32(scalar)), dtype="float32")


def test_add_sub_alpha(rng):
    x, a = make_pair(rng, (3, 4), "float64")
    y, b = make_pair(rng, (4,), "float64", "strided")
    alpha = float(rng.uniform(-2, 2))
    assert_close(graphc.add(x, y, alpha=alpha), a + alpha * b, dtype="float64")
    assert_close(x.sub(y, alpha=alpha), a - alpha * b, dtype="float64")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_division_by_zero_gives_inf_and_nan(rng, dtype):
    x, a = make_pair(rng, (6,), dtype, nonzero=True)
    zero = graphc.zeros(6, dtype=x.dtype)
    result = (x / zero).numpy()
    np.testing.assert_array_equal(result, np.sign(a) * np.inf)
    assert np.all(np.isnan((zero / zero).numpy()))


def test_integer_floor_divide_and_remainder_signs(rng):
    # Python semantics: floor toward -inf, remainder takes the divisor's sign
    a = rng.integers(-50, 50, size=20)
    b = rng.integers(1, 7, size=20) * rng.choice([-1, 1], size=20)
    x, y = graphc.tensor(a), graphc.tensor(b)
    assert_close(x // y, a // b, dtype="int64")
    assert_close(x % y, a % b, dtype="int64")
    assert_close(graphc.remainder(x, int(b[0])), a % int(b[0]), dtype="int64")
    assert_close(x.div(y, rounding_mode="floor"), a // b, dtype="int64")
    assert_close(x.div(y, rounding_mode="trunc"), np.trunc(a / b), dtype="int64")


def test_float_div_rounding_modes(rng):
    x, a = make_pair(rng, (3, 4), "float32", low=-10, high=10)
    y, b = make_pair(rng, (4,), "float32", nonzero=True)
    assert_close(x.div(y, rounding_mode="trunc"), np.trunc(a / b), dtype="float32")   # in float32
    assert_close(graphc.div(x, y, rounding_mode="floor"), np.floor(a / b), dtype="float32")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_pow_forms(rng, dtype):
    x, a = make_pair(rng, (2, 3), dtype, "transposed", positive=True)
    e, b = make_pair(rng, (3,), dtype, low=-2, high=2)
    a, b = a.astype(np.float64), b.astype(np.float64)
    assert_close(graphc.pow(x, e), a ** b, dtype=dtype)
    assert_close(x.pow(2), a ** 2, dtype=dtype)
    assert_close(x ** 0.5, np.sqrt(a), dtype=dtype)
    assert_close(x ** -1, 1 / a, dtype=dtype)
    assert_close(2 ** e, 2 ** b, dtype=dtype)
    assert_close(graphc.pow(x, 3), a ** 3, dtype=dtype)


# ---- comparisons, logical ops ---------------------------------------------------------------
COMPARISONS = [(operator.lt, "lt"), (operator.le, "le"), (operator.gt, "gt"), (operator.ge, "ge"),
               (operator.eq, "eq"), (operator.ne, "ne")]


@pytest.mark.parametrize("symbol, name", COMPARISONS)
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES + ("bool",))
def test_comparisons(rng, symbol, name, dtype):
    for (left_shape, right_shape), layout in zip(BROADCAST_SHAPES, LAYOUTS * 3):
        x, a = make_pair(rng, left_shape, dtype, layout, low=-2, high=2)
        y, b = make_pair(rng, right_shape, dtype, low=-2, high=2)
        expected = symbol(a, b)
        assert_close(symbol(x, y), expected, dtype="bool")
        assert_close(getattr(graphc, name)(x, y), expected, dtype="bool")
        assert_close(getattr(x, name)(y), expected, dtype="bool")
    scalar = 0 if dtype in ("bool",) + INT_DTYPES else float(rng.uniform(-1, 1))
    x, a = make_pair(rng, (3, 4), dtype, "transposed", low=-2, high=2)
    assert_close(symbol(x, scalar), symbol(a, scalar), dtype="bool")
    assert_close(symbol(scalar, x), symbol(scalar, a), dtype="bool")


def test_comparisons_mix_dtypes(rng):
    x, a = make_pair(rng, (5,), "int32", low=-3, high=3)
    y, b = make_pair(rng, (5,), "float32", low=-3, high=3)
    assert_close(x < y, a < b, dtype="bool")
    assert_close(x == 1.0, a == 1.0, dtype="bool")
    assert_close(y > 1, b > 1, dtype="bool")


def test_logical_and_bitwise_ops_on_masks(rng):
    x, a = make_pair(rng, (3, 4), "bool", "transposed")
    y, b = make_pair(rng, (4,), "bool")
    assert_close(x & y, a & b, dtype="bool")
    assert_close(x | y, a | b, dtype="bool")
    assert_close(x ^ y, a ^ b, dtype="bool")
    assert_close(~x, ~a, dtype="bool")
    assert_close(graphc.logical_and(x, y), a & b, dtype="bool")
    assert_close(graphc.logical_not(x), ~a, dtype="bool")
    z, c = make_pair(rng, (3, 4), "float32")
    assert_close((z > 0) & (z < 1), (c > 0) & (c < 1), dtype="bool")


# ---- clamp, where, maximum/minimum -----------------------------------------------------------
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_clamp(rng, dtype, layout):
    for shape in [(), (0,), (3, 4)]:
        x, a = make_pair(rng, shape, dtype, layout)
        low, high = sorted(random_array(rng, (2,), dtype).tolist())
        assert_close(x.clamp(low, high), np.clip(a, low, high), dtype=dtype)
        assert_close(graphc.clamp(x, min=low), np.maximum(a, low), dtype=dtype)
        assert_close(x.clamp(max=high), np.minimum(a, high), dtype=dtype)
        assert_close(x.clip(low, high), np.clip(a, low, high), dtype=dtype)


def test_clamp_with_tensor_bounds_and_float_bound_on_int(rng):
    x, a = make_pair(rng, (3, 4), "float64", "transposed")
    low, lo = make_pair(rng, (4,), "float64", low=-2, high=0)
    assert_close(x.clamp(min=low), np.maximum(a, lo), dtype="float64")
    i, ia = make_pair(rng, (5,), "int64")
    bound = float(rng.uniform(-1, 1))
    assert_close(i.clamp(min=bound), np.maximum(ia, bound), dtype="float32")


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES + ("bool",))
def test_where(rng, dtype):
    for shapes, layout in zip([((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), (3, 4)), ((), (2, 3), ()),
                               ((0, 2), (1, 2), (2,))], LAYOUTS + ("contiguous",)):
        c, cond = make_pair(rng, shapes[0], "bool", layout)
        x, a = make_pair(rng, shapes[1], dtype)
        y, b = make_pair(rng, shapes[2], dtype, layout)
        assert_close(graphc.where(c, x, y), np.where(cond, a, b), dtype=dtype)
        assert_close(x.where(c, y), np.where(cond, a, b), dtype=dtype)


def test_where_with_scalars_and_mixed_dtypes(rng):
    x, a = make_pair(rng, (3, 4), "float32", "strided")
    scalar = float(rng.uniform(-1, 1))
    assert_close(graphc.where(x > 0, x, scalar), np.where(a > 0, a, scalar), dtype="float32")
    assert_close(graphc.where(x > 0, 1.5, x), np.where(a > 0, 1.5, a), dtype="float32")
    i, ia = make_pair(rng, (4,), "int64")
    assert_close(graphc.where(x > 0, x.double(), i), np.where(a > 0, a, ia), dtype="float64")


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_maximum_minimum_mixed_and_nan(rng, dtype):
    x, a = make_pair(rng, (2, 3), dtype, "transposed")
    y, b = make_pair(rng, (3,), "float64")
    assert_close(graphc.maximum(x, y), np.maximum(a.astype(np.float64), b), dtype="float64")
    assert_close(graphc.minimum(y, x), np.minimum(a.astype(np.float64), b), dtype="float64")
    if dtype in FLOAT_DTYPES:
        nan = graphc.full((3,), float("nan"), dtype=x.dtype)
        assert np.all(np.isnan(graphc.maximum(x, nan).numpy()))   # NaN propagates, as in PyTorch
        assert np.all(np.isnan(graphc.minimum(nan, x).numpy()))


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_fmod_takes_the_dividends_sign(rng, dtype):
    x, a = make_pair(rng, (3, 4), dtype, "transposed", low=-9, high=9)
    y, b = make_pair(rng, (4,), dtype, nonzero=True)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert_close(graphc.fmod(x, y), np.fmod(a64, b64), dtype=dtype)
    scalar = int(rng.integers(1, 5)) * int(rng.choice([-1, 1]))
    assert_close(x.fmod(scalar), np.fmod(a64, scalar), dtype=dtype)


def test_numpy_operands_give_tensors(rng):
    x, a = make_pair(rng, (2, 3), "float32", "strided")
    b = rng.uniform(-1, 1, size=3)
    result = x + b                                  # an ndarray operand becomes a float64 tensor
    assert_close(result, a.astype(np.float64) + b, dtype="float64")
    for scalar in (np.float32(1.5), np.float64(-0.5), np.int64(3)):
        for value in (scalar * x, x * scalar, scalar - x):
            assert isinstance(value, graphc.Tensor)  # NumPy scalars defer to the tensor
            assert value.dtype is graphc.float32
    assert_close(np.float64(2.0) * x, a.astype(np.float64) * 2, dtype="float32")


def test_membership(rng):
    x, a = make_pair(rng, (3, 4), "int64", low=-5, high=5)
    present = int(a[1, 2])
    assert present in x
    assert (int(a.max()) + 1) not in x
    assert graphc.tensor(present) in x


# NumPy and PyTorch floor the exact quotient ((a - fmod(a, b)) / b): 1.0 // 0.1 is 9, not 10
@pytest.mark.parametrize("backend_name", ["numpy", "c"])
def test_floor_divide_floors_the_exact_quotient(monkeypatch, backend_name):
    from graphc import backend
    monkeypatch.setattr(backend, "_default", backend_name)
    monkeypatch.setattr(backend, "_compile_after", 0)
    a = np.array([1.0, 0.3, 7.0, -1.0, 2.0])
    b = np.array([0.1, 0.1, 0.7, 0.1, 0.2])
    x, y = graphc.tensor(a), graphc.tensor(b)
    quotient, remainder = x // y, x % y
    assert_close(quotient, np.floor_divide(a, b), dtype="float64")
    assert_close(remainder, np.remainder(a, b), dtype="float64")
    # the identity a == (a // b) * b + a % b holds
    assert_close(quotient * y + remainder, a, dtype="float64")


def test_reference_integer_pow_with_negative_exponents():
    # PyTorch computes integer powers with negative exponents: 2 ** -1 == 0, (-1) ** -3 == -1
    # on the op table's NumPy reference directly: a pending tensor whose computation raises would
    # stay pending and make every later in-place write (which computes all pending values) fail
    from graphc.ops import table
    base, exponent = np.array([1, 2, -1, 3]), np.array([-1, -1, -3, 2])
    result = table.get("pow").evaluate([base, exponent], {}, (4,), graphc.int64)
    assert result.tolist() == [1, 0, -1, 9]


def test_integer_pow_with_negative_tensor_exponent_compiled(monkeypatch):
    from graphc import backend
    monkeypatch.setattr(backend, "_default", "c")
    monkeypatch.setattr(backend, "_compile_after", 0)
    base = graphc.tensor([1, 2, -1, 3])
    exponent = graphc.tensor([-1, -1, -3, 2])
    assert (base ** exponent).tolist() == [1, 0, -1, 9]
