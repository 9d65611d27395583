"""Helpers for the nn / optim / data tests: a NumPy-backend fixture and one finite-difference
gradient check for functions and modules (float64, central differences)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphc
from graphc import backend

# the engine the nn/optim tests run on: the C backend, like the rest of the suite (their references
# are NumPy float64 re-implementations and finite differences); GRAPHC_NN_TEST_BACKEND=numpy
# runs them on the interpreter instead
TEST_BACKEND = os.environ.get("GRAPHC_NN_TEST_BACKEND", "c")


@pytest.fixture(autouse=False)
def reference_backend():
    previous = backend.get_default() if hasattr(backend, "get_default") else backend._default
    backend.set_default(TEST_BACKEND)
    try:
        yield
    finally:
        backend.set_default(previous)


def relative_error(got, expected) -> float:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(np.linalg.norm(expected), np.linalg.norm(got), 1e-30)
    return float(np.linalg.norm(got - expected) / scale)


def check_grads(function, arrays, rng, wrt=None, module=None, seed=None, tolerance=1e-6, epsilon=1e-6):
    """Compare backward() with central finite differences, in float64.

    function(*tensors) -> tensor. arrays: the inputs as NumPy arrays (integer ones are passed
    through and never differentiated). wrt: indices of the inputs to check (default: every
    floating one). module: also check the gradients of its parameters (it is converted to
    float64 first). seed: re-seed graphc before every evaluation (for dropout).
    A non-scalar output is reduced with fixed random weights. Returns the worst relative error.
    """
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in arrays]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    if module is not None:
        module.double()

    def run(requires_grad=False):
        if seed is not None:
            graphc.manual_seed(seed)
        tensors = [graphc.tensor(a, requires_grad=requires_grad and i in wrt) for i, a in enumerate(arrays)]
        return tensors, function(*tensors)

    tensors, output = run(requires_grad=True)
    weights = rng.standard_normal(tuple(output.shape))
    if module is not None:
        module.zero_grad()
    (output * graphc.tensor(weights)).sum().backward()

    def value() -> float:
        with graphc.no_grad():
            _, result = run()
        return float(np.sum(result.numpy().astype(np.float64) * weights))

    def numeric(target: np.ndarray) -> np.ndarray:
        flat = target.reshape(-1)
        gradient = np.zeros(flat.size)
        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + epsilon
            plus = value()
            flat[k] = original - epsilon
            minus = value()
            flat[k] = original
            gradient[k] = (plus - minus) / (2 * epsilon)
        return gradient.reshape(target.shape)

    checks = [(f"input {i}", tensors[i].grad, arrays[i]) for i in wrt]
    if module is not None:
        for name, param in module.named_parameters():
            # the NumPy view shares the parameter's memory: perturbing it perturbs the parameter
            checks.append((name, param.grad, param.detach().numpy()))
    worst = 0.0
    for name, grad, target in checks:
        expected = numeric(target)
        got = grad.numpy() if grad is not None else np.zeros_like(expected)
        assert got.shape == expected.shape, name
        error = relative_error(got, expected)
        assert error < tolerance, f"{name}: relative error {error:.2e}\nanalytic\n{got}\nnumeric\n{expected}"
        worst = max(worst, error)
    return worst
