"""Shape ops and indexing: values against NumPy, and for views the strides/storage offsets PyTorch
computes (the tables below were checked against PyTorch 2.13) and storage sharing."""
import numpy as np
import pytest

import graphc
from helpers import LAYOUTS, assert_close, make_pair, random_array


def shares_storage(a: graphc.Tensor, b: graphc.Tensor) -> bool:
    return a.untyped_storage() is b.untyped_storage()


def numpy_strides(array: np.ndarray) -> tuple:
    return tuple(s // array.itemsize for s in array.strides)


# ---- shape ops: strides as PyTorch computes them --------------------------------------------
# (description, function of a contiguous (3, 4, 5) tensor, PyTorch's shape, strides, offset)
VIEW_GEOMETRY = [
    ("view", lambda x: x.view(12, 5), (12, 5), (5, 1), 0),
    ("view_unit_dim", lambda x: x.view(3, 1, 20), (3, 1, 20), (20, 20, 1), 0),
    ("view_flat", lambda x: x.view(-1), (60,), (1,), 0),
    ("permute", lambda x: x.permute(2, 0, 1), (5, 3, 4), (1, 20, 5), 0),
    ("transpose", lambda x: x.transpose(0, 2), (5, 4, 3), (1, 5, 20), 0),
    ("slice_step", lambda x: x[:, 1:3, ::2], (3, 2, 3), (20, 5, 2), 5),
    ("select", lambda x: x[1], (4, 5), (5, 1), 20),
    ("ellipsis_select", lambda x: x[..., 2], (3, 4), (20, 5), 2),
    ("none", lambda x: x[None, :, None], (1, 3, 1, 4, 5), (60, 20, 20, 5, 1), 0),
    ("unsqueeze_end", lambda x: x.unsqueeze(3), (3, 4, 5, 1), (20, 5, 1, 1), 0),
    ("unsqueeze_front", lambda x: x.unsqueeze(0), (1, 3, 4, 5), (60, 20, 5, 1), 0),
    ("unsqueeze_strided", lambda x: x[:, ::2].unsqueeze(2), (3, 2, 1, 5), (20, 10, 5, 1), 0),
    ("expand_new_dim", lambda x: x.expand(2, 3, 4, 5), (2, 3, 4, 5), (0, 20, 5, 1), 0),
    ("expand_unit_dim", lambda x: x[:, :1].expand(3, 6, 5), (3, 6, 5), (20, 0, 1), 0),
    ("expand_minus_one", lambda x: x[:, :1].expand(-1, 2, -1), (3, 2, 5), (20, 0, 1), 0),
    ("reshape_of_permute_is_a_view", lambda x: x.permute(2, 0, 1).reshape(5, 12), (5, 12), (1, 5), 0),
    ("view_of_permute", lambda x: x.permute(2, 0, 1).view(5, 3, 4), (5, 3, 4), (1, 20, 5), 0),
    ("view_of_strided", lambda x: x.view(12, 5)[:, ::2].view(2, 6, 3), (2, 6, 3), (30, 5, 2), 0),
    ("squeeze_dim", lambda x: x[:, :1, ::2].squeeze(1), (3, 3), (20, 2), 0),
    ("squeeze_all", lambda x: x[:1, :, 2:3].squeeze(), (4,), (5,), 2),
    ("T", lambda x: x.T, (5, 4, 3), (1, 5, 20), 0),
    ("mT", lambda x: x.mT, (3, 5, 4), (20, 1, 5), 0),
    ("flatten_end", lambda x: x.flatten(1), (3, 20), (20, 1), 0),
    ("flatten_front", lambda x: x.flatten(0, 1), (12, 5), (5, 1), 0),
    ("split_offset", lambda x: x.split([1, 2], dim=0)[1], (2, 4, 5), (20, 5, 1), 20),
    ("chunk_offset", lambda x: x.chunk(2, dim=2)[1], (3, 4, 2), (20, 5, 1), 3),
    ("narrow", lambda x: x.narrow(1, 1, 2), (3, 2, 5), (20, 5, 1), 5),
    ("select_negative", lambda x: x.select(2, -1), (3, 4), (20, 5), 4),
    ("unbind", lambda x: x.unbind(1)[2], (3, 5), (20, 1), 10),
]


CONTIGUOUS = {"view", "view_unit_dim", "view_flat", "select", "none", "unsqueeze_end",
              "unsqueeze_front", "flatten_end", "flatten_front", "split_offset"}


@pytest.mark.parametrize("name, function, shape, strides, offset", VIEW_GEOMETRY,
                         ids=[v[0] for v in VIEW_GEOMETRY])
def test_view_geometry_and_values(rng, name, function, shape, strides, offset):
    a = rng.standard_normal((3, 4, 5))
    x = graphc.tensor(a)
    result = function(x)
    assert result.shape == shape
    assert result.stride() == strides
    assert result.storage_offset() == offset
    assert result.is_contiguous() == (name in CONTIGUOUS)
    assert shares_storage(result, x)
    # the values, checked against the same storage read with NumPy's as_strided
    flat = a.reshape(-1)
    expected = np.lib.stride_tricks.as_strided(flat[offset:], shape, [s * 8 for s in strides])
    assert_close(result, expected, dtype="float64")
    # and the view is live: a write into the base is seen through it
    x.mul_(-1)
    assert_close(result, -expected, dtype="float64")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_follow_numpy(rng, layout):
    """Basic indexing gives the same strides and values as NumPy on any layout."""
    x, a = make_pair(rng, (4, 6, 5), "float32", layout)
    base = np.lib.stride_tricks.as_strided(
        np.asarray(x.untyped_storage().array)[x.storage_offset():], x.shape,
        [s * 4 for s in x.stride()])
    np.testing.assert_array_equal(base, a)
    for index in [(1,), (slice(None), 2), (slice(1, None, 2), slice(None, None, 3)),
                  (Ellipsis, slice(None, None, 2)), (-1, slice(-3, None)), (slice(None), None, 1),
                  (slice(3, 1),), (None, Ellipsis, None), (2, 3, 4), (slice(None, None, 4), -2, -1)]:
        result = x[index]
        expected = base[index]
        assert_close(result, expected, dtype="float32")
        # strides of size-1 dims are arbitrary (NumPy gives 0 to None, PyTorch size * stride)
        assert [s for s, n in zip(result.stride(), result.shape) if n != 1] == \
            [s for s, n in zip(numpy_strides(expected), expected.shape) if n != 1], index
        assert shares_storage(result, x)


def test_reshape_copies_only_when_it_must(rng):
    x, a = make_pair(rng, (3, 4), "float64")
    t = x.t()
    copied = t.reshape(12)
    assert_close(copied, a.T.reshape(12), dtype="float64")
    assert not shares_storage(copied, x) and copied.is_contiguous()
    viewed = x.reshape(2, 6)
    assert shares_storage(viewed, x)
    assert_close(x.reshape(-1, 2), a.reshape(-1, 2), dtype="float64")
    assert_close(x.reshape((4, 3)), a.reshape(4, 3), dtype="float64")
    assert_close(x.view(2, 2, 3), a.reshape(2, 2, 3), dtype="float64")
    assert_close(x.view([6, -1]), a.reshape(6, -1), dtype="float64")
    assert_close(x.view_as(graphc.zeros(6, 2)), a.reshape(6, 2), dtype="float64")
    assert_close(x.reshape_as(graphc.zeros(12)), a.reshape(12), dtype="float64")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shape_ops_values(rng, layout):
    x, a = make_pair(rng, (2, 3, 4), "float32", layout)
    assert_close(x.permute(2, 0, 1), a.transpose(2, 0, 1), dtype="float32")
    assert_close(x.permute((1, 2, 0)), a.transpose(1, 2, 0), dtype="float32")
    assert_close(x.permute(-1, 0, 1), a.transpose(2, 0, 1), dtype="float32")
    assert_close(x.transpose(0, -1), a.swapaxes(0, 2), dtype="float32")
    assert_close(graphc.transpose(x, 1, 2), a.swapaxes(1, 2), dtype="float32")
    assert_close(x.unsqueeze(1), a[:, None], dtype="float32")
    assert_close(x.unsqueeze(-1), a[..., None], dtype="float32")
    assert_close(x.flatten(), a.reshape(-1), dtype="float32")
    assert_close(graphc.flatten(x, 1, 2), a.reshape(2, 12), dtype="float32")
    assert_close(x.reshape(4, 6), a.reshape(4, 6), dtype="float32")
    assert_close(x.reshape(-1), a.reshape(-1), dtype="float32")
    assert_close(x.contiguous(), a, dtype="float32")
    assert x.contiguous().is_contiguous()
    assert (x.contiguous() is x) == (layout == "contiguous")
    assert_close(x[:, :1].expand(2, 5, 4), np.broadcast_to(a[:, :1], (2, 5, 4)), dtype="float32")
    assert_close(x.expand_as(graphc.zeros(3, 2, 3, 4)), np.broadcast_to(a, (3, 2, 3, 4)),
                 dtype="float32")
    assert_close(x[:, 1:2].squeeze(1), a[:, 1], dtype="float32")
    assert_close(x[:1, :, :1].squeeze(), a[0, :, 0], dtype="float32")
    assert_close(x.squeeze(0), a, dtype="float32")    # a dim that is not 1 stays
    assert_close(x[:1, :, :1].squeeze((0, 2)), a[0, :, 0], dtype="float32")
    assert_close(x.T, a.transpose(2, 1, 0), dtype="float32")


def test_shape_ops_on_0d_and_empty(rng):
    x, a = make_pair(rng, (), "float64")
    assert_close(x.view(1, 1), a.reshape(1, 1), dtype="float64")
    assert_close(x.reshape(-1), a.reshape(-1), dtype="float64")
    assert_close(x.unsqueeze(0), a[None], dtype="float64")
    assert_close(x.flatten(), a.reshape(1), dtype="float64")
    assert_close(x.expand(2, 3), np.broadcast_to(a, (2, 3)), dtype="float64")
    assert_close(x.T, a, dtype="float64")
    assert_close(x.squeeze(), a, dtype="float64")
    assert_close(x.view(1).squeeze(0), a, dtype="float64")
    e = graphc.zeros(2, 0, 3)
    assert e.view(0, 6).shape == (0, 6) and e.reshape(3, -1, 2).shape == (3, 0, 2)
    assert e.permute(2, 0, 1).shape == (3, 2, 0) and e.flatten().shape == (0,)
    assert e.unsqueeze(1).shape == (2, 1, 0, 3) and e.transpose(0, 1).shape == (0, 2, 3)
    assert e.permute(2, 1, 0).is_contiguous()  # PyTorch: empty tensors are always contiguous


def test_is_contiguous_rules(rng):
    x = graphc.tensor(random_array(rng, (3, 4)))
    assert x.is_contiguous() and not x.T.is_contiguous()
    assert graphc.zeros(3, 1).T.is_contiguous()             # size-1 dims do not count
    assert not x[:, ::2].is_contiguous() and x[1:].is_contiguous()
    assert not x[:, :1].is_contiguous() and not x[:, 1:2].is_contiguous()
    assert x[1:2, 1:3].is_contiguous()                       # one row: only the last stride counts
    assert x.T.contiguous().stride() == (3, 1)


# ---- cat, stack, split, chunk -------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_cat(rng, dim):
    shapes = [[3, 2, 4], [3, 2, 4], [3, 2, 4]]
    for i, size in enumerate((1, 3, 2)):
        shapes[i][dim] = size
    pairs = [make_pair(rng, s, "float32", layout) for s, layout in zip(shapes, LAYOUTS)]
    expected = np.concatenate([p[1] for p in pairs], axis=dim)
    assert_close(graphc.cat([p[0] for p in pairs], dim=dim), expected, dtype="float32")
    assert_close(graphc.cat(tuple(p[0] for p in pairs), dim), expected, dtype="float32")
    assert_close(graphc.concat([p[0] for p in pairs], dim), expected, dtype="float32")


def test_cat_promotes_and_skips_1d_empty(rng):
    x, a = make_pair(rng, (2, 3), "int32")
    y, b = make_pair(rng, (1, 3), "float64")
    assert_close(graphc.cat([x, y]), np.concatenate([a, b]), dtype="float64")
    assert_close(graphc.cat([x, graphc.zeros(0, dtype=graphc.int32)]), a, dtype="int32")
    assert_close(graphc.cat([x[:0], x]), a, dtype="int32")
    assert_close(graphc.cat([x]), a, dtype="int32")


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack(rng, dim):
    pairs = [make_pair(rng, (2, 3), "float64", layout) for layout in LAYOUTS]
    expected = np.stack([p[1] for p in pairs], axis=dim)
    assert_close(graphc.stack([p[0] for p in pairs], dim), expected, dtype="float64")
    scalars = [make_pair(rng, (), "int64") for _ in range(4)]
    assert_close(graphc.stack([s[0] for s in scalars]), np.stack([s[1] for s in scalars]), dtype="int64")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_and_chunk(rng, layout):
    x, a = make_pair(rng, (7, 4), "float32", layout)
    for size in (1, 2, 3, 7, 10):
        pieces = x.split(size)
        expected = [a[i:i + size] for i in range(0, 7, size)]
        assert len(pieces) == len(expected)
        for piece, reference in zip(pieces, expected):
            assert_close(piece, reference, dtype="float32")
            assert shares_storage(piece, x)
    pieces = graphc.split(x, [1, 2, 1], dim=1)
    for piece, reference in zip(pieces, np.split(a, [1, 3], axis=1)):
        assert_close(piece, reference, dtype="float32")
    for chunks in (1, 2, 3, 4, 7, 9):
        pieces = x.chunk(chunks)
        step = -(-7 // chunks)
        expected = [a[i:i + step] for i in range(0, 7, step)]
        assert [tuple(p.shape) for p in pieces] == [e.shape for e in expected]
        for piece, reference in zip(pieces, expected):
            assert_close(piece, reference, dtype="float32")
    for piece, reference in zip(graphc.chunk(x, 2, dim=-1), np.split(a, 2, axis=1)):
        assert_close(piece, reference, dtype="float32")


# ---- indexing --------------------------------------------------------------------------------
def _index_cases(rng):
    """(graphc index, NumPy index) pairs for a (4, 5, 6) tensor, random where it can be."""
    i = rng.integers(-4, 4, size=3)
    j = rng.integers(0, 4, size=(2, 1))
    k = rng.integers(-6, 6, size=(3,))
    mask = rng.random((4, 5)) < 0.5
    row_mask = rng.random(4) < 0.5
    return [
        (graphc.tensor(i), i),                                       # one integer tensor
        (i.tolist(), i),                                            # a list
        ((slice(None), graphc.tensor(j[:, 0])), (slice(None), j[:, 0])),
        ((graphc.tensor(i), graphc.tensor(i % 5)), (i, i % 5)),      # two, adjacent
        ((graphc.tensor(j), slice(None), graphc.tensor(k)), (j, slice(None), k)),  # broadcast, apart
        ((graphc.tensor(i), slice(1, 4), graphc.tensor(k)), (i, slice(1, 4), k)),
        ((slice(None), graphc.tensor(j), graphc.tensor(k)), (slice(None), j, k)),
        ((Ellipsis, graphc.tensor(k)), (Ellipsis, k)),
        ((graphc.tensor(i)[:, None], None, 2), (i[:, None], None, 2)),
        ((1, graphc.tensor(j[:, 0]), graphc.tensor(k[:2])), (1, j[:, 0], k[:2])),
        (graphc.tensor(mask), mask),                                # a boolean mask
        (graphc.tensor(row_mask), row_mask),
        ((slice(None), graphc.tensor(mask[0])), (slice(None), mask[0])),
        ((graphc.tensor(row_mask), slice(None, None, 2)), (row_mask, slice(None, None, 2))),
        (graphc.tensor(np.zeros((4,), dtype=bool)), np.zeros((4,), dtype=bool)),
        (graphc.tensor(np.zeros((0,), dtype=np.int64)), np.zeros((0,), dtype=np.int64)),
        (graphc.tensor(int(i[0])), int(i[0])),                       # a 0-d integer tensor
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_getitem_advanced(rng, layout, dtype):
    x, a = make_pair(rng, (4, 5, 6), dtype, layout)
    for index, numpy_index in _index_cases(rng):
        assert_close(x[index], a[numpy_index], dtype=dtype)


def test_getitem_with_int32_index_and_negative_values(rng):
    x, a = make_pair(rng, (5, 3), "float64")
    index = rng.integers(-5, 5, size=(2, 3))
    assert_close(x[graphc.tensor(index, dtype=graphc.int32)], a[index], dtype="float64")
    assert_close(x[:, graphc.tensor(index % 3)], a[:, index % 3], dtype="float64")


def test_getitem_advanced_is_a_copy(rng):
    x, a = make_pair(rng, (4, 3), "float64")
    picked = x[graphc.tensor([0, 2])]
    x.zero_()
    assert_close(picked, a[[0, 2]], dtype="float64")


def test_getitem_0d_and_empty(rng):
    x, a = make_pair(rng, (), "float64")
    assert_close(x[None], a[None], dtype="float64")
    assert_close(x[...], a, dtype="float64")
    assert_close(x[()], a, dtype="float64")
    e = graphc.zeros(0, 3)
    assert e[:, 1].shape == (0,) and e[graphc.tensor([], dtype=graphc.int64)].shape == (0, 3)
    y, b = make_pair(rng, (3, 4), "float64")
    assert_close(y[2:1], b[2:1], dtype="float64")
    assert_close(y[:, 10:], b[:, 10:], dtype="float64")


def test_item_len_iteration_and_tolist(rng):
    x, a = make_pair(rng, (3, 4), "float64", "transposed")
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3
    for row, reference in zip(rows, a):
        assert_close(row, reference, dtype="float64")
        assert shares_storage(row, x)
    assert x.tolist() == a.tolist()
    assert x[1, 2].item() == a[1, 2]
    assert float(x[0, 0]) == a[0, 0] and int(graphc.tensor(7)) == 7
    with pytest.raises(TypeError, match="0-d"):
        len(x[0, 0])
    with pytest.raises(TypeError, match="0-d"):
        iter(x[0, 0])
    with pytest.raises(RuntimeError, match="12 elements cannot be converted to Scalar"):
        x.item()


# ---- assignment ---------------------------------------------------------------------------
def _set_cases(rng):
    """(graphc index, NumPy index) pairs for t[index] = value on a (4, 5) tensor."""
    i = rng.choice(4, size=2, replace=False)
    k = rng.choice(5, size=3, replace=False)
    mask = rng.random((4, 5)) < 0.5
    return [
        (1, 1), (-1, -1), ((slice(None), 2), (slice(None), 2)), ((slice(1, None, 2),), (slice(1, None, 2),)),
        ((Ellipsis, slice(None, None, 3)), (Ellipsis, slice(None, None, 3))), ((2, 3), (2, 3)),
        ((None, 1), (None, 1)),
        (graphc.tensor(i), i), ((slice(None), graphc.tensor(k)), (slice(None), k)),
        ((graphc.tensor(i)[:, None], graphc.tensor(k)), (i[:, None], k)),
        (graphc.tensor(mask), mask), (graphc.tensor(mask[:, 0]), mask[:, 0]),
        (i.tolist(), i),
    ]


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("value_kind", ["scalar", "tensor", "broadcast"])
def test_setitem(rng, dtype, layout, value_kind):
    for index, numpy_index in _set_cases(rng):
        x, a = make_pair(rng, (4, 5), dtype, layout)
        expected = a.copy()
        target_shape = expected[numpy_index].shape
        if value_kind == "scalar":
            value = random_array(rng, (), dtype).item()
            numpy_value = value
        else:
            shape = target_shape if value_kind == "tensor" else target_shape[-1:]
            numpy_value = random_array(rng, shape, dtype)
            value = graphc.tensor(numpy_value)
        expected[numpy_index] = numpy_value
        x[index] = value
        assert_close(x, expected, dtype=dtype)


def test_setitem_casts_value_to_target_dtype(rng):
    x, a = make_pair(rng, (3, 4), "int64")
    values = rng.uniform(-5, 5, size=4)
    x[1] = graphc.tensor(values)
    a[1] = values.astype(np.int64)
    assert_close(x, a, dtype="int64")
    y, b = make_pair(rng, (3, 4), "float32")
    y[:, 0] = 2
    b[:, 0] = 2
    assert_close(y, b, dtype="float32")


def test_setitem_from_an_overlapping_view(rng):
    x, a = make_pair(rng, (6,), "float64")
    x[1:] = x[:-1].clone()
    a[1:] = a[:-1].copy()
    assert_close(x, a, dtype="float64")
    y, b = make_pair(rng, (6,), "float64")
    y[1:] = y[:-1]            # PyTorch reads all of the source before writing
    b[1:] = b[:-1].copy()
    assert_close(y, b, dtype="float64")


def test_0d_integer_tensor_indexes_like_an_int(rng):
    x, a = make_pair(rng, (4, 5, 6), "float64")
    i = int(rng.integers(0, 4))
    k = rng.integers(0, 6, size=2)
    view = x[graphc.tensor(i)]
    assert shares_storage(view, x) and view.storage_offset() == i * 30
    assert_close(view, a[i], dtype="float64")
    # with a non-adjacent advanced index, PyTorch selects first (NumPy would move the dims)
    assert_close(x[graphc.tensor(i), :, graphc.tensor(k)], a[i][:, k], dtype="float64")
    x[graphc.tensor(i)] = 5.0
    a[i] = 5.0
    assert_close(x, a, dtype="float64")


def test_int_with_non_adjacent_index_tensor_follows_pytorch(rng):
    """PyTorch applies ints as selections first: x[i, :, idx] has shape (5, len(idx)), where
    NumPy would give (len(idx), 5). Reading and writing agree."""
    x, a = make_pair(rng, (4, 5, 6), "float64", "transposed")
    i = int(rng.integers(-4, 4))
    mask = rng.random(6) < 0.5
    k = rng.integers(-6, 6, size=3)
    for index, reference in (((i, slice(None), graphc.tensor(mask)), (slice(None), mask)),
                             ((i, slice(None), graphc.tensor(k)), (slice(None), k)),
                             ((i, slice(None), k.tolist()), (slice(None), k))):
        expected = a[i][reference]
        assert_close(x[index], expected, dtype="float64")
        value = rng.uniform(-1, 1, size=expected.shape[-1:])
        x[index] = graphc.tensor(value)
        a[i][reference] = value
        assert_close(x, a, dtype="float64")
