"""What code written for old PyTorch (and old tutorials) meets first: the legacy constructors
(``graphc.Tensor([1.0])``, ``graphc.Tensor(2, 3)``, ``graphc.LongTensor(3)``...), the legacy types
in isinstance and ``t.type()``, ``Variable(t, requires_grad=True)`` and ``volatile=True``, grad_fn
classes named as PyTorch names them, and ``loss.data[0]`` on a 0-d loss. Each behaves, and fails,
with PyTorch 2.x's semantics and messages."""
from __future__ import annotations

import copy
import os
import pickle
import re
import warnings

import numpy as np
import pytest

import graphc
from graphc.autograd import GradFn, Variable

THIS_FILE = os.path.basename(__file__)

ZERO_DIM = ("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` in "
            "C++ to convert a 0-dim tensor to a number")


def raises(kind, message, call):
    """`call` raises `kind` with PyTorch's `message` in its text and names the calling line here."""
    with pytest.raises(kind) as info:
        call()
    text = str(info.value)
    assert message in text, (message, text)
    assert f"{THIS_FILE}:{call.__code__.co_firstlineno}" in text, text
    return text


# ---- indexing a 0-d tensor --------------------------------------------------------------------
def test_indexing_a_zero_dim_tensor_with_an_int_raises_pytorchs_error(rng):
    loss = (graphc.tensor(rng.standard_normal(3)) ** 2).sum()
    assert loss.shape == ()
    text = raises(IndexError, ZERO_DIM, lambda: loss.data[0])
    assert text.startswith("index: ") and "HINT: read the value with t.item()" in text
    raises(IndexError, ZERO_DIM, lambda: loss[0])
    raises(IndexError, ZERO_DIM, lambda: loss[np.int64(0)])
    raises(IndexError, ZERO_DIM, lambda: graphc.zeros(2)[0][0])
    raises(IndexError, "index 1 is out of bounds for dimension 0 with size 0", lambda: loss[1])
    raises(IndexError, "index -1 is out of bounds for dimension 0 with size 0", lambda: loss[-1])
    raises(IndexError, "slice() cannot be applied to a 0-dim tensor.", lambda: loss[:])
    raises(IndexError, "slice() cannot be applied to a 0-dim tensor.", lambda: loss[1:])
    for index in ((0,), (0, 0), [0], graphc.tensor(0), graphc.tensor([0]), (None, slice(None))):
        with pytest.raises(IndexError, match="too many indices for tensor of dimension 0"):
            loss[index]
    np.testing.assert_allclose(loss.item(), loss.data.item())


def test_zero_dim_indices_that_work_match_numpy():
    value = np.float32(3.0)
    s = graphc.tensor(3.0)
    reference = np.array(value)
    for index in (Ellipsis, (), None, (None, None), (None, Ellipsis), True, False, (True, True)):
        result = s[index]
        assert result.shape == reference[index].shape, index
        np.testing.assert_array_equal(result.numpy(), reference[index])
    assert s[graphc.tensor(True)].shape == (1,) and s[graphc.tensor(False)].shape == (0,)


def test_scalar_bool_masks_match_numpy(rng):
    values = rng.standard_normal((2, 3)).astype(np.float32)
    x = graphc.tensor(values)
    for index in (True, False, (0, True), (True, 0), (Ellipsis, False)):
        np.testing.assert_array_equal(x[index].numpy(), values[index])


def test_assigning_into_a_zero_dim_tensor():
    s = graphc.tensor(3.0)
    raises(IndexError, ZERO_DIM, lambda: s.__setitem__(0, 1.0))
    raises(IndexError, ZERO_DIM, lambda: s.data.__setitem__(0, 1.0))
    raises(IndexError, "index -1 is out of bounds for dimension 0 with size 0", lambda: s.__setitem__(-1, 1.0))
    raises(IndexError, "slice() cannot be applied to a 0-dim tensor.", lambda: s.__setitem__(slice(None), 1.0))
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 0"):
        s[0, 0] = 1.0
    assert s.item() == 3.0
    for index, value in ((Ellipsis, 1.0), ((), 2.0), (None, 4.0), (True, 5.0), ((None, None), 6.0)):
        s[index] = value
        assert s.item() == value, index
    s[False] = 9.0  # selects nothing
    assert s.item() == 6.0


