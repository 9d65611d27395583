"""Losses: every loss and reduction against a NumPy float64 reference, gradients against
finite differences, grad_fn names, and the errors for bad labels."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from nn_testing import check_grads, reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")

REDUCTIONS = ["mean", "sum", "none"]


def tensor(a):
    return graphc.tensor(np.asarray(a))


def reduce(values, reduction, denominator=None):
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / (values.size if denominator is None else denominator)


def assert_close(got, expected, rtol=1e-10, atol=1e-12):
    got = got.detach().numpy()
    assert got.shape == np.shape(expected), (got.shape, np.shape(expected))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def np_log_softmax(x, axis=1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_nll(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """logp (N, C, *) and target (N, *)."""
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    w = (weight[safe] if weight is not None else np.ones(safe.shape)) * valid
    losses = -picked * w
    return reduce(losses, reduction, w.sum())


# ---- regression losses ----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1(rng, reduction):
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert_close(nn.MSELoss(reduction=reduction)(tensor(x), tensor(y)), reduce((x - y) ** 2, reduction))
    assert_close(nn.L1Loss(reduction=reduction)(tensor(x), tensor(y)), reduce(np.abs(x - y), reduction))
    check_grads(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y], rng)
    check_grads(lambda a, b: F.l1_loss(a, b, reduction=reduction), [x, y], rng)


def test_mse_float32_and_legacy_arguments(rng):
    x, y = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    out = nn.MSELoss()(tensor(x.astype(np.float32)), tensor(y.astype(np.float32)))
    assert out.dtype is graphc.float32
    np.testing.assert_allclose(out.item(), ((x - y) ** 2).mean(), rtol=1e-6)
    with pytest.warns(UserWarning):
        legacy = nn.MSELoss(size_average=False)
    assert legacy.reduction == "sum"


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_smooth_l1_and_huber(rng, reduction):
    x, y = rng.standard_normal((4, 3)) * 2, rng.standard_normal((4, 3))
    d = np.abs(x - y)
    smooth = np.where(d < 0.5, 0.5 * d ** 2 / 0.5, d - 0.25)
    assert_close(nn.SmoothL1Loss(reduction=reduction, beta=0.5)(tensor(x), tensor(y)), reduce(smooth, reduction))
    huber = np.where(d < 0.7, 0.5 * d ** 2, 0.7 * (d - 0.35))
    assert_close(nn.HuberLoss(reduction=reduction, delta=0.7)(tensor(x), tensor(y)), reduce(huber, reduction))
    check_grads(nn.SmoothL1Loss(reduction=reduction), [x, y], rng)


# ---- classification losses ------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices(rng, reduction):
    x = rng.standard_normal((6, 5)) * 3
    target = rng.integers(0, 5, 6)
    expected = np_nll(np_log_softmax(x), target, reduction=reduction)
    loss = nn.CrossEntropyLoss(reduction=reduction)(tensor(x), graphc.tensor(target))
    assert_close(loss, expected)
    assert loss.grad_fn is None
    check_grads(lambda a: F.cross_entropy(a, graphc.tensor(target), reduction=reduction), [x], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weight_and_ignore_index(rng, reduction):
    x = rng.standard_normal((7, 4))
    target = rng.integers(0, 4, 7)
    target[[1, 4]] = 2
    weight = rng.uniform(0.5, 2.0, 4)
    expected = np_nll(np_log_softmax(x), target, weight, ignore_index=2, reduction=reduction)
    loss = nn.CrossEntropyLoss(weight=tensor(weight), ignore_index=2, reduction=reduction)
    assert_close(loss(tensor(x), graphc.tensor(target)), expected)
    check_grads(lambda a, w: F.cross_entropy(a, graphc.tensor(target), weight=w, ignore_index=2,
                                             reduction=reduction), [x, weight], rng, wrt=[0])
    # the default ignore_index, -100
    target[0] = -100
    assert_close(F.cross_entropy(tensor(x), graphc.tensor(target), reduction=reduction),
                 np_nll(np_log_softmax(x), target, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_label_smoothing(rng, reduction):
    x = rng.standard_normal((5, 4))
    target = rng.integers(0, 4, 5)
    target[2] = 1
    weight = rng.uniform(0.5, 2.0, 4)
    eps, classes = 0.2, 4
    logp = np_log_softmax(x)
    valid = target != 1
    nll = np_nll(logp, target, weight, ignore_index=1, reduction=reduction)
    smooth = -(logp * weight).sum(1) * valid
    denominator = (weight[np.where(valid, target, 0)] * valid).sum()
    expected = (1 - eps) * nll + eps / classes * reduce(smooth, reduction, denominator)
    loss = nn.CrossEntropyLoss(weight=tensor(weight), ignore_index=1, reduction=reduction, label_smoothing=eps)
    assert_close(loss(tensor(x), graphc.tensor(target)), expected)
    check_grads(lambda a: F.cross_entropy(a, graphc.tensor(target), label_smoothing=eps, reduction=reduction),
                [x], rng)


def test_cross_entropy_probabilities_and_spatial(rng):
    x = rng.standard_normal((4, 3))
    probs = rng.dirichlet(np.ones(3), 4)
    assert_close(F.cross_entropy(tensor(x), tensor(probs)), -(np_log_softmax(x) * probs).sum(1).mean())
    check_grads(lambda a, p: F.cross_entropy(a, p), [x, probs], rng)
    # (N, C, d) input with (N, d) targets
    x = rng.standard_normal((2, 4, 3))
    target = rng.integers(0, 4, (2, 3))
    assert_close(F.cross_entropy(tensor(x), graphc.tensor(target)), np_nll(np_log_softmax(x), target))
    check_grads(lambda a: F.cross_entropy(a, graphc.tensor(target), reduction="none"), [x], rng)
    # unbatched (C,) input with a 0-d target
    x = rng.standard_normal(5)
    assert_close(F.cross_entropy(tensor(x), graphc.tensor(3)), -np_log_softmax(x, 0)[3])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(rng, reduction):
    logp = np_log_softmax(rng.standard_normal((5, 3)))
    target = rng.integers(0, 3, 5)
    weight = rng.uniform(0.5, 2.0, 3)
    assert_close(nn.NLLLoss(reduction=reduction)(tensor(logp), graphc.tensor(target)),
                 np_nll(logp, target, reduction=reduction))
    assert_close(nn.NLLLoss(tensor(weight), reduction=reduction)(tensor(logp), graphc.tensor(target)),
                 np_nll(logp, target, weight, reduction=reduction))
    check_grads(lambda a: F.nll_loss(a, graphc.tensor(target), reduction=reduction), [logp], rng)


def test_cross_entropy_is_log_softmax_then_nll(rng):
    x = graphc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    target = graphc.tensor(rng.integers(0, 4, 3))
    a = F.cross_entropy(x, target)
    b = nn.NLLLoss()(nn.LogSoftmax(dim=1)(x), target)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)
    assert a.grad_fn.name() == b.grad_fn.name() == "NllLossBackward0"


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce(rng, reduction):
    p = rng.uniform(0.05, 0.95, (4, 3))
    y = rng.uniform(0, 1, (4, 3))
    weight = rng.uniform(0.5, 1.5, 3)
    terms = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert_close(nn.BCELoss(reduction=reduction)(tensor(p), tensor(y)), reduce(terms, reduction))
    assert_close(nn.BCELoss(weight=tensor(weight), reduction=reduction)(tensor(p), tensor(y)),
                 reduce(terms * weight, reduction))
    check_grads(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), [p, y], rng)


def test_bce_clamps_log_at_minus_100():
    loss = F.binary_cross_entropy(graphc.tensor([0.0, 1.0]), graphc.tensor([1.0, 0.0]), reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [100.0, 100.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(rng, reduction):
    x = rng.standard_normal((4, 3)) * 4
    y = rng.uniform(0, 1, (4, 3))
    pos_weight = rng.uniform(0.5, 3.0, 3)
    sig = 1 / (1 + np.exp(-x))
    terms = -(y * np.log(sig) + (1 - y) * np.log(1 - sig))
    assert_close(nn.BCEWithLogitsLoss(reduction=reduction)(tensor(x), tensor(y)), reduce(terms, reduction))
    weighted = -(pos_weight * y * np.log(sig) + (1 - y) * np.log(1 - sig))
    loss = nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=tensor(pos_weight))
    assert_close(loss(tensor(x), tensor(y)), reduce(weighted, reduction))
    check_grads(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, y], rng)
    check_grads(lambda a, b, w: F.binary_cross_entropy_with_logits(a, b, pos_weight=w, reduction=reduction),
                [x, y, pos_weight], rng)


def test_bce_with_logits_is_stable_for_large_logits():
    x = graphc.tensor([1000.0, -1000.0, 60.0, -60.0])
    y = graphc.tensor([0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none").numpy()
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, [1000.0, 1000.0, 0.0, 0.0], atol=1e-20)


def test_loss_grad_fn_names(rng):
    x = graphc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = graphc.tensor(rng.standard_normal((3, 4)))
    target = graphc.tensor(rng.integers(0, 4, 3))
    probs = graphc.tensor(rng.uniform(0.1, 0.9, (3, 4)))
    assert F.mse_loss(x, y).grad_fn.name() == "MseLossBackward0"
    assert F.mse_loss(x, y, reduction="none").grad_fn.name() == "MseLossBackward0"
    assert F.cross_entropy(x, target).grad_fn.name() == "NllLossBackward0"
    assert F.nll_loss(x, target, reduction="sum").grad_fn.name() == "NllLossBackward0"
    assert F.binary_cross_entropy(x.sigmoid(), probs).grad_fn.name() == "BinaryCrossEntropyBackward0"
    assert F.binary_cross_entropy_with_logits(x, probs).grad_fn.name() == "BinaryCrossEntropyWithLogitsBackward0"
    assert F.l1_loss(x, y).grad_fn.name() == "MeanBackward0"
    assert F.cross_entropy(x, target, label_smoothing=0.1).grad_fn.name() == "AddBackward0"


# ---- errors --------------------------------------------------------------------------------
def test_float_labels_are_rejected_with_the_users_line(rng):
    x = graphc.tensor(rng.standard_normal((4, 3)))
    labels = graphc.tensor([0.0, 1.0, 2.0, 1.0])
    with pytest.raises(TypeError) as info:
        nn.CrossEntropyLoss()(x, labels)
    text = str(info.value)
    assert text.startswith("cross_entropy: expected target to hold class indices (an int64 tensor), but got a "
                           "float32 tensor of shape [4]")
    assert "test_nn_losses.py:" in text and "HINT: labels must be integers: pass target.long()" in text
    with pytest.raises(TypeError, match=r"^nll_loss: expected target to hold class indices"):
        F.nll_loss(x, labels)


def test_class_index_out_of_range(rng):
    x = graphc.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(IndexError) as info:
        F.cross_entropy(x, graphc.tensor([0, 1, 3, 1]))
    text = str(info.value)
    assert text.startswith("cross_entropy: Target 3 is out of bounds: the input has 3 classes (valid targets "
                           "are 0..2)")
    assert "test_nn_losses.py:" in text
    with pytest.raises(IndexError, match="nll_loss: Target -1 is out of bounds"):
        F.nll_loss(x, graphc.tensor([0, -1, 2, 1]))
    # an ignored target may be anything
    F.cross_entropy(x, graphc.tensor([0, 7, 2, 1]), ignore_index=7)
    # labels still being computed cannot be checked when the loss is built: a bad one gives NaN
    pending = graphc.tensor([0, 1, 3, 1]) + 0
    losses = F.cross_entropy(x, pending, reduction="none").numpy()
    assert np.isnan(losses[2]) and np.isfinite(losses[[0, 1, 3]]).all()


def test_target_shape_and_reduction_errors(rng):
    x = graphc.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(graphc.errors.ShapeError,
                       match=r"cross_entropy: Expected input batch_size \(4\) to match target batch_size \(3\)"):
        F.cross_entropy(x, graphc.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="bogus is not a valid value for reduction"):
        nn.MSELoss(reduction="bogus")
    with pytest.raises(graphc.errors.ShapeError, match="binary_cross_entropy: Using a target size"):
        F.binary_cross_entropy(x.sigmoid(), graphc.zeros(4))
    with pytest.raises(TypeError, match="binary_cross_entropy_with_logits: expected a floating-point target"):
        F.binary_cross_entropy_with_logits(x, graphc.zeros(4, 3, dtype=graphc.int64))
