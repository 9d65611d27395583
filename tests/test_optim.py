"""Optimizers and schedulers against NumPy re-implementations of PyTorch's update rules."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.optim import lr_scheduler
from nn_testing import reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")

STEPS = 5


def make_problem(rng, dtype):
    """Two parameters and STEPS rounds of random gradients."""
    initial = [rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in initial] for _ in range(STEPS)]
    return initial, grads


def run_graphc(optimizer_class, initial, grads, **options):
    params = [nn.Parameter(graphc.tensor(p.copy())) for p in initial]
    optimizer = optimizer_class(params, **options)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = graphc.tensor(g)
        optimizer.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history, optimizer, params


def np_sgd(initial, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    params = [p.copy() for p in initial]
    buffers = [None] * len(params)
    history = []
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * params[i]
            if momentum:
                if buffers[i] is None:
                    buffers[i] = g.copy()
                else:
                    buffers[i] = momentum * buffers[i] + (1 - dampening) * g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = params[i] - lr * g
        history.append([p.copy() for p in params])
    return history


def np_adam(initial, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
            decoupled=False):
    beta1, beta2 = betas
    params = [p.copy() for p in initial]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    v_max = [np.zeros_like(p) for p in params]
    history = []
    for step, step_grads in enumerate(grads, 1):
        for i, g in enumerate(step_grads):
            if weight_decay:
                if decoupled:
                    params[i] = params[i] * (1 - lr * weight_decay)
                else:
                    g = g + weight_decay * params[i]
            m[i] = m[i] + (1 - beta1) * (g - m[i])
            v[i] = v[i] * beta2 + (1 - beta2) * g * g
            v_max[i] = np.maximum(v_max[i], v[i])
            second = v_max[i] if amsgrad else v[i]
            denom = np.sqrt(second) / math.sqrt(1 - beta2 ** step) + eps
            params[i] = params[i] - lr / (1 - beta1 ** step) * m[i] / denom
        history.append([p.copy() for p in params])
    return history


def assert_histories(got, expected, dtype):
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-6, 1e-6)
    for got_step, expected_step in zip(got, expected):
        for g, e in zip(got_step, expected_step):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.05, momentum=0.5, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SGD_CASES, ids=str)
def test_sgd_matches_numpy(rng, dtype, options):
    initial, grads = make_problem(rng, dtype)
    got, optimizer, params = run_graphc(graphc.optim.SGD, initial, grads, **options)
    assert_histories(got, np_sgd(initial, grads, **options), dtype)
    if options.get("momentum"):
        buffer = optimizer.state[params[0]]["momentum_buffer"]
        assert isinstance(buffer, graphc.Tensor) and buffer.shape == (3, 2)


ADAM_CASES = [
    (graphc.optim.Adam, dict(lr=0.01)),
    (graphc.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, eps=1e-6)),
    (graphc.optim.Adam, dict(lr=0.02, amsgrad=True)),
    (graphc.optim.AdamW, dict(lr=0.01)),
    (graphc.optim.AdamW, dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ADAM_CASES, ids=lambda c: f"{c[0].__name__}-{c[1]}")
def test_adam_matches_numpy(rng, dtype, case):
    optimizer_class, options = case
    initial, grads = make_problem(rng, dtype)
    got, optimizer, params = run_graphc(optimizer_class, initial, grads, **options)
    decoupled = optimizer_class is graphc.optim.AdamW
    reference = dict(options)
    if decoupled:
        reference.setdefault("weight_decay", 1e-2)
    assert_histories(got, np_adam(initial, grads, decoupled=decoupled, **reference), dtype)
    state = optimizer.state[params[1]]
    assert state["step"].item() == STEPS and state["step"].dtype is graphc.float32
    assert isinstance(state["exp_avg"], graphc.Tensor) and state["exp_avg"].dtype is params[1].dtype


def test_param_groups_options_and_errors(rng):
    a, b = nn.Parameter(graphc.ones(2)), nn.Parameter(graphc.ones(3))
    optimizer = graphc.optim.SGD([{"params": [a]}, {"params": b, "lr": 1.0, "momentum": 0.5}], lr=0.1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 1.0]
    assert optimizer.param_groups[0]["momentum"] == 0 and optimizer.param_groups[1]["momentum"] == 0.5
    a.grad, b.grad = graphc.ones(2), graphc.ones(3)
    optimizer.step()
    np.testing.assert_allclose(a.detach().numpy(), [0.9, 0.9])
    np.testing.assert_allclose(b.detach().numpy(), [0.0, 0.0, 0.0])
    c = nn.Parameter(graphc.ones(1))
    optimizer.add_param_group({"params": [c], "lr": 0.5})
    assert optimizer.param_groups[2]["momentum"] == 0 and optimizer.param_groups[2]["lr"] == 0.5
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optimizer.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        graphc.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        graphc.optim.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        graphc.optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        graphc.optim.SGD([a], lr=0.1, nesterov=True)
    # a parameter without a gradient is left alone
    d = nn.Parameter(graphc.ones(2))
    graphc.optim.Adam([d]).step()
    np.testing.assert_array_equal(d.detach().numpy(), [1.0, 1.0])
    assert repr(graphc.optim.SGD([d], lr=0.1)).startswith("SGD (\nParameter Group 0\n    dampening: 0\n")


def test_zero_grad_and_closure(rng):
    model = nn.Linear(3, 1)
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.1)
    x = graphc.tensor(rng.standard_normal((4, 3)).astype(np.float32))

    def closure():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    first = optimizer.step(closure).item()
    second = optimizer.step(closure).item()
    assert second < first
    optimizer.zero_grad(set_to_none=False)
    assert not model.weight.grad.numpy().any()
    optimizer.zero_grad()
    assert model.weight.grad is None


def test_optimizer_state_dict_round_trip(rng):
    initial, grads = make_problem(rng, np.float64)
    params = [nn.Parameter(graphc.tensor(p.copy())) for p in initial]
    optimizer = graphc.optim.Adam(params, lr=0.05, amsgrad=True)
    for step_grads in grads[:3]:
        for p, g in zip(params, step_grads):
            p.grad = graphc.tensor(g)
        optimizer.step()
    state = optimizer.state_dict()
    assert sorted(state["state"]) == [0, 1] and state["param_groups"][0]["params"] == [0, 1]
    assert sorted(state["state"][0]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    state = pickle.loads(pickle.dumps(state))  # what torch.save-style checkpointing does
    twins = [nn.Parameter(p.detach().clone()) for p in params]
    twin = graphc.optim.Adam(twins, lr=0.5)
    twin.load_state_dict(state)
    assert twin.param_groups[0]["lr"] == 0.05 and twin.param_groups[0]["params"][0] is twins[0]
    for step_grads in grads[3:]:
        for p, q, g in zip(params, twins, step_grads):
            p.grad, q.grad = graphc.tensor(g), graphc.tensor(g)
        optimizer.step()
        twin.step()
    for p, q in zip(params, twins):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    with pytest.raises(ValueError, match="different number of parameter groups"):
        graphc.optim.Adam([{"params": [twins[0]]}, {"params": [twins[1]]}]).load_state_dict(state)


# ---- schedulers ------------------------------------------------------------------------------
def schedule(make, epochs=12, base_lr=0.5):
    p = nn.Parameter(graphc.zeros(1))
    optimizer = graphc.optim.SGD([p], lr=base_lr)
    scheduler = make(optimizer)
    lrs = [scheduler.get_last_lr()[0]]
    assert optimizer.param_groups[0]["lr"] == lrs[0]
    for _ in range(epochs):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
        assert optimizer.param_groups[0]["lr"] == lrs[-1]
    return np.array(lrs), scheduler


def test_lambda_lr():
    lrs, _ = schedule(lambda o: lr_scheduler.LambdaLR(o, lambda epoch: 0.9 ** epoch + 0.1 * (epoch % 3)))
    np.testing.assert_allclose(lrs, [0.5 * (0.9 ** e + 0.1 * (e % 3)) for e in range(13)], rtol=1e-14)


def test_step_and_multistep_lr():
    lrs, _ = schedule(lambda o: lr_scheduler.StepLR(o, step_size=4, gamma=0.3))
    np.testing.assert_allclose(lrs, [0.5 * 0.3 ** (e // 4) for e in range(13)], rtol=1e-14)
    lrs, _ = schedule(lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.5))
    np.testing.assert_allclose(lrs, [0.5 * 0.5 ** sum(e >= m for m in [2, 5, 5, 9]) for e in range(13)],
                               rtol=1e-14)


def test_exponential_lr():
    lrs, _ = schedule(lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8))
    np.testing.assert_allclose(lrs, [0.5 * 0.8 ** e for e in range(13)], rtol=1e-13)


@pytest.mark.parametrize("eta_min", [0.0, 0.05])
def test_cosine_annealing_lr(eta_min):
    t_max = 5
    lrs, _ = schedule(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), epochs=15)
    expected = [eta_min + (0.5 - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2 for e in range(16)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)


def test_linear_and_plateau_lr():
    lrs, _ = schedule(lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4))
    np.testing.assert_allclose(lrs, [0.5 * (0.25 + 0.75 * min(e, 4) / 4) for e in range(13)], rtol=1e-12)
    p = nn.Parameter(graphc.zeros(1))
    optimizer = graphc.optim.SGD([p], lr=1.0)
    plateau = lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
    for metric in [1.0, 0.5, 0.6, 0.6, 0.6, 0.4]:
        plateau.step(metric)
    assert plateau.get_last_lr() == [0.5]


def test_scheduler_state_dict_and_step_order_warning():
    lrs, scheduler = schedule(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.1), epochs=5)
    state = scheduler.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 5 and state["base_lrs"] == [0.5]
    p = nn.Parameter(graphc.zeros(1))
    optimizer = graphc.optim.SGD([p], lr=0.5)
    restored = lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    restored.load_state_dict(state)
    assert restored.last_epoch == 5 and restored.get_last_lr() == scheduler.get_last_lr()
    fresh = lr_scheduler.ExponentialLR(graphc.optim.SGD([nn.Parameter(graphc.zeros(1))], lr=0.1), 0.5)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        fresh.step()


def test_clip_grad_norm_and_value(rng):
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    params = [nn.Parameter(graphc.zeros(g.shape, dtype=graphc.float64)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = graphc.tensor(g)
    total = math.sqrt(sum((g ** 2).sum() for g in grads))
    norm = nn.utils.clip_grad_norm_(params, max_norm=0.5)
    np.testing.assert_allclose(norm.item(), total, rtol=1e-12)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * 0.5 / (total + 1e-6), rtol=1e-12)
    assert nn.utils.clip_grad_norm_(params, max_norm=10.0).item() < 0.5 + 1e-9  # already small: unchanged
    np.testing.assert_allclose(params[1].grad.numpy(), grads[1] * 0.5 / (total + 1e-6), rtol=1e-12)
    inf_norm = nn.utils.clip_grad_norm_(params, max_norm=1.0, norm_type="inf")
    np.testing.assert_allclose(inf_norm.item(), max(np.abs(g).max() for g in grads) * 0.5 / (total + 1e-6))
    nn.utils.clip_grad_value_(params, 0.01)
    assert all(np.abs(p.grad.numpy()).max() <= 0.01 for p in params)
