"""Check modes: GRAPHC_CHECK / graphc.compile(check=True) and anomaly detection (NaN/Inf)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc
from graphc import check, nn
from graphc.errors import AnomalyError, CheckFailure
from graphc.ops import table
from helpers import line_of

# check mode, anomaly detection and sanitizers are the C backend's: their graphs run there
pytestmark = pytest.mark.usefixtures("c_backend")

HERE = os.path.basename(__file__)



@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A fresh build cache, so a patched op table is compiled rather than read back from disk."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def broken_tanh(monkeypatch, private_cache):
    """The C backend's tanh made wrong by 25% of its argument; the interpreter's stays right."""
    wrong = dataclasses.replace(table.OPS["tanh"], c="(tanh({0}) + ({0}) * 0.25f)")
    monkeypatch.setitem(table.OPS, "tanh", wrong)


def make_step(model, optimizer):
    def step(x, y):
        optimizer.zero_grad()
        hidden = model[0](x)
        out = model[1](hidden.tanh())  # TANH-LINE
        loss = ((out - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss
    return step


def model_and_data(rng):
    model = nn.Sequential(nn.Linear(6, 9), nn.Linear(9, 2))
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = graphc.tensor(rng.standard_normal((13, 6)).astype(np.float32))
    y = graphc.tensor(rng.standard_normal((13, 2)).astype(np.float32))
    return model, optimizer, x, y


def test_check_mode_agrees_on_a_correct_train_step(rng):
    """check=True runs kernel by kernel; the numbers are those of the ordinary compiled step."""
    torch_like = model_and_data(rng)
    model, optimizer, x, y = torch_like
    reference_model = nn.Sequential(nn.Linear(6, 9), nn.Linear(9, 2))
    reference_model.load_state_dict(model.state_dict())
    reference_optimizer = graphc.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    checked = graphc.compile(make_step(model, optimizer), check=True)
    plain = graphc.compile(make_step(reference_model, reference_optimizer))
    for _ in range(3):
        a, b = checked(x, y).item(), plain(x, y).item()
        assert a == pytest.approx(b, rel=1e-5)
    for p, q in zip(model.parameters(), reference_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert checked.variants[-1].program._stepper is not None  # it really ran kernel by kernel


def test_check_mode_names_the_divergent_kernel_node_and_line(rng, broken_tanh):
    model, optimizer, x, y = model_and_data(rng)
    step = graphc.compile(make_step(model, optimizer), check=True)
    with pytest.raises(CheckFailure) as caught:
        for _ in range(3):  # the first call may be traced on the interpreter
            step(x, y)
    message = str(caught.value)
    assert "GRAPHC_CHECK: kernel_" in message and "differs from the reference interpreter" in message
    assert "first divergent node: %" in message
    blamed = message.split("first divergent node:")[1].splitlines()[0]
    assert "tanh" in blamed and f"{HERE}:{line_of(__file__, 'TANH-LINE')}" in blamed
    assert "compiled" in message and "reference" in message


def test_check_mode_from_the_environment_in_lazy_mode(rng, broken_tanh, monkeypatch):
    monkeypatch.setattr(check, "COMPARE_FROM_ENVIRONMENT", True)
    x = graphc.tensor(rng.standard_normal((4, 129)).astype(np.float32))
    with pytest.raises(CheckFailure, match=r"tanh at .*" + HERE):
        (x.tanh() * 3 + 1).numpy()  # the graph's one kernel fuses mul and add around tanh


def test_no_check_without_the_switch(rng, broken_tanh):
    """The patched tanh really is wrong: without a check mode the compiled result silently differs."""
    data = rng.standard_normal((4, 7)).astype(np.float32)
    result = graphc.tensor(data).tanh().numpy()
    np.testing.assert_allclose(result, np.tanh(data) + data * 0.25, rtol=1e-5, atol=1e-6)


def test_difference_tolerates_rounding_and_reports_index():
    reference = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    assert check.difference(reference * (1 + 1e-6), reference) is None
    wrong = reference.copy()
    wrong[2, 1] += 0.5
    report = check.difference(wrong, reference)
    assert "1 of 12 values differ" in report and "(2, 1)" in report
    assert check.difference(np.array([1, 2, 3]), np.array([1, 2, 4])).startswith("1 of 3 values differ")
    nan = np.array([np.nan, 1.0])
    assert check.difference(nan, nan) is None
    assert "differ" in check.difference(np.array([0.0, 1.0]), nan)


# ---- anomaly detection -------------------------------------------------------------------------
def test_anomaly_forward_names_op_and_line(rng):
    data = -np.abs(rng.standard_normal(5)).astype(np.float32) - 0.5
    x = graphc.tensor(data)
    with graphc.autograd.detect_anomaly():
        with pytest.raises(AnomalyError) as caught:
            (x * 2).sqrt().sum().item()  # SQRT-FORWARD
    message = str(caught.value)
    assert "sqrt produced nan (5 of 5 values) from finite inputs in the forward pass" in message
    assert f"{HERE}:{line_of(__file__, 'SQRT-FORWARD')}" in message


def test_anomaly_backward_names_the_forward_line(rng):
    """sqrt at 0 is finite forward; its gradient 1/(2 sqrt(0)) is infinite."""
    data = np.abs(rng.standard_normal(6)).astype(np.float32) + 0.1
    data[3] = 0.0
    x = graphc.tensor(data, requires_grad=True)
    graphc.autograd.set_detect_anomaly(True)
    try:
        loss = x.sqrt().sum()  # SQRT-BACKWARD
        loss.backward()
        with pytest.raises(AnomalyError) as caught:
            x.grad.numpy()
    finally:
        graphc.autograd.set_detect_anomaly(False)
    message = str(caught.value)
    assert "in the backward pass" in message and "inf" in message
    assert f"{HERE}:{line_of(__file__, 'SQRT-BACKWARD')} (backward of sqrt)" in message
    assert not graphc.autograd.is_anomaly_enabled()


def test_anomaly_inside_a_compiled_step(rng):
    # (no requires_grad: a result with autograd history would run uncompiled, see graphc.compile)
    weight = graphc.tensor(rng.standard_normal((4, 3)).astype(np.float32))

    @graphc.compile
    def step(x):
        return (x @ weight).log().sum()  # LOG-COMPILED

    x = graphc.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    plain = step(x).item()  # logs of negative products: nan, silently, as in PyTorch
    assert np.isnan(plain)
    with graphc.autograd.detect_anomaly():
        with pytest.raises(AnomalyError, match=rf"log produced nan .*\n  at \S*{HERE}:{line_of(__file__, 'LOG-COMPILED')}\n"):
            for _ in range(2):
                step(x).item()


def test_anomaly_on_the_interpreter(rng):
    from graphc import backend
    previous = backend.get_default()
    backend.set_default("numpy")
    try:
        x = graphc.tensor(rng.uniform(1, 2, 8).astype(np.float32))
        with graphc.autograd.detect_anomaly():
            with pytest.raises(AnomalyError, match=rf"%\d+ div produced inf"):
                (x / (x - x)).numpy()  # DIV-INTERPRETED
    finally:
        backend.set_default(previous)


def test_nan_already_in_the_input_is_not_blamed_on_an_op(rng):
    data = rng.standard_normal(7).astype(np.float32)
    data[2] = np.nan
    with graphc.autograd.detect_anomaly():
        result = (graphc.tensor(data) * 2 + 1).numpy()
    np.testing.assert_allclose(result, data * 2 + 1)
    assert not graphc.autograd.is_anomaly_enabled()


def test_graphc_check_nan_environment_variable(tmp_path):
    script = tmp_path / "nan_script.py"
    script.write_text(textwrap.dedent("""
        import graphc
        x = graphc.tensor([4.0, 1.0, 0.0], requires_grad=True)
        y = (x - 4).log()
        print(y.sum().item())
    """))
    environment = dict(os.environ, GRAPHC_CHECK_NAN="1")
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment,
                               cwd=tmp_path, timeout=120)
    assert completed.returncode != 0
    assert "AnomalyError: anomaly detection: %" in completed.stderr
    assert "log produced nan and inf" in completed.stderr and "nan_script.py:4" in completed.stderr
