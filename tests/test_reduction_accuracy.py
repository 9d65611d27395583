"""Accuracy of long floating-point reductions in generated code (DESIGN.md, Numerics).

Generated C adds a sum in blocks of a few hundred elements whose sums are combined pairwise, and
the CUDA template adds each thread's share with Kahan's compensation, so a float32 sum of 10^7
elements is as accurate as NumPy's pairwise sum or PyTorch's cascade sum. One long running sum
(what the code did before) gives 1005958.8 for ten million 0.1s instead of 1000000.015.

The yardstick is NumPy's own float32 result on the same data (its pairwise sum), computed here:
graphc's error against a float64 reference must stay within a small multiple of it (or of a few
float32 ulps where NumPy happens to be almost exact). Inputs are fresh random N(1, 1) samples (the
mean makes a running sum's error grow) and the constant 0.1 (no cancellation to hide it)."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

import graphc
import runtime
from codegen import render_program
from codegen.kernel_ir import Accumulate, Buffer, Const, Declare, Kernel, Load, Loop, Program, Store, Var
from graphc.backends.c import CompiledGraph
from graphc.schedule import build_graph

F = graphc.nn.functional
FACTOR = 4                 # graphc's error may be this many times NumPy's float32 error ...
FLOOR = 2.0 ** -21         # ... or this (4 float32 ulps of 1) where NumPy's error is smaller
SIZES = (10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7)


def gathered(function, *arrays):
    """The graph of `function`'s results on the arrays, with its bindings (one graph, one compile)."""
    results = function(*(graphc.from_numpy(a) for a in arrays))
    return build_graph([t._node for t in results])


def compiled(function, *arrays):
    """`function` on the arrays, run by the C backend: its results as arrays."""
    build = gathered(function, *arrays)
    return [np.asarray(out) for out in CompiledGraph(build.graph)(build.bindings)]