def test_whole_dim_slices_are_no_views(rng):
    values = rng.standard_normal((3, 2)).astype(np.float32)
    x = graphc.tensor(values, requires_grad=True)
    np.testing.assert_array_equal(x[0, :].detach().numpy(), values[0, :])
    np.testing.assert_array_equal(x[:, :].detach().numpy(), values)
    np.testing.assert_array_equal(x[1:, :].detach().numpy(), values[1:, :])
    (x[0, :] * 2 + x[:, :].sum(0) + x[..., 1:].sum()).sum().backward()
    expected = np.ones((3, 2))  # x[:, :].sum(0), summed
    expected[0] += 2            # x[0, :] * 2
    expected[:, 1] += 2         # x[..., 1:].sum(), broadcast over 2 elements
    np.testing.assert_allclose(x.grad.numpy(), expected)
    y = graphc.tensor(values.copy())
    whole = y[:, :]
    whole[0, 0] = 42.0  # still a view: the write is seen through y
    assert y[0, 0].item() == 42.0


# ---- grad_fn classes --------------------------------------------------------------------------
def test_grad_fn_classes_are_named_as_in_pytorch(rng):
    x = graphc.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
    linear = graphc.nn.Linear(2, 1)
    loss = graphc.nn.functional.mse_loss(linear(x), graphc.zeros(3, 1))
    cases = {"MseLossBackward0": loss, "AddmmBackward0": linear(x), "MulBackward0": x * 2,
             "AddBackward0": x + 1, "SubBackward0": x - 1, "DivBackward0": x / 2,
             "PowBackward0": x ** 2, "SumBackward0": x.sum(), "MeanBackward0": x.mean(),
             "MmBackward0": x @ x.t(), "TBackward0": x.t(), "TransposeBackward0": x.transpose(0, 1),
             "ViewBackward0": x.view(6), "ReluBackward0": graphc.relu(x), "ExpBackward0": x.exp(),
             "SelectBackward0": x[0], "AliasBackward0": x[...], "UnsqueezeBackward0": x[None],
             "SliceBackward0": x[1:],
             "NllLossBackward0": graphc.nn.functional.cross_entropy(x, graphc.tensor([0, 1, 1]))}
    for name, tensor in cases.items():
        grad_fn = tensor.grad_fn
        assert type(grad_fn).__name__ == name
        assert grad_fn.name() == name
        assert re.fullmatch(f"<{name} object at 0x[0-9a-f]+>", repr(grad_fn)), repr(grad_fn)
        assert isinstance(grad_fn, GradFn)
        assert f"grad_fn=<{name}>" in repr(tensor)
    assert type((x * 3).grad_fn) is type((x * 2).grad_fn)  # one class per name
    assert type((x * 3).grad_fn) is not type((x + 3).grad_fn)
    loss.backward()  # the classes are display only: backward is unchanged
    assert x.grad.shape == (3, 2)


def test_leaves_have_no_grad_fn_and_show_accumulate_grad(rng):
    x = graphc.tensor(rng.standard_normal(3), requires_grad=True)
    assert x.grad_fn is None and graphc.ones(2).grad_fn is None
    assert (x * 2).detach().grad_fn is None
    accumulate = (x * 2).grad_fn.next_functions[0][0]
    assert type(accumulate).__name__ == "AccumulateGrad" and accumulate.variable is x
    assert accumulate.next_functions == ()
    chain = ((x + 2) * 3).mean().grad_fn
    assert [type(chain).__name__, type(chain.next_functions[0][0]).__name__,
            type(chain.next_functions[0][0].next_functions[0][0]).__name__] == [
        "MeanBackward0", "MulBackward0", "AddBackward0"]


# ---- graphc.Tensor(...) -----------------------------------------------------------------------
def test_tensor_from_data_is_float32():
    t = graphc.Tensor([1.0])
    assert isinstance(t, graphc.Tensor) and type(t) is graphc.Tensor
    assert t.dtype is graphc.float32 and t.shape == (1,)
    np.testing.assert_array_equal(t.numpy(), np.array([1.0], np.float32))
    assert t.is_leaf and not t.requires_grad and t.grad_fn is None
    nested = graphc.Tensor([[1, 2], [3, 4]])  # ints become the default float dtype too
    assert nested.dtype is graphc.float32
    np.testing.assert_array_equal(nested.numpy(), np.array([[1, 2], [3, 4]], np.float32))
    np.testing.assert_array_equal(graphc.Tensor([True, 2.5]).numpy(), np.array([1.0, 2.5], np.float32))
    np.testing.assert_array_equal(graphc.Tensor(range(3)).numpy(), np.arange(3, dtype=np.float32))


@pytest.mark.parametrize("args, shape", [((2, 3), (2, 3)), ((3,), (3,)), ((0,), (0,)), ((2, 0), (2, 0)),
                                         ((1, 2, 3, 4), (1, 2, 3, 4)), ((np.int64(3), 2), (3, 2)),
                                         ((2, True), (2, 1))])
def test_tensor_from_sizes_is_uninitialized_of_that_shape(args, shape):
    t = graphc.Tensor(*args)
    assert t.shape == shape and t.dtype is graphc.float32 and t.is_leaf
    assert t.numpy().shape == shape  # its contents are unspecified in PyTorch (zeros in graphc)
    assert graphc.Tensor(2, graphc.tensor(3)).shape == (2, 3)  # a 0-d integer tensor is an int


