"""Reductions (sum mean max min argmax argmin var std prod amax amin) with dim/keepdim, and
contractions (matmul mm bmm dot), against NumPy on fresh random inputs."""
import numpy as np
import pytest

import graphc
from helpers import (FLOAT_DTYPES, INT_DTYPES, LAYOUTS, NUMERIC_DTYPES, assert_close, make_pair)

SHAPE = (3, 4, 5)
# (dim, keepdim) combinations for a 3-d input
DIMS = [(None, False), (0, False), (1, True), (-1, False), (-1, True), ((0, 2), False),
        ((2, 0), True), ((-3, -2, -1), False)]


def _axis(dim):
    return None if dim is None else dim


def _kwargs(dim, keepdim):
    if dim is None:
        return {}
    return {"dim": dim, "keepdim": keepdim}


def _accumulated(a, dtype):
    """The dtype PyTorch accumulates/returns sum and prod in: int64 for integers and bools."""
    return a.astype(np.int64) if dtype in INT_DTYPES + ("bool",) else a.astype(np.float64)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES + ("bool",))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sum_prod(rng, dtype, layout):
    x, a = make_pair(rng, SHAPE, dtype, layout, low=-2, high=2)
    expected_dtype = dtype if dtype in FLOAT_DTYPES else "int64"
    for dim, keepdim in DIMS:
        reference = _accumulated(a, dtype)
        axis, keep = _axis(dim), keepdim and dim is not None
        assert_close(x.sum(**_kwargs(dim, keepdim)), reference.sum(axis=axis, keepdims=keep),
                     dtype=expected_dtype)
        assert_close(graphc.sum(x, **_kwargs(dim, keepdim)), reference.sum(axis=axis, keepdims=keep),
                     dtype=expected_dtype)
        if not isinstance(dim, tuple):  # PyTorch's prod takes a single dim
            assert_close(x.prod(**_kwargs(dim, keepdim)), reference.prod(axis=axis, keepdims=keep),
                         dtype=expected_dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mean_var_std(rng, dtype, layout):
    x, a = make_pair(rng, SHAPE, dtype, layout)
    a = a.astype(np.float64)
    for dim, keepdim in DIMS:
        axis, keep = _axis(dim), keepdim and dim is not None
        kwargs = _kwargs(dim, keepdim)
        assert_close(x.mean(**kwargs), a.mean(axis=axis, keepdims=keep), dtype=dtype)
        assert_close(x.var(**kwargs), a.var(axis=axis, keepdims=keep, ddof=1), dtype=dtype)
        assert_close(x.std(**kwargs), a.std(axis=axis, keepdims=keep, ddof=1), dtype=dtype)
        assert_close(graphc.var(x, unbiased=False, **kwargs), a.var(axis=axis, keepdims=keep),
                     dtype=dtype)
        assert_close(graphc.std(x, correction=0, **kwargs), a.std(axis=axis, keepdims=keep),
                     dtype=dtype)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_min_values_and_indices(rng, dtype, layout):
    # a small integer range makes ties; PyTorch (like NumPy) returns the first maximal index
    x, a = make_pair(rng, SHAPE, dtype, layout, low=-2, high=2)
    if dtype in FLOAT_DTYPES:
        a = a.astype(np.float64)
    assert_close(x.max(), a.max(), dtype=dtype)
    assert_close(graphc.min(x), a.min(), dtype=dtype)
    assert_close(x.argmax(), np.argmax(a), dtype="int64")
    assert_close(x.argmin(), np.argmin(a), dtype="int64")
    for dim in (0, 1, 2, -1):
        for keepdim in (False, True):
            values, indices = x.max(dim, keepdim=keepdim)
            assert_close(values, a.max(axis=dim, keepdims=keepdim), dtype=dtype)
            index = np.argmax(a, axis=dim)
            assert_close(indices, np.expand_dims(index, dim) if keepdim else index, dtype="int64")
            result = graphc.min(x, dim=dim, keepdim=keepdim)
            assert_close(result.values, a.min(axis=dim, keepdims=keepdim), dtype=dtype)
            index = np.argmin(a, axis=dim)
            assert_close(result.indices, np.expand_dims(index, dim) if keepdim else index, dtype="int64")
            assert_close(x.argmax(dim=dim, keepdim=keepdim),
                         np.expand_dims(np.argmax(a, axis=dim), dim) if keepdim else np.argmax(a, axis=dim),
                         dtype="int64")
            assert_close(graphc.argmin(x, dim, keepdim),
                         np.expand_dims(np.argmin(a, axis=dim), dim) if keepdim else np.argmin(a, axis=dim),
                         dtype="int64")
        assert_close(x.amax(dim), a.max(axis=dim), dtype=dtype)
        assert_close(graphc.amin(x, dim), a.min(axis=dim), dtype=dtype)
    assert_close(x.amax((0, 2), keepdim=True), a.max(axis=(0, 2), keepdims=True), dtype=dtype)


def test_max_result_is_a_named_tuple(rng):
    x, a = make_pair(rng, (4, 3), "float32")
    result = x.max(dim=1)
    values, indices = result
    assert type(result).__name__ == "max" and result.values is values and result.indices is indices
    assert_close(graphc.max(x, 0)[0], a.max(0), dtype="float32")
    y, b = make_pair(rng, (3,), "float32", "strided")
    assert_close(graphc.max(x, y), np.maximum(a, b), dtype="float32")   # max(tensor, tensor)
    assert_close(x.min(y), np.minimum(a, b), dtype="float32")


def test_bool_max_and_argmax(rng):
    x, a = make_pair(rng, (3, 5), "bool", "transposed")
    assert_close(x.max(), a.max(), dtype="bool")
    assert_close(x.min(dim=0).values, a.min(axis=0), dtype="bool")
    assert_close(x.argmax(dim=1), np.argmax(a, axis=1), dtype="int64")


def test_nan_is_the_maximum_and_propagates(rng):
    a = rng.uniform(-1, 1, size=(3, 4))
    row, col = int(rng.integers(0, 3)), int(rng.integers(0, 4))
    a[row, col] = np.nan
    x = graphc.tensor(a)
    assert np.isnan(x.max().item()) and np.isnan(x.sum().item()) and np.isnan(x.min().item())
    assert x.argmax().item() == row * 4 + col
    assert x.argmax(dim=1)[row].item() == col


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_reductions_of_0d_tensors(rng, dtype):
    x, a = make_pair(rng, (), dtype)
    a = a.astype(np.float64)
    for result in (x.sum(), x.sum(0), x.sum(-1, keepdim=True), x.mean(), x.mean(0), x.max(), x.amax(0),
                   x.prod(), x.max(0).values, x.min(dim=0, keepdim=True).values):
        assert_close(result, a, dtype=dtype)
    assert_close(x.argmax(), np.array(0), dtype="int64")
    assert_close(x.max(0).indices, np.array(0), dtype="int64")
    assert_close(x.var(correction=0), np.array(0.0), dtype=dtype)
    assert np.isnan(x.var().item())          # one sample: division by zero degrees of freedom


def test_reductions_of_empty_tensors(rng):
    x = graphc.zeros(2, 0, 3)
    assert_close(x.sum(), np.array(0.0), dtype="float32")
    assert_close(x.sum(1), np.zeros((2, 3)), dtype="float32")
    assert_close(x.prod(1), np.ones((2, 3)), dtype="float32")
    assert_close(x.sum((0, 2), keepdim=True), np.zeros((1, 0, 1)), dtype="float32")
    assert np.isnan(x.mean().item())
    assert np.all(np.isnan(x.mean(1).numpy())) and x.mean(1).shape == (2, 3)
    assert_close(x.amax(0), np.zeros((0, 3)), dtype="float32")   # the reduced dim is not empty
    assert_close(x.max(2).values, np.zeros((2, 0)), dtype="float32")
    assert_close(x.argmax(dim=0), np.zeros((0, 3)), dtype="int64")
    ints = graphc.zeros(0, dtype=graphc.int32)
    assert_close(ints.sum(), np.array(0), dtype="int64")


# ---- contraction ------------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (4,)),
    ((4,), (2, 4, 5)), ((3, 0), (0, 4)), ((0, 3), (3, 2)), ((2, 0, 4), (4, 3)),
]


