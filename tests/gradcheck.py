"""Central finite differences in float64: the reference every gradient test compares against."""
from __future__ import annotations

import numpy as np

import graphc


def numeric_gradient(function, arrays, index, epsilon=1e-6):
    """d sum(function(*arrays) * weights)/d arrays[index], by central differences.

    `function` maps float64 NumPy arrays to a float64 NumPy array (the caller fixes the weights).
    """
    base = [a.copy() for a in arrays]
    target = base[index]
    gradient = np.zeros_like(target)
    flat = target.reshape(-1)
    for position in range(flat.size):
        original = flat[position]
        flat[position] = original + epsilon
        plus = function(*base)
        flat[position] = original - epsilon
        minus = function(*base)
        flat[position] = original
        gradient.reshape(-1)[position] = (plus - minus) / (2 * epsilon)
    return gradient


def check_gradients(function, arrays, rng, tolerance=1e-6, wrt=None):
    """Compare graphc's backward() with finite differences for `function(*tensors)`.

    Non-scalar outputs are reduced with fixed random weights, so every output element matters.
    Returns the analytic gradients.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    wrt = range(len(arrays)) if wrt is None else wrt
    probe = function(*[graphc.tensor(a) for a in arrays])
    weights = rng.standard_normal(tuple(probe.shape))

    def scalar_value(*values):
        result = function(*[graphc.tensor(v) for v in values])
        return float(np.sum(np.asarray(result.detach().numpy(), dtype=np.float64) * weights))

    tensors = [graphc.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    output = function(*tensors)
    (output * graphc.tensor(weights)).sum().backward()
    analytic = []
    for i in wrt:
        expected = numeric_gradient(scalar_value, arrays, i)
        grad = tensors[i].grad  # None when the output does not depend on the input (PyTorch too)
        got = grad.numpy() if grad is not None else np.zeros_like(arrays[i])
        assert got.shape == expected.shape
        error = np.max(np.abs(got - expected)) / max(1.0, np.max(np.abs(expected)))
        assert error < tolerance, f"input {i}: relative error {error:.2e}\nanalytic\n{got}\nnumeric\n{expected}"
        analytic.append(got)
    return analytic