def test_tensor_without_arguments_is_empty():
    for t in (graphc.Tensor(), graphc.Tensor(device="cpu"), graphc.Tensor([]), graphc.Tensor(())):
        assert t.shape == (0,) and t.dtype is graphc.float32
    assert graphc.Tensor([[], []]).shape == (2, 0)


def test_a_tuple_is_data_but_a_size_is_a_shape():
    np.testing.assert_array_equal(graphc.Tensor((2, 3)).numpy(), np.array([2.0, 3.0], np.float32))
    np.testing.assert_array_equal(graphc.Tensor([2, 3]).numpy(), np.array([2.0, 3.0], np.float32))
    assert graphc.Tensor(graphc.Size([2, 3])).shape == (2, 3)
    assert graphc.Tensor(graphc.ones(4, 5).shape).shape == (4, 5)
    assert graphc.Tensor(graphc.Size([])).shape == ()
    assert graphc.Tensor(size=(2, 3)).shape == (2, 3)
    assert graphc.Tensor(size=[2, 3], device="cpu").shape == (2, 3)


def test_tensor_from_ndarray(rng):
    values = rng.standard_normal((2, 3))
    t = graphc.Tensor(values)  # float64 data -> a float32 copy
    assert t.dtype is graphc.float32
    np.testing.assert_array_equal(t.numpy(), values.astype(np.float32))
    values[0, 0] = 100.0
    assert t.numpy()[0, 0] != 100.0
    np.testing.assert_array_equal(graphc.Tensor(np.array([1, 2])).numpy(), np.array([1, 2], np.float32))
    np.testing.assert_array_equal(graphc.Tensor(np.array([True, False])).numpy(), [1.0, 0.0])
    zero_dim = graphc.Tensor(np.array(3.0))
    assert zero_dim.shape == () and zero_dim.item() == 3.0


def test_tensor_from_float32_ndarray_shares_its_memory(rng):
    # PyTorch: an array of the constructor's exact dtype is not copied (as from_numpy)
    values = rng.standard_normal(4).astype(np.float32)
    t = graphc.Tensor(values)
    values[0] = 7.0
    assert t[0].item() == 7.0
    t[1] = -3.0
    assert values[1] == -3.0
    before = float(values[2])
    doubled = t * 2  # as in PyTorch, a later write to the array does not change it
    values[2] = 50.0
    assert doubled[2].item() == np.float32(2 * before)
    strided = np.arange(6, dtype=np.float32)[::2]
    view = graphc.Tensor(strided)
    strided[1] = 100.0
    np.testing.assert_array_equal(view.numpy(), [0.0, 100.0, 4.0])
    assert view.stride() == (2,)


def test_tensor_from_ndarray_rejects_negative_strides_and_strings():
    raises(ValueError, "At least one stride in the given numpy array is negative",
           lambda: graphc.Tensor(np.ones(3)[::-1]))
    raises(TypeError, "can't convert np.ndarray of type numpy.str_.",
           lambda: graphc.Tensor(np.array(["a"])))


def test_tensor_from_a_tensor_is_a_view_of_it(rng):
    x = graphc.ones(3)
    y = graphc.Tensor(x)
    assert y is not x and y.dtype is graphc.float32
    y[0] = 5.0
    np.testing.assert_array_equal(x.numpy(), [5.0, 1.0, 1.0])
    # graphc.Tensor keeps the tensor's dtype (PyTorch relaxed it); the typed ones demand theirs
    longs = graphc.Tensor(graphc.tensor([1, 2]))
    assert longs.dtype is graphc.int64
    np.testing.assert_array_equal(longs.numpy(), [1, 2])
    assert graphc.Tensor(graphc.tensor(3)).shape == ()  # a 0-d integer tensor is a tensor here
    w = graphc.tensor(rng.standard_normal(3), requires_grad=True)
    alias = graphc.Tensor(w)
    assert alias.requires_grad and not alias.is_leaf
    assert type(alias.grad_fn).__name__ == "AliasBackward0"
    (alias * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, 3.0))
    assert graphc.Tensor(other=x).shape == (3,)


def test_tensor_follows_the_default_dtype():
    previous = graphc.get_default_dtype()
    graphc.set_default_dtype(graphc.float64)
    try:
        assert graphc.Tensor([1]).dtype is graphc.float64
        assert graphc.Tensor(2).dtype is graphc.float64
        assert graphc.Tensor([1]).type() == "graphc.DoubleTensor"
    finally:
        graphc.set_default_dtype(previous)
    assert graphc.Tensor([1]).dtype is graphc.float32


