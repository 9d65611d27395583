"""Differential test: random graphs compiled by the C backend against the reference interpreter.

A hypothesis program draws a chain of ops (elementwise with broadcasting, views: permute, strided
slices, expand, reshape; reductions over random axes with and without keepdim; matmul; where;
casts), optionally differentiated, builds it with the Tensor API, and runs the gathered graph both
ways. CI runs a bounded number of programs.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import graphc  # noqa: E402
from graphc import interpreter  # noqa: E402
from graphc.backends.c import CompiledGraph  # noqa: E402
from graphc.lazy import build_graph  # noqa: E402

UNARY = ["tanh", "exp_small", "neg", "abs", "sigmoid", "relu", "square", "sqrt_abs"]
BINARY = ["add", "sub", "mul", "maximum", "div_safe"]


def apply_unary(name, t):
    return {"tanh": lambda: t.tanh(), "exp_small": lambda: (t * 0.25).exp(), "neg": lambda: -t,
            "abs": lambda: t.abs(), "sigmoid": lambda: t.sigmoid(), "relu": lambda: t.relu(),
            "square": lambda: t * t, "sqrt_abs": lambda: (t.abs() + 1).sqrt()}[name]()


def apply_binary(name, a, b):
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
            "maximum": lambda: graphc.maximum(a, b), "div_safe": lambda: a / (b * b + 1)}[name]()


@st.composite
def programs(draw):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    steps = draw(st.lists(st.tuples(
        st.sampled_from(["unary", "binary", "permute", "slice", "reduce", "expand_add", "reshape",
                         "matmul", "where", "cast"]),
        st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=7))
    differentiate = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 31 - 1))
    return shape, steps, differentiate, seed


def build(shape, steps, seed):
    rng = np.random.default_rng(seed)
    x = graphc.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    t = x
    for kind, a, b in steps:
        if kind == "unary":
            t = apply_unary(UNARY[a % len(UNARY)], t)
        elif kind == "binary":
            other = graphc.tensor(rng.standard_normal(t.shape[-1:] if t.ndim else ()).astype(np.float32))
            t = apply_binary(BINARY[a % len(BINARY)], t, other)
        elif kind == "permute" and t.ndim >= 2:
            dims = list(np.random.default_rng(a).permutation(t.ndim))
            t = t.permute(*dims)
        elif kind == "slice" and t.ndim >= 1 and t.shape[0] > 1:
            step = 1 + a % 2
            t = t[a % t.shape[0]::step] if (a % t.shape[0]) < t.shape[0] else t
        elif kind == "reduce" and t.ndim >= 1:
            dim = a % t.ndim
            keep = bool(b % 2)
            t = [t.sum, t.amax, t.mean][b % 3](dim, keepdim=keep) if b % 3 != 1 else t.amax(dim, keepdim=keep)
        elif kind == "expand_add" and t.ndim >= 1:
            t = t.unsqueeze(0).expand(2, *t.shape) + 1.0
        elif kind == "reshape" and t.numel() > 0:
            t = t.reshape(-1)
        elif kind == "matmul" and t.ndim >= 1:
            w = graphc.tensor(rng.standard_normal((t.shape[-1], 1 + a % 4)).astype(np.float32))
            t = t @ w
        elif kind == "where" and t.ndim >= 0:
            t = graphc.where(t > 0.1, t, t * 0.5)
        elif kind == "cast":
            t = t.double().float()
        if t.numel() > 4096 or t.ndim > 4:
            break
    return x, t


@settings(max_examples=int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_compiled_graphs_match_the_interpreter(program):
    shape, steps, differentiate, seed = program
    x, out = build(shape, steps, seed)
    outputs = [out._node]
    if differentiate and out.requires_grad:
        (grad,) = graphc.autograd.grad(out.sum(), x, allow_unused=True)
        if grad is not None:
            outputs.append(grad._node)
    gathered = build_graph(outputs)
    expected = interpreter.evaluate(gathered.graph, gathered.bindings)
    compiled = CompiledGraph(gathered.graph)(gathered.bindings)
    for got, want in zip(compiled, expected):
        want = np.asarray(want, dtype=np.float64)
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale,
                                   err_msg=f"steps={steps} shape={shape}")
