"""graphc.compile replays only what the Python would compute: what it reads from outside its
arguments is guarded (closures, globals, helper functions' globals, module and object attributes,
captured tensors), arguments are bound by name, and calls from several threads or a forked child
each get their own results. Each test compares several calls, with fresh inputs, against a NumPy
reference or the same function run uncompiled."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.errors import RetraceError

SCALE = 2.0


def scaled(x):
    return x * SCALE


def fresh(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_a_global_read_by_a_helper_function_is_guarded(rng):
    global SCALE

    @graphc.compile
    def step(x):
        return scaled(x).sum()

    try:
        for value in (2.0, 2.0, 5.0, 5.0, -1.5):
            SCALE = value
            x = fresh(rng, 6)
            np.testing.assert_allclose(step(graphc.tensor(x)).item(), (x * value).sum(), rtol=1e-5)
    finally:
        SCALE = 2.0
    reasons = [h["reason"] for h in step.stats()["history"]]
    assert any("global 'SCALE'" in r and "5.0" in r for r in reasons), reasons
    assert step.stats()["traces"] == 3 and sum(step.stats()["calls"]) == 5


def test_an_int_and_a_float_of_equal_value_are_different_guards():
    # x * 2 keeps an int tensor's dtype, x * 2.0 makes it float: 2 == 2.0 must not replay
    factor = 2

    @graphc.compile
    def step(x):
        return x * factor

    x = graphc.tensor([1, 2, 3])
    assert step(x).dtype == graphc.int64
    factor = 2.0
    out = step(x)
    assert out.dtype == graphc.float32
    np.testing.assert_array_equal(out.numpy(), [2.0, 4.0, 6.0])


def test_module_attribute_changed_between_calls_is_guarded(rng):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.temperature = 1.0

        def forward(self, x):
            return self.linear(x) / self.temperature

    model = Scaled()
    step = graphc.compile(model)
    with graphc.no_grad():   # inference: compiled (with grad, the result's history runs it uncompiled)
        for temperature in (1.0, 1.0, 0.5, 0.5, 3.0):
            model.temperature = temperature
            x = fresh(rng, 2, 4)
            w, b = model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()
            np.testing.assert_allclose(step(graphc.tensor(x)).detach().numpy(), (x @ w.T + b) / temperature,
                                       rtol=1e-5, atol=1e-6)
    assert step.stats()["traces"] == 3 and not any(h.get("uncompiled") for h in step.stats()["history"])


def test_list_of_captured_tensors_rebound_and_mutated(rng):
    weights = [graphc.tensor(fresh(rng, 3)), graphc.tensor(fresh(rng, 3))]

    @graphc.compile
    def step(x):
        total = x * 0
        for w in weights:
            total = total + x * w
        return total

    for call in range(5):
        if call == 2:
            weights[1] = graphc.tensor(fresh(rng, 3))      # the list's contents change
        if call == 4:
            weights.append(graphc.tensor(fresh(rng, 3)))   # and its length
        x = fresh(rng, 3)
        want = sum(x * w.numpy() for w in weights)
        np.testing.assert_allclose(step(graphc.tensor(x)).detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_keyword_arguments_bind_by_name_whatever_their_order(rng):
    @graphc.compile
    def step(a, b):
        return a * 2 - b

    for call in range(4):
        a, b = fresh(rng, 3), fresh(rng, 3)
        kwargs = {"a": graphc.tensor(a), "b": graphc.tensor(b)}
        if call % 2:
            kwargs = {"b": kwargs["b"], "a": kwargs["a"]}
        np.testing.assert_allclose(step(**kwargs).numpy(), a * 2 - b, rtol=1e-6)


def test_the_same_tensor_twice_is_not_replayed_for_two_tensors(rng):
    @graphc.compile
    def step(a, b):
        a.add_(1.0)
        return a * b

    for call in range(4):
        a, b = fresh(rng, 3), fresh(rng, 3)
        if call % 2 == 0:
            t = graphc.tensor(a)
            np.testing.assert_allclose(step(t, t).numpy(), (a + 1) * (a + 1), rtol=1e-6)
        else:
            np.testing.assert_allclose(step(graphc.tensor(a), graphc.tensor(b)).numpy(), (a + 1) * b, rtol=1e-6)


def test_argument_grad_returned_is_the_argument_grad(rng):
    @graphc.compile
    def step(x, w):
        loss = (x * w).sum()
        loss.backward()
        return loss, x.grad

    for _ in range(4):
        x_value, w_value = fresh(rng, 5), fresh(rng, 5)
        x = graphc.tensor(x_value, requires_grad=True)
        w = graphc.tensor(w_value, requires_grad=True)
        loss, grad = step(x, w)
        np.testing.assert_allclose(loss.item(), (x_value * w_value).sum(), rtol=1e-5)
        assert grad is x.grad
        np.testing.assert_allclose(x.grad.numpy(), w_value, rtol=1e-6)
        np.testing.assert_allclose(w.grad.numpy(), x_value, rtol=1e-6)


def test_argument_grad_accumulates_when_the_same_tensor_is_passed_again(rng):
    w_value = fresh(rng, 4)
    w = graphc.tensor(w_value, requires_grad=True)

    @graphc.compile
    def step(w, x):
        (w * x).sum().backward()

    total = np.zeros(4)
    for _ in range(5):
        x = fresh(rng, 4)
        total += x
        step(w, graphc.tensor(x))
        np.testing.assert_allclose(w.grad.numpy(), total, rtol=1e-5, atol=1e-6)
    assert sum(step.stats()["calls"]) >= 3   # replayed, not traced each call


def test_strict_mode_names_the_changed_closure_value():
    threshold = 0.5

    @graphc.compile(strict=True)
    def step(x):
        return x.clamp(max=threshold)

    step(graphc.ones(3))
    threshold = 0.25
    with pytest.raises(RetraceError) as error:
        step(graphc.ones(3))
    assert "closure variable 'threshold'" in str(error.value)
    assert "0.5" in str(error.value) and "0.25" in str(error.value)


def test_four_threads_calling_one_compiled_function_and_lazy_work(rng):
    model = nn.Linear(6, 4)
    weight = model.weight.detach().numpy().astype(np.float64)
    bias = model.bias.detach().numpy().astype(np.float64)
    step = graphc.compile(lambda x: model(x).tanh())
    inputs = [[fresh(np.random.default_rng(1000 * k + i), 3, 6) for i in range(60)] for k in range(4)]
    wrong = []

    @graphc.no_grad()   # (grad mode is per thread, as in PyTorch)
    def worker(k):
        for i, x in enumerate(inputs[k]):
            got = step(graphc.tensor(x)).detach().numpy()
            lazy = (graphc.tensor(x) * (k + 1)).sum(dim=1).numpy()
            if not np.allclose(got, np.tanh(x @ weight.T + bias), rtol=1e-5, atol=1e-5):
                wrong.append(("compiled", k, i))
            if not np.allclose(lazy, (x.astype(np.float64) * (k + 1)).sum(1), rtol=1e-5, atol=1e-5):
                wrong.append(("lazy", k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert sum(step.stats()["calls"]) >= 200 and not any(h.get("uncompiled") for h in step.stats()["history"])


def test_a_trace_in_one_thread_does_not_record_another_threads_ops(rng):
    started, release = threading.Event(), threading.Event()
    seen = {}

    def slow(x):
        started.set()
        release.wait(10)   # another thread computes while this one traces
        return x + 1

    step = graphc.compile(slow)
    tracer = threading.Thread(target=lambda: seen.setdefault("traced", step(graphc.ones(3)).numpy()))
    tracer.start()
    started.wait(10)
    # ops of this thread are not recorded into the other thread's trace (they would fail there)
    value = graphc.tensor([1.0, 2.0]) * 3
    release.set()
    tracer.join()
    np.testing.assert_array_equal(value.numpy(), [3.0, 6.0])
    np.testing.assert_array_equal(seen["traced"], [2.0, 2.0, 2.0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_compiling_works_in_parent_and_child(rng):
    model = nn.Linear(32, 8).requires_grad_(False)
    step = graphc.compile(lambda x: model(x).relu().sum(dim=0))
    x = fresh(rng, 16, 32)
    want = np.maximum(x @ model.weight.detach().numpy().T + model.bias.detach().numpy(), 0).sum(0)
    for _ in range(3):
        np.testing.assert_allclose(step(graphc.tensor(x)).detach().numpy(), want, rtol=1e-5, atol=1e-5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: the compiled function, lazy work and a new compiled graph
        try:
            ok = np.allclose(step(graphc.tensor(x)).detach().numpy(), want, rtol=1e-5, atol=1e-5)
            ok &= np.allclose((graphc.tensor(x) @ graphc.tensor(x).T).numpy(), x @ x.T, rtol=1e-4, atol=1e-4)
            os.write(write, b"ok" if ok else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 16)
    os.close(read)
    assert status == 0 and answer == b"ok"
    np.testing.assert_allclose(step(graphc.tensor(x)).detach().numpy(), want, rtol=1e-5, atol=1e-5)


def test_a_gradient_held_from_an_earlier_call_keeps_its_value(rng):
    model = nn.Linear(3, 2)
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.1)

    @graphc.compile
    def step(x):
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()

    held = []
    for _ in range(5):
        x = fresh(rng, 4, 3)
        step(graphc.tensor(x))
        held.append((model.weight.grad, np.stack([x.sum(0)] * 2)))   # as PyTorch: each step a new .grad
    for grad, want in held:
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-5, atol=1e-6)
    assert len({id(grad) for grad, _ in held}) == 5
    arrays = set()
    for _ in range(4):   # nobody holds the old gradient: its memory is reused, no allocation
        step(graphc.tensor(fresh(rng, 4, 3)))
        arrays.add(id(model.weight.grad._storage.array))
    assert len(arrays) == 1


def test_compiled_forward_with_backward_outside_runs_as_the_python_would(rng):
    """`graphc.compile(model)` then `loss.backward()` outside (torch.compile's common use): a
    replay's results carry no autograd history, so these calls run uncompiled, with a warning,
    and give what PyTorch gives: gradients, BatchNorm running statistics, outputs."""
    graphc.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    reference = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    reference.load_state_dict(model.state_dict())
    compiled = graphc.compile(model)
    with pytest.warns(RuntimeWarning, match="runs uncompiled .* requires grad"):
        for _ in range(4):
            x = fresh(rng, 5, 3)
            out = compiled(graphc.tensor(x))
            out.square().sum().backward()
            want = reference(graphc.tensor(x))
            want.square().sum().backward()
            np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
            for p, q in zip(model.parameters(), reference.parameters()):
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(model[1].running_mean.numpy(), reference[1].running_mean.numpy(),
                                       rtol=1e-6, atol=1e-7)
            assert out.grad_fn is not None
    assert all(h.get("uncompiled") for h in compiled.stats()["history"])
    with graphc.no_grad():   # inference: no history to keep, so it compiles and replays
        for _ in range(3):
            compiled(graphc.tensor(fresh(rng, 5, 3)))
    assert max(compiled.stats()["calls"]) >= 2


def test_backward_through_a_non_leaf_argument_reaches_the_outer_leaf(rng):
    w_value = fresh(rng, 3)
    w = graphc.tensor(w_value, requires_grad=True)

    @graphc.compile
    def step(h):
        (h * h).sum().backward()

    with pytest.warns(RuntimeWarning, match="not a leaf"):
        for call in range(1, 4):
            step(w * 3)
            np.testing.assert_allclose(w.grad.numpy(), call * 18 * w_value, rtol=1e-5)


def test_trace_of_a_forward_whose_result_keeps_history_returns_its_graph(rng):
    model = nn.Linear(4, 3)
    x = graphc.tensor(fresh(rng, 2, 4))
    graph = graphc.trace(model, x)
    assert [graph.node(i).op for i in graph.outputs] and model.weight.grad is None
    assert any(graph.node(i).op == "matmul" for i in graph.nx.nodes)


def test_results_simplify_merges_are_each_right_on_every_replay(rng):
    @graphc.compile
    def step(x):
        out = x.sum()
        loss = out.sum()     # the same value as out: one program output for two results
        loss.backward()
        return loss, out

    kept = []
    for _ in range(5):
        value = fresh(rng, 1)
        x = graphc.tensor(value, requires_grad=True)
        loss, out = step(x)
        kept.append((loss, out, float(value[0])))
        np.testing.assert_array_equal(x.grad.numpy(), [1.0])
    for loss, out, want in kept:   # every call's results, read after all calls
        assert loss.item() == pytest.approx(want) and out.item() == pytest.approx(want)


def test_a_gradient_equal_to_a_tensor_updated_in_place_keeps_the_old_value(rng):
    """x.grad of `x * w` is w itself, while the program updates w in place over its own memory:
    x.grad must hold w's value from before the update, as the Python run leaves it."""
    w_value = fresh(rng, 3)
    w = graphc.tensor(w_value, requires_grad=True)

    @graphc.compile
    def step(x):
        (x * w).sum().backward()
        with graphc.no_grad():
            w.sub_(0.1 * w.grad)
        w.grad = None

    current = w_value.astype(np.float64)
    for _ in range(5):
        x_value = fresh(rng, 3)
        x = graphc.tensor(x_value, requires_grad=True)
        step(x)
        np.testing.assert_allclose(x.grad.numpy(), current, rtol=1e-6)
        current = current - 0.1 * x_value
        np.testing.assert_allclose(w.detach().numpy(), current, rtol=1e-5, atol=1e-6)
    assert sum(step.stats()["calls"]) >= 3


def test_returned_state_tensors_are_the_tensors_themselves(rng):
    """`return w.grad` (an existing gradient zeroed in place), `return w` and returning an argument
    give those very tensors, as the Python does, with this call's values."""
    w = graphc.tensor(fresh(rng, 2), requires_grad=True)
    model = nn.Linear(2, 1)

    @graphc.compile
    def step(x):
        if w.grad is not None:
            w.grad.zero_()
        model(x * w).sum().backward()
        return w.grad, w, x, model.weight

    for call in range(5):
        if call == 2:
            w.requires_grad_(False)   # from here no gradient: w.grad stays zeroed
        x = graphc.tensor(fresh(rng, 2))
        grad, same_w, same_x, weight = step(x)
        assert grad is w.grad and same_w is w and same_x is x and weight is model.weight
        want = np.zeros(2) if call >= 2 else x.numpy() * model.weight.detach().numpy()[0]
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-5, atol=1e-7)
