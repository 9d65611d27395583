"""The lazy core's steady state: a training loop without any decorator makes one native call per
iteration, builds no networkx graph and runs no vjp rule once its structure has been seen, keeps
in-place writes lazy with PyTorch's aliasing, and stays bounded when nothing is ever read."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import graphc
from graphc import backend, lazy
from graphc.autograd import engine
from graphc.ir import graph as ir_graph
from graphc.utils.data import DataLoader, TensorDataset

nn, F = graphc.nn, graphc.nn.functional


class Counts:
    """Native calls (realizes that ran a graph), Graphs built and autodiff passes run."""

    def __init__(self, monkeypatch):
        self.graphs = 0
        self.autodiffs = 0
        original_init, original_autodiff = ir_graph.Graph.__init__, engine.autodiff

        def counting_init(graph_self, *args, **kwargs):
            self.graphs += 1
            original_init(graph_self, *args, **kwargs)

        def counting_autodiff(*args, **kwargs):
            self.autodiffs += 1
            return original_autodiff(*args, **kwargs)
        monkeypatch.setattr(ir_graph.Graph, "__init__", counting_init)
        monkeypatch.setattr(engine, "autodiff", counting_autodiff)

    @staticmethod
    def native_calls() -> int:
        return backend.stats["interpreted"] + backend.stats["compiled"] + backend.stats["replayed"]

    def snapshot(self):
        return self.native_calls(), self.graphs, self.autodiffs


def run_steady(step, monkeypatch, warm_up=3, counted=5):
    """Run `step` warm_up times, then `counted` times; per counted iteration return the native
    calls, Graphs built and autodiff passes."""
    for _ in range(warm_up):
        step()
    counts = Counts(monkeypatch)
    per_iteration = []
    for _ in range(counted):
        before = counts.snapshot()
        step()
        after = counts.snapshot()
        per_iteration.append(tuple(b - a for a, b in zip(before, after)))
    return per_iteration


def linear_regression_step():
    x = graphc.tensor(np.linspace(0, 10, 11, dtype=np.float32).reshape(11, 1))
    y = 2 * x + 1
    model = nn.Linear(1, 1)
    criterion = nn.MSELoss()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.01)

    def step():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def scalar_weight_step():
    w = graphc.tensor([1.0], requires_grad=True)
    points = [(graphc.tensor([float(v)]), graphc.tensor([2.0 * v])) for v in (1, 2, 3)]
    position = [0]

    def step():
        x, y = points[position[0] % 3]
        position[0] += 1
        loss = (x * w - y) ** 2
        loss.backward()
        w.data = w.data - 0.01 * w.grad.data
        w.grad.data.zero_()
        return loss.item()
    return step


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 16, 3)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 6 * 6, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = graphc.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def lenet_step(batch=1):
    rng = np.random.default_rng(3)
    model = LeNet()
    criterion = nn.MSELoss()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.01)
    x = graphc.tensor(rng.standard_normal((batch, 1, 32, 32)).astype(np.float32))
    target = graphc.tensor(rng.standard_normal((batch, 10)).astype(np.float32))

    def step():
        optimizer.zero_grad()
        loss = criterion(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def mlp_loader_step():
    rng = np.random.default_rng(4)
    data = TensorDataset(graphc.tensor(rng.standard_normal((64, 20)).astype(np.float32)),
                         graphc.tensor(rng.integers(0, 5, 64)))
    loader = DataLoader(data, batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = iter(())

    def step():
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def adam_step(width=8):
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 1))
    optimizer = graphc.optim.Adam(model.parameters(), lr=0.01)
    x = graphc.tensor(rng.standard_normal((10, 6)).astype(np.float32))
    y = graphc.tensor(rng.standard_normal((10, 1)).astype(np.float32))

    def step():
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


@pytest.mark.parametrize("make_step", [linear_regression_step, scalar_weight_step, lenet_step,
                                       mlp_loader_step, adam_step],
                         ids=["E1-linreg", "E2-scalar-w", "E3-lenet", "E5-mlp-loader", "adam"])
def test_a_plain_loop_is_one_native_call_per_iteration(make_step, monkeypatch):
    graphc.manual_seed(0)
    per_iteration = run_steady(make_step(), monkeypatch)
    assert per_iteration == [(1, 0, 0)] * len(per_iteration), \
        "(native calls, Graphs built, autodiff passes) per iteration"


def test_the_second_iteration_hits_the_caches(monkeypatch):
    """The first iteration builds its Graphs and derives its backward graph; from the second on,
    the backward graph comes from the derivation cache (the program itself compiles on its second
    sight, after one interpreted run)."""
    graphc.manual_seed(1)
    step = adam_step(width=int(np.random.default_rng().integers(100, 10_000)))  # a new structure
    counts = Counts(monkeypatch)
    step()
    first = counts.snapshot()
    assert first[1] >= 1 and first[2] == 1
    step()
    second = counts.snapshot()
    assert second[2] - first[2] == 0        # no autodiff pass: the derivation was reused
    step()
    third = counts.snapshot()
    assert third[1:] == second[1:]          # nothing built at all


def test_linear_regression_matches_a_float64_reference():
    """The lazy loop (writes deferred, one call per step) computes PyTorch's SGD with momentum."""
    rng = np.random.default_rng(7)
    xs = rng.uniform(-1, 1, (9, 3))
    ys = xs @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.01 * rng.standard_normal((9, 1))
    w0, b0 = rng.standard_normal((1, 3)), rng.standard_normal(1)
    model = nn.Linear(3, 1).double()
    with graphc.no_grad():
        model.weight.copy_(graphc.tensor(w0))
        model.bias.copy_(graphc.tensor(b0))
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = graphc.tensor(xs), graphc.tensor(ys)
    w, b, vw, vb = w0.copy(), b0.copy(), None, None
    for _ in range(25):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        residual = xs @ w.T + b - ys
        expected_loss = np.mean(residual ** 2)
        gw, gb = 2 * residual.T @ xs / len(xs), 2 * residual.sum(0) / len(xs)
        vw = gw if vw is None else 0.9 * vw + gw
        vb = gb if vb is None else 0.9 * vb + gb
        w, b = w - 0.1 * vw, b - 0.1 * vb
        assert loss.item() == pytest.approx(expected_loss, rel=1e-10)
        np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-10)
        np.testing.assert_allclose(model.bias.detach().numpy(), b, rtol=1e-10)
        np.testing.assert_allclose(optimizer.state[model.weight]["momentum_buffer"].numpy(), vw, rtol=1e-10)