def test_tensor_constructor_errors():
    raises(TypeError, "new(): argument 'size' failed to unpack the object at pos 2 with error \"type "
                      "must be tuple of ints,but got str\"", lambda: graphc.Tensor(2, "a"))
    raises(TypeError, "but got float\"", lambda: graphc.Tensor(2, 3.0))
    raises(TypeError, "but got NoneType\"", lambda: graphc.Tensor(2, None))
    raises(TypeError, "but got list\"", lambda: graphc.Tensor(2, [2]))
    raises(TypeError, "new(): invalid data type 'str'", lambda: graphc.Tensor("a"))
    raises(TypeError, "new(): invalid data type 'bytes'", lambda: graphc.Tensor(b"a"))
    raises(TypeError, "new(): data must be a sequence (got float)", lambda: graphc.Tensor(2.5))
    raises(TypeError, "new(): data must be a sequence (got bool)", lambda: graphc.Tensor(True))
    raises(TypeError, "new(): data must be a sequence (got NoneType)", lambda: graphc.Tensor(None))
    raises(TypeError, "new(): data must be a sequence (got dict)", lambda: graphc.Tensor({}))
    raises(TypeError, "new(): data must be a sequence (got numpy.float64)",
           lambda: graphc.Tensor(np.float64(2)))
    raises(TypeError, "new(): data must be a sequence (got generator)",
           lambda: graphc.Tensor(x for x in [1]))
    raises(RuntimeError, "Trying to create tensor with negative dimension -1: [-1]", lambda: graphc.Tensor(-1))
    raises(RuntimeError, "Trying to create tensor with negative dimension -3: [2, -3]",
           lambda: graphc.Tensor(2, -3))
    raises(RuntimeError, "Storage size calculation overflowed with sizes=[4611686018427387904]",
           lambda: graphc.Tensor(2 ** 62))


def test_tensor_constructor_errors_for_ragged_or_non_numeric_data():
    raises(ValueError, "expected sequence of length 2 at dim 1 (got 1)", lambda: graphc.Tensor([[1, 2], [3]]))
    raises(ValueError, "expected sequence of length 1 at dim 2 (got 2)",
           lambda: graphc.Tensor([[[1]], [[2, 3]]]))
    raises(ValueError, "expected sequence of length 2 at dim 1 (got 3)",
           lambda: graphc.Tensor([[1, 2], graphc.ones(3)]))
    raises(TypeError, "must be real number, not list", lambda: graphc.Tensor([1, [2]]))
    raises(TypeError, "not a sequence", lambda: graphc.Tensor([[1], 2]))
    raises(ValueError, "too many dimensions 'str'", lambda: graphc.Tensor(["a"]))
    raises(TypeError, "must be real number, not str", lambda: graphc.Tensor([1, "a"]))
    raises(TypeError, "must be real number, not NoneType", lambda: graphc.Tensor([None]))
    raises(TypeError, "must be real number, not complex", lambda: graphc.Tensor([1 + 2j]))
    raises(OverflowError, "int too large to convert to float", lambda: graphc.Tensor([10 ** 400]))


def test_tensor_constructor_rejects_keywords_it_does_not_take():
    text = raises(TypeError, "new() received an invalid combination of arguments - got (int, int, "
                             "dtype=graphc.dtype), but expected one of:",
                  lambda: graphc.Tensor(2, 3, dtype=graphc.float64))
    assert " * (tuple of ints size, *, graphc.device device = None)" in text
    raises(TypeError, "got (int, requires_grad=bool)", lambda: graphc.Tensor(2, requires_grad=True))
    raises(TypeError, "got (list, list)", lambda: graphc.Tensor([1], [2]))
    raises(TypeError, "got (float, int)", lambda: graphc.Tensor(2.5, 3))
    raises(TypeError, "got (graphc.Size, int)", lambda: graphc.Tensor(graphc.Size([2]), 3))
    raises(TypeError, "got (size=int, )", lambda: graphc.Tensor(size=2))


def test_legacy_constructors_make_cpu_tensors_only():
    raises(RuntimeError, "legacy constructor expects device type: cpu but device type: cuda was passed",
           lambda: graphc.Tensor([1.0], device="cuda"))
    raises(RuntimeError, "legacy constructor expects device type: cpu but device type: cuda was passed",
           lambda: graphc.LongTensor(2, 3, device="cuda"))
    raises(RuntimeError, "Legacy tensor constructor of the form graphc.Tensor(tensor, device=device) is "
                         "not supported.  Use graphc.tensor(...) or graphc.as_tensor(...) instead.",
           lambda: graphc.Tensor(graphc.ones(1), device="cpu"))
    assert graphc.Tensor([1.0, 2.0], device=graphc.device("cpu")).device == graphc.device("cpu")


