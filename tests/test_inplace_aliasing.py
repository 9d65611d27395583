"""In-place ops and aliasing: views share storage, numpy()/from_numpy share memory both ways,
an in-place write is seen through every view and array, and a lazy value made before a write
keeps the value it had (PyTorch computes eagerly; graphc must look as if it did)."""
import operator

import numpy as np
import pytest

import graphc
from helpers import LAYOUTS, NUMERIC_DTYPES, FLOAT_DTYPES, assert_close, make_pair, random_array

# name -> (graphc method, in-place operator or None, NumPy reference, domain of the operand)
INPLACE = {
    "add_": ("add_", operator.iadd, np.add, {}),
    "sub_": ("sub_", operator.isub, np.subtract, {}),
    "mul_": ("mul_", operator.imul, np.multiply, {}),
    "div_": ("div_", operator.itruediv, np.divide, {"nonzero": True}),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("operand", ["tensor", "broadcast", "scalar", "0d"])
def test_inplace_arithmetic(rng, name, layout, operand):
    method, symbol, reference, domain = INPLACE[name]
    x, a = make_pair(rng, (3, 4), "float64", layout)
    if operand == "scalar":
        other = b = float(random_array(rng, (), "float64", **domain))
    else:
        shape = {"tensor": (3, 4), "broadcast": (4,), "0d": ()}[operand]
        other, b = make_pair(rng, shape, "float64", "strided" if shape == (4,) else "contiguous",
                             **domain)
    storage, stride, offset = x.untyped_storage(), x.stride(), x.storage_offset()
    result = getattr(x, method)(other)
    assert result is x
    expected = reference(a, b)
    assert_close(x, expected, dtype="float64")
    assert (x.untyped_storage(), x.stride(), x.storage_offset()) == (storage, stride, offset)
    # the augmented operator keeps the tensor's identity too
    y = x
    y = symbol(y, other)
    assert y is x
    assert_close(x, reference(expected, b), dtype="float64")


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_inplace_keeps_dtype(rng, dtype):
    x, a = make_pair(rng, (5,), dtype, "strided")
    other, b = make_pair(rng, (5,), "int32")
    x.add_(other)
    x.mul_(2)
    x -= 1
    expected = (a.astype(np.float64) + b) * 2 - 1
    assert_close(x, expected, dtype=dtype)
    if dtype in FLOAT_DTYPES:
        x /= 4
        assert_close(x, expected / 4, dtype=dtype)


def test_zero_fill_copy_clamp(rng):
    for layout in LAYOUTS:
        x, a = make_pair(rng, (3, 4), "float32", layout)
        low, high = sorted(rng.uniform(-2, 2, size=2))
        assert x.clamp_(low, high) is x
        assert_close(x, np.clip(a.astype(np.float64), low, high), dtype="float32")
        assert x.clamp_(min=0.0) is x
        assert_close(x, np.maximum(np.clip(a.astype(np.float64), low, high), 0), dtype="float32")
        value = float(rng.uniform(-5, 5))
        assert x.fill_(value) is x
        assert_close(x, np.full((3, 4), value), dtype="float32")
        source, b = make_pair(rng, (4,), "float64", "strided")
        assert x.copy_(source) is x               # broadcast and cast
        assert_close(x, np.broadcast_to(b, (3, 4)), dtype="float32")
        assert x.zero_() is x
        assert_close(x, np.zeros((3, 4)), dtype="float32")


def test_copy_and_fill_cast_like_pytorch(rng):
    x, a = make_pair(rng, (6,), "int64")
    values = rng.uniform(-5, 5, size=6)
    x.copy_(graphc.tensor(values))                # float -> int truncates
    assert_close(x, values.astype(np.int64), dtype="int64")
    fill = float(rng.uniform(1.1, 5.9))
    x.fill_(fill)
    assert_close(x, np.full(6, int(fill)), dtype="int64")
    m, b = make_pair(rng, (6,), "bool")
    m.copy_(graphc.tensor(values))
    assert_close(m, values != 0, dtype="bool")


def test_inplace_into_0d_and_empty(rng):
    x, a = make_pair(rng, (), "float64")
    x.add_(1.5)
    assert_close(x, a + 1.5, dtype="float64")
    x += graphc.tensor(2.0)
    assert_close(x, a + 3.5, dtype="float64")
    e = graphc.zeros(0, 3)
    e.add_(graphc.ones(3))
    e.fill_(2.0)
    assert e.shape == (0, 3)


# ---- views see in-place writes -------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_write_through_view_is_seen_by_base_and_other_views(rng, layout):
    x, a = make_pair(rng, (4, 6), "float64", layout)
    column = x[:, 2]
    row = x[1]
    transposed = x.t()
    column.mul_(-3.0)
    a[:, 2] *= -3.0
    assert_close(x, a, dtype="float64")
    assert_close(row, a[1], dtype="float64")
    assert_close(transposed, a.T, dtype="float64")
    x[1:3, ::2] += 10.0
    a[1:3, ::2] += 10.0
    assert_close(column, a[:, 2], dtype="float64")
    assert_close(transposed, a.T, dtype="float64")
    transposed[0].zero_()
    a[:, 0] = 0
    assert_close(x, a, dtype="float64")
    flat = x.view(-1) if x.is_contiguous() else None
    if flat is not None:
        flat[5] = 42.0
        a.reshape(-1)[5] = 42.0
        assert_close(x, a, dtype="float64")


def test_view_chains_share_one_storage(rng):
    x, a = make_pair(rng, (2, 3, 4), "float32")
    v = x.permute(2, 0, 1)[1:, :, ::2].unsqueeze(0).transpose(1, 3)
    reference = a.transpose(2, 0, 1)[1:, :, ::2][None].swapaxes(1, 3)
    v.add_(1.0)
    reference += 1.0          # a NumPy view: writes into a too
    assert_close(x, a, dtype="float32")
    assert_close(v, reference, dtype="float32")
    assert v.untyped_storage() is x.untyped_storage()


def test_setitem_on_view_of_pending_value(rng):
    x, a = make_pair(rng, (3, 4), "float64")
    y = x * 2                   # pending
    row = y[1]                  # a view of the pending value
    y[1, 2] = -1.0
    expected = a * 2
    expected[1, 2] = -1.0
    assert_close(y, expected, dtype="float64")
    assert_close(row, expected[1], dtype="float64")
    assert_close(x, a, dtype="float64")        # the input is untouched


def test_storage_is_the_flat_memory(rng):
    x, a = make_pair(rng, (3, 4), "float64")
    view = x[1:, ::2]
    storage = view.storage()
    assert storage.shape == (12,)
    assert_close(storage, a.reshape(-1), dtype="float64")
    storage[5] = 99.0                            # writes into x's memory
    assert x[1, 1].item() == 99.0
    assert view.untyped_storage() is x.untyped_storage()


# ---- NumPy sharing -----------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_numpy_shares_memory_both_ways(rng, layout):
    x, a = make_pair(rng, (3, 5), "float32", layout)
    array = x.numpy()
    assert array.shape == (3, 5) and array.dtype == np.float32
    assert tuple(s // 4 for s in array.strides) == x.stride()
    np.testing.assert_array_equal(array, a)
    x.add_(1.0)                                   # tensor write -> array
    np.testing.assert_array_equal(array, a + np.float32(1))
    array[1, :] = 7.0                             # array write -> tensor and its views
    a = a + np.float32(1)
    a[1, :] = 7.0
    assert_close(x, a, dtype="float32")
    assert_close(x[1], a[1], dtype="float32")
    assert np.shares_memory(x[:, 1].numpy(), array)


def test_numpy_of_pending_result_shares_with_later_writes(rng):
    x, a = make_pair(rng, (4,), "float64")
    y = x * 3
    array = y.numpy()
    np.testing.assert_allclose(array, a * 3)
    y.sub_(1.0)
    np.testing.assert_allclose(array, a * 3 - 1)


def test_from_numpy_inplace_ops_write_the_array(rng):
    array = rng.uniform(-1, 1, size=(3, 4))
    original = array.copy()
    x = graphc.from_numpy(array)
    x.mul_(2.0)
    x[0] = 0.0
    x[:, -1].clamp_(min=0.5)
    original *= 2.0
    original[0] = 0.0
    original[:, -1] = np.maximum(original[:, -1], 0.5)
    np.testing.assert_allclose(array, original)


def test_from_numpy_view_sees_numpy_writes(rng):
    array = rng.uniform(-1, 1, size=(4, 4))
    x = graphc.from_numpy(array)
    view = x[::2, 1:]
    array[2, 3] = 123.0
    assert view[1, 2].item() == 123.0
    assert (x.sum() - array.sum()).abs().item() < 1e-9


def test_numpy_write_after_a_lazy_op_does_not_change_its_value(rng):
    """PyTorch computes y at `y = x * 2`; a later write into x's NumPy array does not reach y."""
    array = rng.uniform(-1, 1, size=(5,))
    x = graphc.from_numpy(array)
    y = x * 2
    expected = array * 2
    array[:] = rng.uniform(-1, 1, size=5)
    assert_close(y, expected, dtype="float64")
    z = graphc.tensor(rng.uniform(-1, 1, size=3))
    alias = z.numpy()
    w = z + 1
    expected = alias + 1
    alias[0] = 50.0
    assert_close(w, expected, dtype="float64")


# ---- pending values keep the old value ---------------------------------------------------------
@pytest.mark.parametrize("write", [
    lambda x: x.add_(1), lambda x: x.mul_(x), lambda x: x.zero_(), lambda x: x.fill_(3.0),
    lambda x: x.copy_(x * -1), lambda x: x.clamp_(max=0.0),
    lambda x: x.__setitem__((slice(None), 1), 5.0), lambda x: x.__setitem__(x > 0, 0.0),
    lambda x: x.__iadd__(2.0), lambda x: x.t().sub_(1), lambda x: x[0].div_(4),
])
def test_lazy_value_computed_before_write_keeps_old_value(rng, write):
    x, a = make_pair(rng, (3, 3), "float64")
    y = x * 2
    z = (x + 1).sum(0)          # a reduction over it
    v = x[1:]                   # a view made before the write shares the write
    write(x)
    assert_close(y, a * 2, dtype="float64")
    assert_close(z, (a + 1).sum(0), dtype="float64")
    np.testing.assert_array_equal(v.numpy(), x.numpy()[1:])
    assert_close(x * 2, x.numpy() * 2, dtype="float64")   # new ops read the new value


def test_pending_chain_through_view_before_write(rng):
    x, a = make_pair(rng, (4, 4), "float32")
    col = x[:, 1]
    y = col.exp()              # pending, reads through the view
    col.add_(1.0)              # writes the base through the same view
    assert_close(y, np.exp(a[:, 1].astype(np.float64)), dtype="float32")
    assert_close(x[:, 1], a[:, 1].astype(np.float64) + 1, dtype="float32")


def test_writes_into_pending_views_of_pending_values(rng):
    x, a = make_pair(rng, (2, 3), "float64")
    y = x + 1
    t = y.t()
    before = y * 1
    t[0].mul_(10.0)           # writes y's column 0
    expected = a + 1
    expected[:, 0] *= 10.0
    assert_close(y, expected, dtype="float64")
    assert_close(before, a + 1, dtype="float64")
    assert_close(t, expected.T, dtype="float64")


def test_inplace_source_aliasing_the_target(rng):
    x, a = make_pair(rng, (5,), "float64")
    x.add_(x)
    assert_close(x, 2 * a, dtype="float64")
    y, b = make_pair(rng, (3, 3), "float64")
    y.copy_(y.t())           # reads all of the source before writing (as a clone would)
    assert_close(y, b.T, dtype="float64")


@pytest.mark.parametrize("expose", [
    lambda t: t.numpy(), lambda t: np.asarray(t), lambda t: t.storage().numpy(),
])
def test_every_numpy_alias_is_snapshotted_by_pending_ops(rng, expose):
    x, a = make_pair(rng, (2, 3), "float64")
    array = expose(x)
    y = x.exp()                      # made before the NumPy write: keeps the old value
    column = x[:, 1] * 1             # through a view too
    array[...] = rng.uniform(-1, 1, size=array.shape)
    assert_close(y, np.exp(a), dtype="float64")
    assert_close(column, a[:, 1], dtype="float64")
    assert_close(x.exp(), np.exp(x.numpy()), dtype="float64")   # made after: sees the write


def test_consumers_of_numpy_backed_values_stay_lazy(rng, monkeypatch):
    """Only the op reading NumPy-held memory is computed at once; what follows stays pending."""
    from graphc import backend
    array = rng.uniform(-1, 1, size=(4,))
    x = graphc.from_numpy(array)
    runs = []
    original = backend.run
    monkeypatch.setattr(backend, "run", lambda build: runs.append(1) or original(build))
    y = x * 2            # reads the array: computed now
    z = (y + 1).exp()    # reads y only: pending
    assert len(runs) == 1
    assert_close(z, np.exp(array * 2 + 1), dtype="float64")
    assert len(runs) == 2