# ---- in-place writes that stay lazy, and aliasing ---------------------------------------------
def test_a_lazy_write_keeps_earlier_reads_and_shows_in_later_ones(rng):
    values = rng.standard_normal(5)
    x = graphc.tensor(values)
    before = x * 2                  # read before the write: the old values
    x.add_(1)
    after = x * 2                   # read after it: the new ones
    assert x._storage.array is None, "the write stays pending"
    np.testing.assert_allclose(before.numpy(), values * 2)
    np.testing.assert_allclose(after.numpy(), (values + 1) * 2)
    np.testing.assert_allclose(x.numpy(), values + 1)


def test_a_lazy_write_is_seen_through_every_tensor_sharing_the_storage(rng):
    values = rng.standard_normal((3, 4))
    x = graphc.tensor(values)
    alias, row, flat = x.detach(), x[1], x.view(12)
    x.mul_(3)
    np.testing.assert_allclose(alias.numpy(), values * 3)
    np.testing.assert_allclose(row.numpy(), values[1] * 3)
    np.testing.assert_allclose(flat.numpy(), values.reshape(12) * 3)
    flat.add_(1)                    # through a whole-storage view: x sees it
    np.testing.assert_allclose(x.numpy(), values * 3 + 1)
    row.zero_()                     # through part of the storage: done at once, seen by all
    expected = values * 3 + 1
    expected[1] = 0
    np.testing.assert_allclose(x.numpy(), expected)
    np.testing.assert_allclose(alias.numpy(), expected)


def test_copy_into_a_tensor_never_aliases_the_source(rng):
    a, b = graphc.tensor(rng.standard_normal(4)), graphc.tensor(rng.standard_normal(4))
    a.copy_(b)
    a.add_(1)
    np.testing.assert_allclose(a.numpy(), b.numpy() + 1)
    b.mul_(0)
    np.testing.assert_allclose(a.numpy(), np.asarray(b.numpy()) * 0 + a.numpy())
    assert not np.shares_memory(a.numpy(), b.numpy())


def test_memory_numpy_shares_is_written_at_once(rng):
    array = rng.standard_normal(4)
    x = graphc.from_numpy(array)
    original = array.copy()
    x.add_(2)
    np.testing.assert_allclose(array, original + 2)    # NumPy sees the write immediately
    shown = x.numpy()
    x.mul_(2)
    np.testing.assert_allclose(shown, (original + 2) * 2)


def test_backward_after_a_lazy_write_of_a_saved_value_raises(rng):
    w = graphc.tensor(rng.standard_normal(3), requires_grad=True)
    h = graphc.tensor(rng.standard_normal(3))
    loss = (w * h).sum()
    h.add_(1)                       # h was saved for w's gradient
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_gradients_computed_before_a_lazy_update_use_the_old_weights(rng):
    """The optimizer's update and the gradient it reads run in one call; the gradient must see the
    weights as they were at backward() (PyTorch computed it then)."""
    w0, x = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    w = graphc.tensor(w0, requires_grad=True)
    loss = (w @ graphc.tensor(x)).pow(2).sum()
    loss.backward()
    grad = w.grad
    with graphc.no_grad():
        w.add_(w.grad, alpha=-0.5)
    expected_grad = 2 * (w0 @ x) @ x.T
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-12)
    np.testing.assert_allclose(w.detach().numpy(), w0 - 0.5 * expected_grad, rtol=1e-12)


# ---- bounded growth -----------------------------------------------------------------------------
def live_lazy_nodes() -> int:
    gc.collect()
    return sum(1 for item in gc.get_objects() if type(item) is lazy.LazyNode)


def test_a_loop_that_never_reads_stays_bounded():
    """10,000 iterations accumulating into a tensor (and stepping an optimizer) without reading
    anything: the lazy graph is cut at the optimizer step and at the record limit."""
    graphc.manual_seed(2)
    model = nn.Linear(4, 1)
    optimizer = graphc.optim.SGD(model.parameters(), lr=1e-3)
    x = graphc.randn(8, 4)
    total = graphc.zeros(())
    counter = graphc.zeros(())

    def iteration():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        total.add_(loss.detach())
        counter.add_(1)              # in place, never read, no optimizer involved

    for _ in range(200):
        iteration()
    early = live_lazy_nodes()
    for _ in range(10_000):
        counter.add_(1)
    for _ in range(300):
        iteration()
    assert live_lazy_nodes() <= early + 50
    assert counter.item() == 10_500
    assert np.isfinite(total.item())
