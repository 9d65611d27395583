"""Indices computed inside a compiled graph are bounds-checked: an IndexError names the op and line.

Index values the front end can see are checked before anything runs (tests/test_errors.py); these
are indices that only exist inside the graph (arithmetic on an index tensor, argmax results), which
the generated C checks as it gathers or scatters.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphc
from graphc import nn
from helpers import line_of

HERE = os.path.basename(__file__)



def test_computed_index_past_the_end(rng):
    data = rng.standard_normal((5, 3)).astype(np.float32)
    x = graphc.tensor(data)
    index = graphc.arange(4) * 2           # 0 2 4 6: 6 is past a dimension of 5
    with pytest.raises(IndexError) as caught:
        x[index].numpy()  # PAST-END
    message = str(caught.value)
    assert message.startswith("gather: index 6 is out of bounds for an axis of size 5")
    assert f"{HERE}:{line_of(__file__, 'PAST-END')}" in message


def test_computed_negative_index_below_the_start(rng):
    x = graphc.tensor(rng.standard_normal(4).astype(np.float32))
    index = graphc.arange(3) - 6           # -6 -5 -4: -6 and -5 are below -4
    # the C backend reports the first in loop order (-2 after wrapping); GPU threads race for it
    with pytest.raises(IndexError, match=r"gather: index -[21] is out of bounds for an axis of size 4"):
        x[index].numpy()


def test_computed_indices_in_range_still_gather_right(rng):
    data = rng.standard_normal((6, 4)).astype(np.float32)
    x = graphc.tensor(data)
    index = graphc.arange(4) + 2           # 2..5, and negatives wrap as in PyTorch
    np.testing.assert_array_equal(x[index].numpy(), data[[2, 3, 4, 5]])
    np.testing.assert_array_equal(x[index - 7].numpy(), data[[-5, -4, -3, -2]])
    # the error flag was reset: a later correct run does not raise an old error
    with pytest.raises(IndexError):
        x[index * 2].numpy()
    np.testing.assert_array_equal(x[index].numpy(), data[[2, 3, 4, 5]])


def test_embedding_with_computed_ids(rng):
    embedding = nn.Embedding(10, 3)
    ids = graphc.tensor(rng.integers(0, 5, 7))
    table = embedding.weight.detach().numpy()
    np.testing.assert_allclose(embedding(ids * 2).detach().numpy(), table[ids.numpy() * 2])
    with pytest.raises(IndexError, match=rf"out of bounds for an axis of size 10(.|\n)*{HERE}:{line_of(__file__, 'EMBED')}"):
        embedding(ids * 2 + 10).sum().item()  # EMBED


def test_compiled_step_reports_the_index(rng):
    # (no requires_grad: a result with autograd history would run uncompiled, see graphc.compile)
    weight = graphc.tensor(rng.standard_normal((6, 2)).astype(np.float32))

    @graphc.compile
    def step(ids):
        picked = weight[ids + 3]  # SHIFTED
        return (picked * picked).sum()

    good = graphc.tensor(rng.integers(0, 3, 5))
    expected = (weight.detach().numpy()[good.numpy() + 3] ** 2).sum()
    for _ in range(2):
        assert step(good).item() == pytest.approx(expected, rel=1e-5)
    bad = graphc.tensor(np.array([0, 1, 2, 3, 1]))
    with pytest.raises(IndexError, match=rf"gather: index 6 .*\n  at \S*{HERE}:{line_of(__file__, 'SHIFTED')}"):
        step(bad)


def test_a_value_that_cannot_be_computed_does_not_poison_later_work(rng):
    data = rng.standard_normal((5, 3)).astype(np.float32)
    bad = graphc.tensor(data)[graphc.arange(4) * 2]    # stays pending: index 6 of 5
    with pytest.raises(IndexError):
        bad.numpy()
    weights = graphc.tensor(data.copy())
    weights.mul_(2)                                   # an in-place write computes everything pending
    np.testing.assert_allclose(weights.numpy(), data * 2)
    with pytest.raises(IndexError, match="index 6 is out of bounds"):
        bad.numpy()                                   # the bad value still says what is wrong


def test_the_line_is_the_calls_own_when_two_lines_share_a_program(rng):
    """Graphs of one structure share one compiled program; the error names the line that ran."""
    x = graphc.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    first, second = graphc.tensor([0, 1]), graphc.tensor([1, 2])
    x[first + 3].numpy()  # FIRST-USE
    with pytest.raises(IndexError) as caught:
        x[second + 3].numpy()  # SECOND-USE
    assert f"{HERE}:{line_of(__file__, 'SECOND-USE')}" in str(caught.value)


def test_the_interpreter_names_op_and_line_too(rng):
    from graphc import backend
    previous = backend.get_default()
    backend.set_default("numpy")
    try:
        x = graphc.tensor(rng.standard_normal(4).astype(np.float32))
        with pytest.raises(IndexError) as caught:
            x[graphc.arange(3) * 3].numpy()  # INTERPRETED
    finally:
        backend.set_default(previous)
    message = str(caught.value)
    assert message.startswith("gather: index 6 is out of bounds")
    assert f"{HERE}:{line_of(__file__, 'INTERPRETED')}" in message


def test_each_of_several_computed_indices_is_checked_in_its_own_dimension(rng):
    """x[0, 3] of a 5x3 tensor must not quietly read x[1, 0] (the merged index 3 is in range)."""
    data = rng.standard_normal((5, 3)).astype(np.float32)
    x = graphc.tensor(data)
    rows, columns = graphc.tensor([0, 4]), graphc.tensor([1, 0])
    np.testing.assert_array_equal(x[rows, columns + 1].numpy(), data[[0, 4], [2, 1]])
    np.testing.assert_array_equal(x[rows - 5, columns - 3].numpy(), data[[0, 4], [1, 0]])  # negatives wrap
    with pytest.raises(IndexError) as caught:
        x[rows * 0, columns + 3].numpy()  # SECOND-DIM
    message = str(caught.value)
    assert message.startswith("gather: index 4 is out of bounds for an axis of size 3")
    assert f"{HERE}:{line_of(__file__, 'SECOND-DIM')}" in message
