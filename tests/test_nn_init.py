"""graphc.nn.init: PyTorch's gains and fans, and the distributions each initializer draws from
graphc's (seeded, counter-based) generator."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.nn import init
from nn_testing import reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")


def values(t):
    return t.detach().numpy().astype(np.float64)


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == 5.0 / 3
    assert init.calculate_gain("relu") == math.sqrt(2.0)
    assert init.calculate_gain("leaky_relu") == math.sqrt(2.0 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2.0 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)


def test_fans():
    assert init._calculate_fan_in_and_fan_out(graphc.empty(5, 3)) == (3, 5)
    assert init._calculate_fan_in_and_fan_out(graphc.empty(8, 4, 3, 2)) == (24, 48)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.kaiming_uniform_(graphc.empty(4))


@pytest.mark.parametrize("dtype", [graphc.float32, graphc.float64])
def test_uniform_and_normal(dtype):
    graphc.manual_seed(0)
    t = graphc.empty(100, 100, dtype=dtype)
    assert init.uniform_(t, -2.0, 3.0) is t
    v = values(t)
    assert t.dtype is dtype and v.min() >= -2.0 and v.max() < 3.0
    assert abs(v.mean() - 0.5) < 0.05 and abs(v.std() - 5 / math.sqrt(12)) < 0.05
    init.normal_(t, mean=1.0, std=0.5)
    v = values(t)
    assert abs(v.mean() - 1.0) < 0.02 and abs(v.std() - 0.5) < 0.02


def test_kaiming_and_xavier():
    graphc.manual_seed(1)
    w = graphc.empty(200, 50)
    init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 50)
    assert np.abs(values(w)).max() <= bound and np.abs(values(w)).max() > 0.95 * bound
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(values(w).std() - math.sqrt(2.0 / 200)) < 0.05 * math.sqrt(2.0 / 200)
    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / 250)
    assert np.abs(values(w)).max() <= bound and np.abs(values(w)).max() > 0.95 * bound
    init.xavier_normal_(w)
    assert abs(values(w).std() - math.sqrt(2.0 / 250)) < 0.05 * math.sqrt(2.0 / 250)


def test_constant_inits_and_seeding():
    t = graphc.empty(3, 4)
    np.testing.assert_array_equal(values(init.zeros_(t)), 0)
    np.testing.assert_array_equal(values(init.ones_(t)), 1)
    np.testing.assert_array_equal(values(init.constant_(t, 0.25)), 0.25)
    np.testing.assert_array_equal(values(init.eye_(t)), np.eye(3, 4))
    # in place on a parameter, outside autograd; a seed reproduces the draw
    p = nn.Parameter(graphc.empty(4, 4))
    graphc.manual_seed(5)
    init.kaiming_uniform_(p, a=math.sqrt(5))
    first = values(p)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    graphc.manual_seed(5)
    init.kaiming_uniform_(p, a=math.sqrt(5))
    np.testing.assert_array_equal(values(p), first)
    generator = graphc.Generator().manual_seed(5)
    init.normal_(p, generator=generator)
    again = graphc.Generator().manual_seed(5)
    q = nn.Parameter(graphc.empty(4, 4))
    init.normal_(q, generator=again)
    np.testing.assert_array_equal(values(p), values(q))