def test_internal_constructors_and_copies_are_unaffected(rng):
    values = rng.standard_normal(3).astype(np.float32)
    t = graphc.Tensor._from_array(values)
    np.testing.assert_array_equal(t.numpy(), values)
    assert type(t) is graphc.Tensor
    for twin in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t), copy.copy(t)):
        np.testing.assert_array_equal(twin.numpy(), values)
    p = graphc.nn.Parameter(graphc.Tensor(2, 3))  # Parameter keeps its own constructor
    assert isinstance(p, graphc.nn.Parameter) and p.requires_grad and p.shape == (2, 3)


def test_subclasses_of_tensor_construct_instances_of_themselves():
    class Tagged(graphc.Tensor):
        pass
    t = Tagged([1.0, 2.0])
    assert type(t) is Tagged and isinstance(t, graphc.Tensor)
    np.testing.assert_array_equal((t * 2).numpy(), [2.0, 4.0])


# ---- graphc.FloatTensor & co ------------------------------------------------------------------
LEGACY = {graphc.float32: graphc.FloatTensor, graphc.float64: graphc.DoubleTensor,
          graphc.int32: graphc.IntTensor, graphc.int64: graphc.LongTensor, graphc.bool: graphc.BoolTensor}


def test_typed_constructors_from_data():
    assert graphc.FloatTensor([1, 2]).dtype is graphc.float32
    np.testing.assert_array_equal(graphc.FloatTensor([1, 2]).numpy(), np.array([1, 2], np.float32))
    np.testing.assert_array_equal(graphc.DoubleTensor([1]).numpy(), np.array([1.0]))
    assert graphc.DoubleTensor([1]).dtype is graphc.float64
    assert graphc.BoolTensor([1, 0, 2]).tolist() == [True, False, True]
    assert graphc.BoolTensor([0.5, float("nan"), 0.0]).tolist() == [True, True, False]
    assert graphc.LongTensor([True]).tolist() == [1]
    assert graphc.LongTensor((2, 3)).tolist() == [2, 3]  # a tuple is data
    assert graphc.LongTensor([[], []]).shape == (2, 0) and graphc.LongTensor([[], []]).dtype is graphc.int64
    assert graphc.FloatTensor([graphc.tensor(1.5)]).tolist() == [1.5]


def test_typed_constructors_truncate_floats_into_integers(rng):
    values = rng.uniform(-100, 100, size=(3, 4))
    for legacy, dtype in ((graphc.LongTensor, np.int64), (graphc.IntTensor, np.int32)):
        t = legacy(values.tolist())
        assert t.dtype.numpy == dtype
        np.testing.assert_array_equal(t.numpy(), np.trunc(values).astype(dtype))
    assert graphc.LongTensor([1.5, -1.7]).tolist() == [1, -1]
    assert graphc.IntTensor([[1.9], [-2.9]]).tolist() == [[1], [-2]]
    # from a NumPy array: converted like .to(dtype) (truncated too)
    np.testing.assert_array_equal(graphc.LongTensor(np.array([1.7, -2.2])).numpy(), [1, -2])


def test_typed_constructors_check_the_integer_range():
    overflow = "value cannot be converted to type int64 without overflow"
    raises(RuntimeError, overflow, lambda: graphc.LongTensor([float("nan")]))
    raises(RuntimeError, overflow, lambda: graphc.LongTensor([float("inf")]))
    raises(RuntimeError, overflow, lambda: graphc.LongTensor([1e30]))
    raises(RuntimeError, "value cannot be converted to type int32 without overflow",
           lambda: graphc.IntTensor([2 ** 31]))
    raises(RuntimeError, "value cannot be converted to type int32 without overflow",
           lambda: graphc.IntTensor([2147483647.5]))
    raises(RuntimeError, "value cannot be converted to type int32 without overflow",
           lambda: graphc.IntTensor([np.int64(2 ** 40)]))
    raises(ValueError, "Overflow when unpacking long long", lambda: graphc.LongTensor([2 ** 64]))
    raises(ValueError, "Overflow when unpacking long long", lambda: graphc.LongTensor([2 ** 70]))
    assert graphc.IntTensor([2 ** 31 - 1, -2 ** 31]).tolist() == [2 ** 31 - 1, -2 ** 31]
    assert graphc.BoolTensor([2 ** 64]).tolist() == [True]
    assert graphc.FloatTensor([2 ** 70]).item() == np.float32(2 ** 70)
    assert graphc.FloatTensor([1e300]).item() == float("inf")  # floats overflow to infinity