@pytest.mark.parametrize("left_shape, right_shape", MATMUL_SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_matmul_shapes(rng, left_shape, right_shape, dtype):
    x, a = make_pair(rng, left_shape, dtype, low=-3, high=3)
    y, b = make_pair(rng, right_shape, dtype, low=-3, high=3)
    compute = np.int64 if dtype == "int64" else np.float64
    expected = np.matmul(a.astype(compute), b.astype(compute))
    rtol = 1e-5 if dtype == "float32" else None
    assert_close(x @ y, expected, dtype=dtype, rtol=rtol, atol=1e-5 if dtype == "float32" else None)
    assert_close(graphc.matmul(x, y), expected, dtype=dtype, rtol=rtol,
                 atol=1e-5 if dtype == "float32" else None)


@pytest.mark.parametrize("left_layout, right_layout", [("transposed", "contiguous"),
                                                       ("strided", "transposed"),
                                                       ("transposed", "strided")])
def test_matmul_views(rng, left_layout, right_layout):
    for left_shape, right_shape in [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((6,), (6, 2))]:
        x, a = make_pair(rng, left_shape, "float64", left_layout)
        y, b = make_pair(rng, right_shape, "float64", right_layout)
        assert_close(x @ y, a @ b, dtype="float64")
    m, c = make_pair(rng, (4, 3), "float64")
    assert_close(m.T @ m, c.T @ c, dtype="float64")
    assert_close(m @ m.t(), c @ c.T, dtype="float64")


def test_mm_bmm_dot(rng):
    x, a = make_pair(rng, (3, 4), "float64", "transposed")
    y, b = make_pair(rng, (4, 2), "float64")
    assert_close(x.mm(y), a @ b, dtype="float64")
    assert_close(graphc.mm(x, y), a @ b, dtype="float64")
    p, c = make_pair(rng, (5, 3, 4), "float64", "strided")
    q, d = make_pair(rng, (5, 4, 2), "float64", "transposed")
    assert_close(graphc.bmm(p, q), np.matmul(c, d), dtype="float64")
    assert_close(p.bmm(q), np.matmul(c, d), dtype="float64")
    u, e = make_pair(rng, (6,), "float64", "strided")
    v, f = make_pair(rng, (6,), "float64")
    assert_close(graphc.dot(u, v), np.dot(e, f), dtype="float64")
    assert_close(u @ v, np.dot(e, f), dtype="float64")


def test_matmul_promotes_with_reflected_operator(rng):
    x, a = make_pair(rng, (3, 4), "float32")
    w = a.astype(np.float32)
    y, b = make_pair(rng, (4, 3), "float32")
    assert_close(y.__rmatmul__(x), w.astype(np.float64) @ b.astype(np.float64), dtype="float32",
                 rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, reference", [("sum", np.sum), ("mean", np.mean),
                                             ("amax", np.max), ("amin", np.min),
                                             ("var", lambda a: np.var(a, ddof=1))])
def test_empty_dim_list_reduces_everything(rng, name, reference):
    x, a = make_pair(rng, (3, 4), "float64", "transposed")
    assert_close(getattr(x, name)(dim=()), reference(a), dtype="float64")
    assert_close(getattr(x, name)(dim=[]), reference(a), dtype="float64")


def test_all_any(rng):
    x, a = make_pair(rng, (3, 4), "bool", "strided")
    assert_close(x.all(), a.all(), dtype="bool")
    assert_close(x.any(dim=1), a.any(axis=1), dtype="bool")
    assert_close(x.all(dim=0, keepdim=True), a.all(axis=0, keepdims=True), dtype="bool")
    assert_close(graphc.zeros(0).all(), np.array(True), dtype="bool")
    assert_close(graphc.zeros(0).any(), np.array(False), dtype="bool")


def test_max_result_repr(rng):
    x, _ = make_pair(rng, (2, 3), "float32")
    values, indices = x.max(1)
    assert repr(x.max(1)) == f"graphc.return_types.max(\nvalues={values!r},\nindices={indices!r})"
    assert repr(x.min(0)).startswith("graphc.return_types.min(\nvalues=tensor(")
