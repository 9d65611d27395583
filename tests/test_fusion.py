"""Fusion: count the kernels the C backend makes, and check their results against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.backends.c import CompiledGraph, compile_pipeline
from graphc.schedule import build_graph


def compiled(*tensors):
    build = build_graph([t._node for t in tensors])
    program = CompiledGraph(build.graph)
    return program, program(build.bindings)


def kinds(program):
    return [k.kind for k in program.plan.kernels]


def test_elementwise_chain_with_transcendentals_is_one_kernel(rng):
    values = rng.standard_normal(1000).astype(np.float32)
    x = graphc.tensor(values)
    a, b, c = 1.5, 0.25, -0.75
    y = (x * a + b).tanh() * 0.5 + x.sigmoid() * c
    program, [result] = compiled(y)
    assert kinds(program) == ["pointwise"]
    expected = np.tanh(values * a + b) * 0.5 + c / (1 + np.exp(-values.astype(np.float64)))
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_views_fuse_without_copies(rng):
    values = rng.standard_normal((6, 8)).astype(np.float32)
    x = graphc.tensor(values)
    y = x.t()[::2, 1:5] * 2 + x[:4, :3].sum()
    program, [result] = compiled(y)
    assert len(program.plan.kernels) == 2  # the full sum, then one loop with the views inlined
    expected = values.T[::2, 1:5] * 2 + values[:4, :3].sum()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_row_softmax_is_one_kernel(op, rng):
    values = rng.standard_normal((7, 33)).astype(np.float32)
    y = getattr(graphc.tensor(values), op)(dim=1)
    program, [result] = compiled(y)
    assert kinds(program) == ["pointwise"]
    shifted = values.astype(np.float64) - values.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = np.exp(log_probabilities) if op == "softmax" else log_probabilities
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_linear_relu_is_gemm_with_fused_epilogue(rng):
    x_values = rng.standard_normal((16, 12)).astype(np.float32)
    w_values = rng.standard_normal((5, 12)).astype(np.float32)
    b_values = rng.standard_normal(5).astype(np.float32)
    x, w, b = graphc.tensor(x_values), graphc.tensor(w_values), graphc.tensor(b_values)
    y = (x @ w.T + b).relu()
    program, [result] = compiled(y)
    assert kinds(program) == ["matmul"]
    [kernel] = program.plan.kernels
    assert kernel.contraction is not None  # bias and relu are in the GEMM's kernel
    assert "sgemm" in program.source and program.source.count("static void kernel_") == 1
    np.testing.assert_allclose(result, np.maximum(x_values @ w_values.T + b_values, 0), rtol=1e-5, atol=1e-5)


def test_conv_bias_relu_is_one_kernel(rng):
    x_values = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w_values = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b_values = rng.standard_normal(4).astype(np.float32)
    from graphc.tensor_ops import node, wrap
    from graphc.source_location import user_location
    x, w, b = graphc.tensor(x_values), graphc.tensor(w_values), graphc.tensor(b_values)
    conv = wrap(node("conv2d", [x._node, w._node], user_location(), stride=(1, 1), padding=(1, 1),
                     dilation=(1, 1), groups=1))
    y = (conv + b.reshape(1, 4, 1, 1)).relu()
    program, [result] = compiled(y)
    assert kinds(program) == ["conv2d"]
    from graphc.ops.contraction import conv2d_reference
    expected = conv2d_reference(x_values.astype(np.float64), w_values.astype(np.float64),
                                dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1))
    np.testing.assert_allclose(result, np.maximum(expected + b_values.reshape(1, 4, 1, 1), 0),
                               rtol=1e-4, atol=1e-4)


def test_shared_expensive_value_is_materialized_once(rng):
    values = rng.standard_normal((5, 6)).astype(np.float32)
    x = graphc.tensor(values)
    shared = x.exp()
    first, second = shared.sum(dim=0), shared.sum(dim=1)
    program, results = compiled(first, second)
    assert program.plan.graph.node(program.plan.kernels[0].root).op == "exp"
    np.testing.assert_allclose(results[0], np.exp(values).sum(0), rtol=1e-5)
    np.testing.assert_allclose(results[1], np.exp(values).sum(1), rtol=1e-5)


def test_generated_source_names_the_user_lines():
    x = graphc.randn(4, 4)
    y = (x * 2).tanh()
    _, _, _, source = compile_pipeline(build_graph([y._node]).graph)
    assert "test_fusion.py:" in source
    assert "graphc_entry" in source


def test_memory_plan_reuses_dead_buffers(rng):
    values = (rng.standard_normal((64, 64)) / 8).astype(np.float32)  # keeps products near 1
    x = graphc.tensor(values)
    h = x
    for _ in range(4):
        h = (h @ x).tanh() @ x  # each product needs the previous one only
    program, [result] = compiled(h)
    temps = [b for b in program.program_ir.buffers if b.role == "temp"]
    total = sum(b.size for b in temps)
    assert program.layout.arena_bytes < total  # some temporaries share memory
    expected = values.astype(np.float64)
    for _ in range(4):
        expected = np.tanh(expected @ values) @ values
    # eight float32 products of length 64: errors of a few ulps of the largest value each
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_user_strings_never_reach_generated_code_outside_comments(rng):
    from graphc import dtypes
    from graphc.ir import Graph
    graph = Graph()
    x = graph.placeholder("x", (5,), dtypes.float32, where="evil*/ int main(){}/*.py:1")
    y = graph.call("exp", [x], where="evil*/ int main(){}/*.py:2")
    graph.output(y)
    program = CompiledGraph(graph)
    values = rng.standard_normal(5).astype(np.float32)
    [result] = program({"x": values})
    np.testing.assert_allclose(result, np.exp(values), rtol=1e-6)
    assert "int main" not in program.source.replace("* / int main", "")