def relative_error(got, reference) -> float:
    """max |got - reference| / max |reference| (normwise, so a vector of tiny values is fair)."""
    got = np.asarray(got, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = float(np.max(np.abs(reference)))
    return float(np.max(np.abs(got - reference))) / (scale if scale else 1.0)


def softmax_reference(a, axis=-1):
    shifted = np.exp(a - a.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def sample(rng, data: str, shape) -> np.ndarray:
    if data == "constant":
        return np.full(shape, 0.1, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32) + np.float32(1.0)


NAMES = ("sum", "mean", "var", "softmax")


def full_reductions(*vectors):
    return [r for x in vectors for r in (x.sum(), x.mean(), x.var(), graphc.softmax(x, dim=0))]


def references(a):
    """(float64 reference, NumPy float32 result) per result of `full_reductions` on one vector."""
    wide = a.astype(np.float64)
    return [(wide.sum(), a.sum()), (wide.mean(), a.mean()), (wide.var(ddof=1), a.var(ddof=1)),
            (softmax_reference(wide, 0), softmax_reference(a, 0))]


def assert_accurate(label: str, got, reference, yardstick_result, yardstick: str = "NumPy float32") -> None:
    error = relative_error(got, reference)
    theirs = relative_error(yardstick_result, reference)
    allowed = max(FACTOR * theirs, FLOOR)
    assert error <= allowed, (f"{label}: relative error {error:.3g} against float64, {yardstick} has "
                              f"{theirs:.3g} (allowed {allowed:.3g})")


# ---- full reductions -----------------------------------------------------------------------------
@pytest.mark.parametrize("data", ["normal", "constant"])
def test_full_reductions_are_accurate(rng, data):
    """sum, mean, var and softmax of vectors of 10^3 ... 10^7 elements (one program for all)."""
    vectors = [sample(rng, data, (size,)) for size in SIZES]
    outputs = compiled(full_reductions, *vectors)
    for position, a in enumerate(vectors):
        results = outputs[len(NAMES) * position: len(NAMES) * (position + 1)]
        for name, got, (reference, numpy32) in zip(NAMES, results, references(a)):
            if name == "var" and data == "constant":
                # the variance of equal values is 0: only absolute errors mean anything
                assert abs(float(got)) <= 1e-12, f"var of {a.size} equal values: {float(got)}"
                continue
            assert_accurate(f"{name} of {a.size} {data} values", got, reference, numpy32)
    if data == "constant":   # the example: ten million float32 0.1s add up to 1000000.0149
        assert abs(float(outputs[-len(NAMES)]) - 1000000.0149) < 0.5   # one running sum gave 1005958.8


def test_float64_sums_are_blocked_too(rng):
    a = rng.standard_normal(10 ** 6) + 1.0
    [total] = compiled(lambda x: [x.sum()], a)
    exact = math.fsum(a.tolist())
    assert abs(float(total) - exact) <= 4 * max(abs(float(a.sum()) - exact), 2.0 ** -50 * abs(exact))


# ---- row reductions and what is built on sums ----------------------------------------------------
ROWS, LENGTH = 6, 1 << 17


def row_reductions(x, target):
    return (x.sum(1), x.mean(1), x.var(1), x.std(1), graphc.softmax(x, dim=1), F.log_softmax(x, dim=1),
            x.norm(dim=1), F.cross_entropy(x, target))


@pytest.mark.parametrize("data", ["normal", "constant"])
def test_row_reductions_are_accurate(rng, data):
    a = sample(rng, data, (ROWS, LENGTH))
    target = rng.integers(0, LENGTH, ROWS)
    outputs = compiled(row_reductions, a, target)

    def log_softmax(x):
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def cross_entropy(x):
        return -log_softmax(x)[np.arange(ROWS), target].mean()

    functions = {"sum": lambda x: x.sum(1), "mean": lambda x: x.mean(1), "var": lambda x: x.var(1, ddof=1),
                 "std": lambda x: x.std(1, ddof=1), "softmax": lambda x: softmax_reference(x, 1),
                 "log_softmax": log_softmax, "norm": lambda x: np.sqrt((x * x).sum(1)),
                 "cross_entropy": cross_entropy}
    wide = a.astype(np.float64)
    for (name, function), got in zip(functions.items(), outputs):
        if name in ("var", "std") and data == "constant":
            assert np.all(np.abs(got) <= 1e-6), f"{name} of constant rows: {got}"
            continue
        assert_accurate(f"row {name} of {data} rows of {LENGTH}", got, function(wide), function(a))


def test_torch_is_the_yardstick_too(rng):
    """Within a small multiple of PyTorch's float32 error too (its var accumulates in double, so
    sum, mean and softmax are compared)."""
    torch = pytest.importorskip("torch")
    for data in ("normal", "constant"):
        long, short = sample(rng, data, (10 ** 7,)), sample(rng, data, (10 ** 6,))
        total, mean, softmax = compiled(lambda x, y: [x.sum(), x.mean(), graphc.softmax(y, dim=0)], long, short)
        x, y = torch.from_numpy(long), torch.from_numpy(short)
        checks = [("sum", total, long.astype(np.float64).sum(), x.sum()),
                  ("mean", mean, long.astype(np.float64).mean(), x.mean()),
                  ("softmax", softmax, softmax_reference(short.astype(np.float64), 0), torch.softmax(y, 0))]
        for name, got, reference, theirs in checks:
            assert_accurate(f"{name} of {data} values", got, reference, theirs.numpy(), "PyTorch")


BLOCKED_CASES = [((1037,), (0,)), ((1000, 37), (0,)), ((37, 1000), (1,)), ((3, 5, 700), (0, 2)),
                 ((700, 3, 5), (0, 2)), ((6, 9, 100), (1, 2)), ((2, 3, 4, 300), (0, 1, 3)), ((513, 2), (0, 1)),
                 ((4, 1 << 17), (1,)), (((1 << 18) + 33,), (0,))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_sums_over_any_axes(rng, dtype):
    """Every way the nest of reduction loops gets cut into blocks (the blocked loop innermost or
    not, several axes, tails, transposed reads, parallel chunks) adds every element once."""
    arrays = [rng.standard_normal(shape).astype(dtype) for shape, _ in BLOCKED_CASES]

    def sums(*xs):
        results = []
        for x, (_, axes) in zip(xs, BLOCKED_CASES):
            results += [x.sum(axes), x.sum(axes, keepdim=True), x.mean(axes)]
            if x.ndim == 2:
                results.append(x.t().sum(axes))   # the same sums read through a transpose
        return results

    outputs = iter(compiled(sums, *arrays))
    tolerance = 1e-6 if dtype == "float32" else 1e-14
    for a, (shape, axes) in zip(arrays, BLOCKED_CASES):
        wide = a.astype(np.float64)
        magnitude = float(np.abs(wide).sum(axes).max())   # a lost or doubled element shows far above it
        count = math.prod(shape[i] for i in axes)
        expected = [(wide.sum(axes), magnitude), (wide.sum(axes, keepdims=True), magnitude),
                    (wide.mean(axes), magnitude / count)]
        if a.ndim == 2:
            expected.append((wide.T.sum(axes), float(np.abs(wide.T).sum(axes).max())))
        for want, scale in expected:
            got = next(outputs)
            assert got.shape == want.shape and got.dtype == a.dtype, (shape, axes)
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale, err_msg=f"{shape} over {axes}")


# ---- determinism and special values --------------------------------------------------------------
def test_sums_do_not_depend_on_the_thread_count(rng):
    """Parallel sums split their work into chunks fixed by the shapes: any thread count gives
    the same bits (a vector and a matrix summed whole, rows summed, a softmax's denominator)."""
    arrays = [sample(rng, "normal", shape) for shape in (((1 << 20) + 7,), (1000, 1003), (3, 1 << 19))]
    build = gathered(lambda v, m, r: [v.sum(), v.mean(), m.sum(), r.sum(1), graphc.softmax(v, dim=0)], *arrays)
    program = CompiledGraph(build.graph)
    saved = runtime.get_num_threads()
    results = {}
    try:
        for threads in (1, 2, 3, 5):
            runtime.set_num_threads(threads)
            results[threads] = [np.array(out) for out in program(build.bindings)]
    finally:
        runtime.set_num_threads(saved)
    for threads in (2, 3, 5):
        for position, (got, first) in enumerate(zip(results[threads], results[1])):
            assert np.array_equal(got, first), f"result {position}: {threads} threads give other bits than 1"


@pytest.mark.parametrize("specials, expected", [((np.inf,), np.inf), ((-np.inf,), -np.inf),
                                                 ((np.inf, -np.inf), np.nan), ((np.nan,), np.nan),
                                                 ((np.inf, np.nan), np.nan)])
def test_special_values_in_long_sums(rng, specials, expected):
    a = np.ones(1 << 20, dtype=np.float32)
    for position, value in zip((12345, 777777), specials):
        a[position] = value
    total, row = compiled(lambda x: (x.sum(), x.reshape(16, -1).sum(1)), a)
    np.testing.assert_equal(float(total), expected)
    np.testing.assert_equal(row, a.reshape(16, -1).sum(1, dtype=np.float64).astype(np.float32))


# ---- the rendering itself ------------------------------------------------------------------------
def _sum_program(ctype: str, size: int) -> Program:
    buffers = [Buffer("x", ctype, size, "input", 0), Buffer("y", ctype, 1, "output", 1)]
    body = [Declare("acc", ctype, Const("0")),
            Loop("r", size, [Accumulate("acc", "+", Load("x", Var("r")))], simd=True, reduce=(("+", "acc"),)),
            Store("y", Const("0"), Var("acc"))]
    return Program("sums", buffers, [Kernel("kernel_0", body, buffers=["x", "y"], work=size)])


@pytest.mark.parametrize("ctype, suffix", [("float", "f32"), ("double", "f64")])
def test_floating_sums_render_in_blocks(ctype, suffix):
    kernel = render_program(_sum_program(ctype, 100_000)).split("static void kernel_0")[-1]
    assert f"graphc_lanes_push_{suffix}" in kernel and "acc = acc + graphc_lanes_total" in kernel
    parallel = render_program(_sum_program(ctype, 1 << 20)).split("static void kernel_0")[-1]
    assert "#pragma omp parallel for" in parallel and f"graphc_sum_push_{suffix}(acc_sums" in parallel
    short = render_program(_sum_program(ctype, 300)).split("static void kernel_0")[-1]
    assert "acc = acc + x[r];" in short and "graphc_sum_push" not in short   # one block: the plain loop


def test_integer_sums_stay_one_loop():
    source = render_program(_sum_program("int64_t", 100_000))
    kernel = source.split("static void kernel_0")[-1]
    assert "graphc_sum_push" not in kernel and "reduction(+:acc)" in kernel


# ---- the CUDA template, through the host emulator -----------------------------------------------
@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
def test_cuda_block_reductions_are_accurate(rng):
    from cuda_emulator import EmulatedCudaGraph
    a = np.full(10 ** 6, 0.1, dtype=np.float32)
    a[: 10 ** 5] = sample(rng, "normal", (10 ** 5,))
    special = np.ones(1 << 16, dtype=np.float32)
    special[100], special[200] = np.inf, 1.0
    build = gathered(lambda x, s: (x.sum(), x.var(), s.sum(), (s - s).sum()), a, special)
    total, variance, with_inf, nan = EmulatedCudaGraph(build.graph)(build.bindings)
    wide = a.astype(np.float64)
    assert_accurate("CUDA sum of 10^6", total, wide.sum(), a.sum())
    assert_accurate("CUDA var of 10^6", variance, wide.var(ddof=1), a.var(ddof=1))
    assert float(with_inf) == np.inf and np.isnan(float(nan))   # Kahan's compensation keeps Inf and NaN
