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