def test_typed_constructors_from_sizes():
    t = graphc.LongTensor(3)
    assert t.shape == (3,) and t.dtype is graphc.int64
    assert graphc.DoubleTensor(2, 2).shape == (2, 2) and graphc.DoubleTensor(2, 2).dtype is graphc.float64
    assert graphc.BoolTensor(2).dtype is graphc.bool
    assert graphc.IntTensor(graphc.Size([2, 3])).shape == (2, 3)
    assert graphc.LongTensor().shape == (0,) and graphc.LongTensor().dtype is graphc.int64
    assert graphc.FloatTensor(2, device="cpu").shape == (2,)
    raises(TypeError, "failed to unpack the object at pos 2", lambda: graphc.LongTensor(2, "a"))
    raises(TypeError, "new(): invalid data type 'str'", lambda: graphc.LongTensor("a"))
    raises(TypeError, "new(): data must be a sequence (got float)", lambda: graphc.BoolTensor(2.5))


def test_typed_constructors_of_a_tensor_need_its_dtype():
    x = graphc.ones(2)
    same = graphc.FloatTensor(x)
    same[0] = 4.0
    assert x.tolist() == [4.0, 1.0]  # a view, as graphc.Tensor(x)
    text = raises(TypeError, "expected TensorOptions(dtype=float, device=cpu, layout=Strided, "
                             "requires_grad=false (default), pinned_memory=false (default), "
                             "memory_format=(nullopt)) (got TensorOptions(dtype=double,",
                  lambda: graphc.FloatTensor(graphc.ones(2, dtype=graphc.float64)))
    assert "graphc.FloatTensor: " in text
    raises(TypeError, "expected TensorOptions(dtype=long int,", lambda: graphc.LongTensor(graphc.ones(2)))


def test_typed_constructor_of_an_int64_array_shares_it():
    values = np.array([1, 2])
    t = graphc.LongTensor(values)
    values[0] = 7
    assert t.tolist() == [7, 2]
    copied = graphc.IntTensor(values)  # int64 data into int32: a copy
    values[1] = 9
    assert copied.tolist() == [7, 2] and copied.dtype is graphc.int32


@pytest.mark.parametrize("dtype", list(LEGACY))
def test_isinstance_checks_the_dtype(dtype):
    t = graphc.zeros(2, dtype=dtype)
    for other_dtype, legacy in LEGACY.items():
        assert isinstance(t, legacy) is (other_dtype is dtype), (dtype, legacy)
    assert isinstance(t, graphc.Tensor)
    assert not isinstance(t, graphc.cuda.FloatTensor)  # a CPU tensor
    assert LEGACY[dtype](2).dtype is dtype
    assert type(LEGACY[dtype](2)) is graphc.Tensor
    assert LEGACY[dtype].dtype is dtype


def test_legacy_types_are_not_tensor_subclasses():
    assert isinstance(graphc.nn.Parameter(graphc.ones(2)), graphc.FloatTensor)
    assert not isinstance(1.0, graphc.FloatTensor) and not isinstance(np.ones(2), graphc.FloatTensor)
    assert not issubclass(graphc.FloatTensor, graphc.Tensor)
    assert not issubclass(graphc.Tensor, graphc.FloatTensor)
    assert issubclass(graphc.FloatTensor, graphc.FloatTensor)
    assert repr(graphc.FloatTensor) == "<class 'graphc.FloatTensor'>"
    assert repr(graphc.cuda.LongTensor) == "<class 'graphc.cuda.LongTensor'>"
    assert not graphc.FloatTensor.is_cuda and graphc.cuda.FloatTensor.is_cuda
    assert graphc.cuda.DoubleTensor.dtype is graphc.float64
    with pytest.raises(TypeError, match="type 'graphc.FloatTensor' is not an acceptable base type"):
        type("Sub", (graphc.FloatTensor,), {})


