"""graphc.compile and graphc.trace: a whole train step as one graph, replayed natively."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import nn, optim
from graphc.compile.tracer import TraceError
from models import LeNet, train_step


def mlp():
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))


def make_setup(kind, optimizer_name, seed, dtype=graphc.float32):
    graphc.manual_seed(seed)
    model = (mlp() if kind == "mlp" else LeNet()).to(dtype)
    if optimizer_name == "sgd":
        optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        optimizer = optim.Adam(model.parameters(), lr=0.01)
    return model, optimizer


def batches(kind, rng, count, batch=8, dtype=np.float32):
    shape = (batch, 20) if kind == "mlp" else (batch, 1, 32, 32)
    classes = 5 if kind == "mlp" else 10
    return [(rng.standard_normal(shape).astype(dtype), rng.integers(0, classes, batch))
            for _ in range(count)]


def train(model, optimizer, data, compiled: bool):
    step = train_step(model, optimizer)

    runner = graphc.compile(step) if compiled else step
    losses = [runner(graphc.tensor(x), graphc.tensor(y)).item() for x, y in data]
    return losses, runner


# LeNet with Adam runs in float64: Adam divides each update by sqrt(v), so for a weight whose
# gradient is ~0 the sign of float32 rounding noise (which differs between two programs that sum
# in different orders) decides an update of up to lr; float64 keeps that noise out of the compare.
@pytest.mark.parametrize("kind,optimizer_name,dtype", [("mlp", "sgd", "float32"), ("mlp", "adam", "float32"),
                                                       ("lenet", "sgd", "float32"),
                                                       ("lenet", "adam", "float64")])
def test_compiled_steps_match_the_lazy_path(kind, optimizer_name, dtype, rng):
    data = batches(kind, rng, 4, dtype=np.dtype(dtype))
    seed = int(rng.integers(1 << 30))
    lazy_model, lazy_optimizer = make_setup(kind, optimizer_name, seed, getattr(graphc, dtype))
    lazy_losses, _ = train(lazy_model, lazy_optimizer, data, compiled=False)
    model, optimizer = make_setup(kind, optimizer_name, seed, getattr(graphc, dtype))
    losses, runner = train(model, optimizer, data, compiled=True)
    assert runner.stats()["variants"] == 1 and sum(runner.stats()["calls"]) >= 2
    np.testing.assert_allclose(losses, lazy_losses, rtol=1e-5, atol=1e-6)
    # Adam divides by sqrt(v): for a weight whose gradients are ~0, float32 rounding differences
    # between the two programs' summation orders move its update by up to ~1% of lr (0.01)
    parameter_atol = 2e-4 if optimizer_name == "adam" and dtype == "float32" else 1e-6
    for (name, p), q in zip(model.named_parameters(), lazy_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=parameter_atol,
                                   err_msg=name)
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    for p, q in zip(model.parameters(), lazy_model.parameters()):
        state, lazy_state = optimizer.state[p], lazy_optimizer.state[q]
        assert sorted(state) == sorted(lazy_state)
        for key in state:
            np.testing.assert_allclose(np.asarray(state[key].numpy()), np.asarray(lazy_state[key].numpy()),
                                       rtol=1e-4, atol=1e-5, err_msg=key)


def test_retrace_only_when_a_guard_changes(rng):
    model, optimizer = make_setup("mlp", "sgd", 0)
    scheduler = optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
    step = graphc.compile(train_step(model, optimizer))

    def call(batch):
        x, y = batches("mlp", rng, 1, batch)[0]
        return step(graphc.tensor(x), graphc.tensor(y))

    for _ in range(3):
        call(8)
    traces = step.stats()["traces"]
    for _ in range(3):
        call(8)
        scheduler.step()            # a new learning rate is a runtime input, not a retrace
    assert step.stats()["traces"] == traces
    call(4)                         # a new batch size: traced once more
    call(4)
    assert step.stats()["traces"] == traces + 1
    assert "argument 0" in step.stats()["history"][-1]["reason"]
    model.eval()
    call(4)
    assert step.stats()["traces"] == traces + 2
    assert "training" in step.stats()["history"][-1]["reason"]


def test_learning_rate_from_a_scheduler_is_used(rng):
    x, y = batches("mlp", rng, 1)[0]
    results = []
    for compiled in (False, True):
        model, optimizer = make_setup("mlp", "sgd", 3)
        scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
        step = train_step(model, optimizer)
        runner = graphc.compile(step) if compiled else step
        for _ in range(4):
            runner(graphc.tensor(x), graphc.tensor(y))
            scheduler.step()
        results.append([p.detach().numpy().copy() for p in model.parameters()])
    for compiled, lazy in zip(results[1], results[0]):
        np.testing.assert_allclose(compiled, lazy, rtol=1e-5, atol=1e-6)


def test_value_dependent_python_raises_naming_the_line():
    model = mlp()

    @graphc.compile
    def step(x):
        out = model(x).sum()
        if out > 0:  # needs the value while tracing
            return out
        return -out

    with pytest.raises(TraceError, match=r"test_compile.py:\d+") as info:
        step(graphc.randn(3, 20))
    assert "HINT" in str(info.value)


def test_compiled_module_forward(rng):
    model = mlp()
    compiled = graphc.compile(model)
    x = graphc.tensor(rng.standard_normal((6, 20)).astype(np.float32))
    with graphc.no_grad():
        expected = model(x).numpy()
        for _ in range(2):
            result = compiled(x)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_trace_returns_the_whole_step_graph_and_changes_nothing(tmp_path, rng):
    model, optimizer = make_setup("mlp", "sgd", 1)
    before = [p.detach().numpy().copy() for p in model.parameters()]
    step = train_step(model, optimizer)
    x, y = batches("mlp", rng, 1)[0]
    graph = graphc.trace(step, graphc.tensor(x), graphc.tensor(y))
    ops = [n.op for n in graph.nodes()]
    assert ops.count("matmul") == 8  # 3 forward, 3 weight gradients, 2 input gradients (not x)
    assert len(graph.outputs) >= 1 + 6  # the loss, then new parameters and gradients
    for p, old in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.detach().numpy(), old)
        assert p.grad is None
    path = tmp_path / "step.json"
    graph.save(path)
    assert graphc.Graph.load(path) == graph


def test_second_order_gradient_inside_a_compiled_function(rng):
    w_values = rng.standard_normal(4)
    w = graphc.tensor(w_values, requires_grad=True)

    @graphc.compile
    def hessian_vector(v):
        loss = (w ** 3).sum()
        (g,) = graphc.autograd.grad(loss, w, create_graph=True)
        (hv,) = graphc.autograd.grad((g * v).sum(), w)
        return hv

    v_values = rng.standard_normal(4)
    for _ in range(2):
        result = hessian_vector(graphc.tensor(v_values))
    np.testing.assert_allclose(result.numpy(), 6 * w_values * v_values, rtol=1e-10)


def test_dropout_draws_new_numbers_each_call_like_the_lazy_path(rng):
    values = rng.standard_normal((4, 50)).astype(np.float32)
    outputs = []
    for compiled in (False, True):
        graphc.manual_seed(7)
        layer = nn.Dropout(0.5)
        function = graphc.compile(lambda t: layer(t) * 1) if compiled else (lambda t: layer(t) * 1)
        outputs.append([function(graphc.tensor(values)).numpy().copy() for _ in range(3)])
    for lazy, compiled in zip(*outputs):
        np.testing.assert_array_equal(lazy, compiled)
    assert not np.array_equal(outputs[1][1], outputs[1][2])


def test_scheduler_stepping_inside_the_compiled_function(rng):
    x, y = batches("mlp", rng, 1)[0]
    results = []
    for compiled in (False, True):
        model, optimizer = make_setup("mlp", "sgd", 4)
        scheduler = optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
        step = train_step(model, optimizer, scheduler)
        runner = graphc.compile(step) if compiled else step
        for _ in range(5):
            runner(graphc.tensor(x), graphc.tensor(y))
        results.append(([p.detach().numpy().copy() for p in model.parameters()],
                        optimizer.param_groups[0]["lr"]))
        if compiled:
            assert runner.stats()["variants"] == 1
    (lazy_parameters, lazy_lr), (parameters, lr) = results
    assert lr == pytest.approx(lazy_lr) and lr == pytest.approx(0.05 * 0.5 ** 5)
    for compiled, lazy in zip(parameters, lazy_parameters):
        np.testing.assert_allclose(compiled, lazy, rtol=1e-5, atol=1e-6)


def test_trace_of_a_step_in_steady_state(rng):
    """graphc.trace after the optimizer has state (the trace does not change it)."""
    model, optimizer = make_setup("mlp", "sgd", 2)
    step = train_step(model, optimizer)
    x, y = (graphc.tensor(a) for a in batches("mlp", rng, 1)[0])
    step(x, y)
    buffers = {id(p): optimizer.state[p]["momentum_buffer"].numpy().copy() for p in model.parameters()}
    graph = graphc.trace(step, x, y)
    assert [n.op for n in graph.nodes()].count("matmul") == 8
    for p in model.parameters():
        np.testing.assert_array_equal(optimizer.state[p]["momentum_buffer"].numpy(), buffers[id(p)])


def test_batchnorm_dropout_adam_compiled_like_lazy(rng):
    """Buffers updated in place (running statistics), dropout's random numbers and Adam's step
    counter all live outside the traced function; the compiled steps match the lazy ones."""
    data = [(rng.standard_normal((5, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(4)]
    results = []
    for compiled in (False, True):
        graphc.manual_seed(11)
        # no conv bias: BatchNorm removes it, so its exact gradient is 0 and Adam would turn the
        # float32 rounding noise of two different programs into updates of size lr
        model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                              nn.Dropout(0.3), nn.Linear(4 * 6 * 6, 3))
        optimizer = optim.Adam(model.parameters(), lr=0.01)
        step = train_step(model, optimizer)
        runner = graphc.compile(step) if compiled else step
        losses = [runner(graphc.tensor(x), graphc.tensor(y)).item() for x, y in data]
        model.eval()
        with graphc.no_grad():
            evaluated = (graphc.compile(model) if compiled else model)(graphc.tensor(data[0][0])).numpy().copy()
        results.append((losses, model[1].running_mean.numpy().copy(), model[1].running_var.numpy().copy(),
                        evaluated))
    (lazy_losses, lazy_mean, lazy_var, lazy_eval), (losses, mean, var, evaluated) = results
    np.testing.assert_allclose(losses, lazy_losses, rtol=1e-5)
    np.testing.assert_allclose(mean, lazy_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, lazy_var, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(evaluated, lazy_eval, rtol=1e-4, atol=1e-5)