@pytest.mark.skipif(graphc.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_legacy_types_say_what_is_missing():
    from graphc.devices import CudaUnavailable
    with pytest.raises(CudaUnavailable, match="graphc.cuda.FloatTensor"):
        graphc.cuda.FloatTensor([1.0])
    raises(RuntimeError, "legacy constructor expects device type: cuda but device type: cpu was passed",
           lambda: graphc.cuda.FloatTensor([1.0], device="cpu"))


@pytest.mark.skipif(not graphc.cuda.is_available(), reason="needs a GPU")
def test_cuda_legacy_types_on_a_gpu():
    t = graphc.cuda.FloatTensor([1.0, 2.0])
    assert t.is_cuda and t.dtype is graphc.float32 and t.type() == "graphc.cuda.FloatTensor"
    assert isinstance(t, graphc.cuda.FloatTensor) and not isinstance(t, graphc.FloatTensor)
    assert graphc.cuda.LongTensor(2, 3).shape == (2, 3)
    assert graphc.ones(2).type(graphc.cuda.DoubleTensor).is_cuda
    assert t.type(graphc.LongTensor).device == graphc.device("cpu")
    assert t.type(graphc.float64).is_cuda  # a dtype keeps the device


# ---- t.type() ---------------------------------------------------------------------------------
def test_type_names_the_legacy_type():
    names = {graphc.float32: "graphc.FloatTensor", graphc.float64: "graphc.DoubleTensor",
             graphc.int32: "graphc.IntTensor", graphc.int64: "graphc.LongTensor",
             graphc.bool: "graphc.BoolTensor"}
    for dtype, name in names.items():
        assert graphc.zeros(2, dtype=dtype).type() == name
        assert graphc.zeros(2, dtype=dtype).type(non_blocking=True) == name


def test_type_converts():
    x = graphc.tensor([1.5, -2.5])
    for target in (graphc.float64, graphc.DoubleTensor, "graphc.DoubleTensor", "torch.DoubleTensor"):
        converted = x.type(target)
        assert converted.dtype is graphc.float64
        np.testing.assert_array_equal(converted.numpy(), [1.5, -2.5])
    assert x.type("torch.LongTensor").tolist() == [1, -2]
    assert x.type(dtype=graphc.int64).dtype is graphc.int64
    assert x.type(graphc.float32) is x and x.type(graphc.FloatTensor) is x and x.type("graphc.FloatTensor") is x
    longs = graphc.tensor([1, 2])
    assert longs.type(graphc.Tensor).dtype is graphc.float32  # the default type
    assert longs.type("graphc.Tensor").dtype is graphc.float32


def test_type_rejects_what_is_not_a_type():
    x = graphc.ones(2)
    for bad, name in (("DoubleTensor", "DoubleTensor"), ("float64", "float64"),
                      ("torch.float64", "torch.float64"), (float, "float"), (int, "int"),
                      (np.float64, "numpy.float64")):
        with pytest.raises(ValueError, match=re.escape(f"invalid type: '{name}'")):
            x.type(bad)
    with pytest.raises(TypeError, match="dtype must be a type, str, or dtype object"):
        x.type(5)


# ---- Variable ---------------------------------------------------------------------------------
def test_variable_returns_a_tensor_requiring_grad():
    data = graphc.Tensor([1.0])
    w = Variable(data, requires_grad=True)
    assert type(w) is graphc.Tensor and w is not data
    assert w.requires_grad and w.is_leaf and w.grad_fn is None
    assert not data.requires_grad  # detached: the data tensor is untouched
    assert isinstance(w, Variable) and isinstance(graphc.ones(1), Variable) and not isinstance(1, Variable)
    assert graphc.autograd.Variable is Variable
    from graphc.autograd.variable import Variable as same
    assert same is Variable


def test_variable_shares_memory_and_drops_history():
    data = graphc.ones(2)
    view = Variable(data)
    view[0] = 5.0
    assert data.tolist() == [5.0, 1.0] and not view.requires_grad
    computed = graphc.ones(2, requires_grad=True) * 2
    detached = Variable(computed)
    assert detached.is_leaf and not detached.requires_grad and detached.grad_fn is None
    fresh = Variable(computed, requires_grad=True)  # a new leaf, as PyTorch's Variable(non_leaf)
    assert fresh.is_leaf and fresh.requires_grad
    (fresh * 3).sum().backward()
    np.testing.assert_array_equal(fresh.grad.numpy(), [3.0, 3.0])
    assert Variable().shape == (0,) and Variable(None).dtype is graphc.float32
    assert Variable(requires_grad=True).requires_grad
    assert Variable(graphc.ones(1), True).requires_grad  # requires_grad by position
    assert Variable(graphc.ones(1), requires_grad=1).requires_grad


def test_variable_volatile_warns_and_does_nothing():
    with pytest.warns(UserWarning, match=re.escape("volatile was removed and now has no effect. Use "
                                                   "`with graphc.no_grad():` instead.")) as record:
        v = Variable(graphc.ones(1), volatile=True)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert not v.requires_grad and v.tolist() == [1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Variable(graphc.ones(1), volatile=False)  # no warning
    with pytest.warns(UserWarning, match="volatile was removed"):
        with pytest.raises(ValueError, match="Variable can't be volatile and require_grad at the same time!"):
            Variable(graphc.ones(1), requires_grad=True, volatile=True)


def test_variable_errors():
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got list"):
        Variable([1.0])
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got numpy.ndarray"):
        Variable(np.ones(1))
    with pytest.raises(TypeError, match="'foo' is an invalid keyword argument for this function"):
        Variable(graphc.ones(1), foo=1)
    with pytest.raises(TypeError, match=re.escape("function takes at most 5 arguments (6 given)")):
        Variable(graphc.ones(1), False, False, None, "w", 1)
    with pytest.raises(TypeError, match="_grad_fn has to be a Function object or None, but got int"):
        Variable(graphc.ones(1), _grad_fn=1)
    with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
        Variable(graphc.ones(1), requires_grad="yes")
    with pytest.raises(RuntimeError, match="floating point"):
        Variable(graphc.ones(1, dtype=graphc.int64), requires_grad=True)


def test_scalar_w_tutorial_trains_like_numpy():
    """The classic first tutorial: w = Variable(torch.Tensor([1.0]), requires_grad=True), a loss per
    sample, backward, a manual step through .data, and .grad.data.zero_()."""
    x_data, y_data = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    w = Variable(graphc.Tensor([1.0]), requires_grad=True)
    reference = 1.0
    for epoch in range(10):
        for x_val, y_val in zip(x_data, y_data):
            l = (x_val * w - y_val) ** 2
            l.backward()
            w.data = w.data - 0.01 * w.grad.data
            w.grad.data.zero_()
            reference_loss = (x_val * reference - y_val) ** 2
            reference -= 0.01 * 2 * x_val * (x_val * reference - y_val)
        # the loss is a 1-element vector here (w is), so the old tutorials' l.data[0] works
        assert l.shape == (1,) and type(l.grad_fn).__name__ == "PowBackward0"
        np.testing.assert_allclose(l.data[0].item(), reference_loss, rtol=1e-4)
    assert w.is_leaf and w.requires_grad and w.grad.tolist() == [0.0]
    np.testing.assert_allclose(w.item(), reference, rtol=1e-5)
    prediction = 4.0 * w
    np.testing.assert_allclose(prediction.item(), 4.0 * reference, rtol=1e-5)


def test_uninitialized_tensors_in_a_training_loop(rng):
    """graphc.Tensor(3, 1) filled in place, then trained as a linear regression (float64 NumPy
    reference for the same full-batch gradient descent)."""
    inputs = rng.standard_normal((8, 3)).astype(np.float32)
    targets = (inputs @ np.array([[1.5], [-2.0], [0.5]]) + 0.25).astype(np.float32)
    w = Variable(graphc.Tensor(3, 1).fill_(0.1), requires_grad=True)
    b = Variable(graphc.Tensor(1).zero_(), requires_grad=True)
    x, y = graphc.Tensor(inputs), graphc.Tensor(targets)
    w_ref, b_ref = np.full((3, 1), 0.1), np.zeros(1)
    for step in range(25):
        loss = ((x.mm(w) + b - y) ** 2).mean()
        loss.backward()
        w.data -= 0.1 * w.grad.data
        b.data -= 0.1 * b.grad.data
        w.grad.data.zero_()
        b.grad.data.zero_()
        residual = inputs.astype(np.float64) @ w_ref + b_ref - targets
        w_ref -= 0.1 * 2 * inputs.T.astype(np.float64) @ residual / residual.size
        b_ref -= 0.1 * 2 * residual.sum(axis=0) / residual.size
    assert type(loss.grad_fn).__name__ == "MeanBackward0"
    np.testing.assert_allclose(w.detach().numpy(), w_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.detach().numpy(), b_ref, rtol=1e-4, atol=1e-5)


# ---- PyTorch itself, where it is installed (a reference only) ---------------------------------
def test_against_pytorch_where_installed():
    torch = pytest.importorskip("torch")
    calls = ["Tensor([1.0])", "Tensor((2, 3))", "Tensor([[1, 2], [3, 4]])", "LongTensor([1.5, -1.7])",
             "IntTensor([[1.9], [-2.9]])", "BoolTensor([1, 0, 2])", "DoubleTensor([1])", "Tensor([])",
             "Tensor([[], []])", "LongTensor((2, 3))", "FloatTensor([2 ** 70])"]
    for call in calls:
        mine, theirs = eval(f"graphc.{call}"), eval(f"torch.{call}")
        assert str(mine.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1], call
        assert tuple(mine.shape) == tuple(theirs.shape), call
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=call)
    for call in ["Tensor(2, 'a')", "Tensor('a')", "Tensor(2.5)", "Tensor(-1)", "Tensor([[1, 2], [3]])",
                 "Tensor([1, [2]])", "Tensor([[1], 2])", "Tensor(['a'])", "LongTensor([float('nan')])",
                 "IntTensor([2 ** 31])", "LongTensor([2 ** 64])", "Tensor(2, -3)",
                 "FloatTensor(ones(2, dtype=float64))", "tensor(3.0)[0]", "tensor(3.0)[-1]",
                 "tensor(3.0)[:]", "tensor(3.0)[0, 0]"]:
        caught = []
        for module in (torch, graphc):
            env = {"ones": module.ones, "float64": module.float64, "tensor": module.tensor}
            with pytest.raises(Exception) as info:
                eval(f"module.{call}", {"module": module, **env})
            caught.append(info.value)
        theirs, mine = caught
        assert type(mine).__name__ == type(theirs).__name__ or isinstance(mine, type(theirs)), call
        assert str(theirs).replace("torch", "graphc").splitlines()[0] in str(mine), (call, str(mine))
