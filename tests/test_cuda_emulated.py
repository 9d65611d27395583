"""The generated CUDA kernels, run: every graph of the CUDA corpus, odd sizes and random programs go
through the CUDA renderer and the host emulator (tests/cuda_emulator.py: real threads per block,
barriers, warp shuffles, shared memory, atomics) and must agree with the reference interpreter.
Needs no GPU, only g++; compiled libraries are kept in the build cache."""
from __future__ import annotations

import contextlib
import importlib
import random
import shutil

import numpy as np
import pytest

import graphc
import fuzz
import random_programs
from cuda_corpus import CORPUS
from cuda_emulator import EmulatedCudaGraph, EmulatedProgram, EmulationError
from graphc import interpreter
from codegen import render_cuda
from graphc.backends.c import CompiledGraph, compile_pipeline
from graphc.schedule import build_graph

F = graphc.nn.functional
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

RTOL = 1e-4      # float32: the GPU's reduction order differs from the interpreter's
RANDOM_BATCHES = 3
PROGRAMS_PER_BATCH = 8


def assert_matches(got: list, want: list, label: str) -> None:
    assert len(got) == len(want), f"{label}: {len(got)} outputs, the interpreter has {len(want)}"
    for position, (actual, expected) in enumerate(zip(got, want)):
        expected = np.asarray(expected)
        where = f"{label} output {position}"
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, \
            f"{where}: {actual.dtype}{list(actual.shape)} != {expected.dtype}{list(expected.shape)}"
        if expected.dtype.kind == "f":
            finite = np.abs(expected[np.isfinite(expected)])
            scale = max(1.0, float(finite.max())) if finite.size else 1.0
            np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=where)


def emulate_and_compare(graph, bindings, label: str, grid_limit=None, gemm_by_library=False) -> list:
    got = EmulatedCudaGraph(graph)(bindings, grid_limit=grid_limit, gemm_by_library=gemm_by_library)
    with np.errstate(all="ignore"):
        want = interpreter.evaluate(graph, bindings)
    assert_matches(got, want, label)
    return got


# ---- the corpus ------------------------------------------------------------------------------------
@contextlib.contextmanager
def recorded_builds():
    """The GraphBuilds graphc.trace makes (their bindings hold the traced values: the index
    tensors and constants a corpus graph needs, which random data would not respect)."""
    function = importlib.import_module("graphc.compile.function")
    original, builds = function.build_graph, []

    def recording(*args, **kwargs):
        builds.append(original(*args, **kwargs))
        return builds[-1]
    function.build_graph = recording
    try:
        yield builds
    finally:
        function.build_graph = original


def corpus_case(name: str, rng):
    """(graph, bindings): floating inputs fresh from `rng` at the traced values' scale and sign
    (initialized weights, non-negative optimizer state: a well-conditioned step), random-number
    keys fresh too; integer inputs (indices, targets, pooling offsets) as traced."""
    with recorded_builds() as builds:
        graph = CORPUS[name]()
    traced = builds[-1].bindings
    seeds = {node.inputs[0] for node in graph.nodes() if node.op == "rand"}
    bindings = {}
    for node in graph.placeholders():
        value = np.asarray(traced[node.name])
        if node.id in seeds:
            value = rng.integers(0, 2 ** 31, size=value.shape).astype(value.dtype)
        elif value.dtype.kind == "f":
            scale = float(np.sqrt(np.mean(np.square(value, dtype=np.float64)))) if value.size else 1.0
            fresh = rng.standard_normal(value.shape) * (scale or 1.0)
            value = (np.abs(fresh) if value.size and value.min() >= 0 else fresh).astype(value.dtype)
        bindings[node.name] = value
    return graph, bindings


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_graph_runs_like_the_interpreter(name, rng):
    graph, bindings = corpus_case(name, rng)
    emulate_and_compare(graph, bindings, name)


@pytest.mark.parametrize("name", ["matmul_epilogue", "grad:conv2d", "mlp_train_step", "lenet_train_step"])
def test_matrix_products_by_the_library_gemm(name, rng):
    """As a GPU runs them by default (GRAPHC_CUDA_GEMM=library): each product through the runtime's
    strided views and the array library's matmul, the epilogue a launch of its own."""
    graph, bindings = corpus_case(name, rng)
    assert any(launch.gemm is not None for launch in EmulatedCudaGraph(graph).launches)
    emulate_and_compare(graph, bindings, f"{name} with library GEMMs", gemm_by_library=True)


# ---- odd sizes: grid-stride tails, partial warps, partial tiles, rows longer than a block ---------
def leaf(rng, *shape):
    return graphc.tensor(rng.standard_normal(shape).astype(np.float32))


def odd_size_outputs(rng, n: int) -> list:
    a, b = leaf(rng, n, 7), leaf(rng, n, 7)
    w, v = leaf(rng, 7, 9), leaf(rng, 9, n)
    return [
        (a * b).exp() / (1 + b.abs()).sqrt() - a.tanh(),   # one thread per element
        a.sum(), a.amax(), a.mean(0),                       # full (n*7 > 1024 at 1000) and column reductions
        a.softmax(1), a.t().softmax(1), a.t().log_softmax(1),   # rows of 7 and of n
        F.relu(a @ w + 0.5),                                 # partial 16x16 tiles in m and n
        w.t() @ a.t() @ (v.t() * 2),                        # k = n, a chain of partial tiles
    ]


@pytest.mark.parametrize("n", [1, 7, 129, 1000])
def test_odd_sizes(n, rng):
    gathered = build_graph([t._node for t in odd_size_outputs(rng, n)])
    emulate_and_compare(gathered.graph, gathered.bindings, f"n={n}")


def test_a_full_reduction_and_softmax_rows_longer_than_a_block(rng):
    x = leaf(rng, 3, 3000)
    outputs = [x.sum(), x.amax(), x.softmax(1), x.log_softmax(1), (x - x.mean(1, keepdim=True)).abs().sum(1)]
    gathered = build_graph([t._node for t in outputs])
    emulated = EmulatedCudaGraph(gathered.graph)
    assert max(launch.threads_per_block for launch in emulated.launches) == 1024
    assert any(launch.grid == (1, 1, 1) and launch.threads_per_block == 1024 for launch in emulated.launches)
    emulate_and_compare(gathered.graph, gathered.bindings, "rows of 3000")


@pytest.mark.parametrize("name", ["softmax", "reduce_each_axis", "grad:conv2d", "mlp_train_step"])
def test_grid_stride_loops_give_the_same_result_on_three_blocks(name, rng):
    """Every one-dimensional grid is cut to 3 blocks: the loops must walk the rest themselves."""
    graph, bindings = corpus_case(name, rng)
    assert max(launch.grid[0] for launch in EmulatedCudaGraph(graph).launches) > 3
    emulate_and_compare(graph, bindings, f"{name} on 3 blocks", grid_limit=3)


# ---- random numbers: the C backend's bits ----------------------------------------------------------
def test_rand_and_dropout_give_the_c_backends_bits(rng):
    graphc.manual_seed(int(rng.integers(2 ** 31)))
    x = leaf(rng, 129, 7)
    outputs = [graphc.rand(129, 7), F.dropout(x, 0.3, training=True), graphc.rand(1000) * x.sum()]
    gathered = build_graph([t._node for t in outputs])
    emulated = EmulatedCudaGraph(gathered.graph)(gathered.bindings)
    compiled = CompiledGraph(gathered.graph)(gathered.bindings)
    for position in range(2):
        np.testing.assert_array_equal(emulated[position].view(np.uint32), compiled[position].view(np.uint32),
                                      err_msg=f"output {position}")
    assert 0.0 < emulated[0].min() and emulated[0].max() < 1.0 and emulated[0].std() > 0.2
    assert 0.2 < float((emulated[1] == 0).mean()) < 0.4
    np.testing.assert_allclose(emulated[2], compiled[2], rtol=RTOL)


# ---- random programs, batched as the fuzzer does ------------------------------------------------------
@pytest.mark.parametrize("batch", range(RANDOM_BATCHES))
def test_random_programs(batch, rng, monkeypatch):
    seed = int(rng.integers(2 ** 31))
    indices = list(range(batch * PROGRAMS_PER_BATCH, (batch + 1) * PROGRAMS_PER_BATCH))
    monkeypatch.setattr(fuzz, "run_compiled", lambda graph, bindings: EmulatedCudaGraph(graph)(bindings))
    failure = fuzz.check([fuzz.program_at(seed, k) for k in indices])
    if failure is not None:
        culprits = failure.culprits or range(len(indices))
        programs = "\n".join(fuzz.program_at(seed, indices[k]).describe() for k in culprits)
        pytest.fail(f"random programs of seed {seed} differ on the CUDA emulator:\n{failure.message}\n{programs}")


# ---- the emulator itself --------------------------------------------------------------------------------
def reduction_graph(rng):
    x = leaf(rng, 4, 700)
    gathered = build_graph([x.sum(1)._node, (x * 2).exp()._node])
    return gathered.graph, gathered.bindings


@pytest.mark.parametrize("sabotage", ["shuffle offset", "grid-stride bound", "missing barrier"])
def test_the_emulator_notices_a_broken_kernel(sabotage, rng):
    """The checks above can fail: a wrong shuffle offset, a grid-stride loop that stops one short
    and a barrier-free reduction each give wrong numbers (or an error), never a pass."""
    graph, bindings = reduction_graph(rng)
    emulated = EmulatedCudaGraph(graph)
    source = emulated.source
    if sabotage == "shuffle offset":
        broken = source.replace("for (int offset = 16; offset > 0; offset /= 2) value =",
                                "for (int offset = 8; offset > 0; offset /= 2) value =")
    elif sabotage == "grid-stride bound":
        broken = source.replace("< 2800; flat0 +=", "< 2799; flat0 +=")
    else:   # the reduction's partial sums written and read with no barrier in between
        broken = source.replace("if (lane == 0) partials[warp] = value;\n  __syncthreads();",
                                "if (lane == 0) partials[warp] = value;")
    assert broken != source
    emulated.program = EmulatedProgram(broken, emulated.launches)
    want = interpreter.evaluate(graph, bindings)
    with pytest.raises((AssertionError, EmulationError)):
        for _ in range(3):   # a race may hide once; three clean runs of a broken barrier would be luck
            assert_matches(emulated(bindings), want, sabotage)


def hand_written(name: str, threads: int, body: str) -> EmulatedProgram:
    source = (f'extern "C" __global__ void __launch_bounds__({threads}) {name}(\n    float *__restrict__ out0) {{\n'
              f"{body}\n}}\n")
    launch = type("Launch", (), {"name": name, "params": ("out0",), "grid": (1, 1, 1), "block": (threads, 1, 1),
                                 "shared_bytes": 0})
    return EmulatedProgram(source, [launch], deadline_seconds=1.0)


def test_a_barrier_in_divergent_code_is_reported_not_hung():
    program = hand_written("divergent", 64, "  if (threadIdx.x < 40) __syncthreads();\n  out0[threadIdx.x] = 1.0f;")
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(EmulationError, match=r"kernel divergent block \(0, 0, 0\): thread \d+ reached "
                                             r"(the end of the block|__syncthreads\(\)) while others of its group "
                                             r"wait at (the end of the block|__syncthreads\(\))"):
        program.run({"out0": out.ctypes.data})


def test_a_barrier_some_thread_never_reaches_ends_the_launch_after_the_deadline():
    """Lane 3 skips a shuffle its warp waits in, and waits at the block's barrier instead."""
    program = hand_written("stuck", 64, "  float v = threadIdx.x;\n"
                                        "  if (threadIdx.x != 3) v = __shfl_down_sync(0xffffffffu, v, 1);\n"
                                        "  __syncthreads();\n  out0[threadIdx.x] = v;")
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(EmulationError, match=r"kernel stuck block \(0, 0, 0\): thread \d+ waited more than "
                                             r"1 s at (__syncthreads\(\)|__shfl_down_sync \(before reading\))"):
        program.run({"out0": out.ctypes.data})


def test_a_block_bigger_than_cuda_allows_is_refused():
    out = np.zeros(2048, dtype=np.float32)
    program = hand_written("wide", 1024, "  out0[threadIdx.y * blockDim.x + threadIdx.x] = 1.0f;")
    program.launches[0].block = (1024, 2, 1)   # each dimension allowed, 2048 threads in all is not
    with pytest.raises(EmulationError, match="a block of 2048 threads .* more than CUDA allows"):
        program.run({"out0": out.ctypes.data})


def test_a_grid_past_cudas_limits_is_refused():
    launch = type("Launch", (), {"name": "tall", "params": ("out0",), "grid": (1, 65536, 1), "block": (32, 1, 1),
                                 "shared_bytes": 0})
    source = 'extern "C" __global__ void __launch_bounds__(32) tall(\n    float *__restrict__ out0) {\n}\n'
    out = np.zeros(1, dtype=np.float32)
    with pytest.raises(EmulationError, match=r"grid \(1, 65536, 1\) block \(32, 1, 1\) is past CUDA's limits"):
        EmulatedProgram(source, [launch]).run({"out0": out.ctypes.data})


# ---- renderer bugs the emulator found ---------------------------------------------------------------------
def test_a_matmul_with_more_row_tiles_than_gridDim_y_allows(rng, monkeypatch):
    """More than 65535 row tiles (a million rows) once made gridDim.y too big to launch: the row tiles
    are now walked grid-stride. Checked at full size on the manifest, and run with the limit at 3."""
    tall = graphc.trace(lambda a, b: a @ b, graphc.randn(16 * 65535 + 1, 2), graphc.randn(2, 3))
    (launch,) = render_cuda.render_cuda_program(compile_pipeline(tall)[1])[1]
    assert launch.grid == (1, 65535, 1)
    monkeypatch.setattr(render_cuda, "MAX_GRID_Y", 3)
    a, w, b = leaf(rng, 2, 150, 40), leaf(rng, 40, 20), leaf(rng, 150, 7)
    outputs = [a @ w, (a.transpose(1, 2) @ b).sum(0), F.relu(a[0] @ w + 1)]
    gathered = build_graph([t._node for t in outputs])
    emulated = EmulatedCudaGraph(gathered.graph)
    assert all(l.grid[1] <= 3 for l in emulated.launches) and any(l.grid[1] == 3 for l in emulated.launches)
    assert_matches(emulated(gathered.bindings), interpreter.evaluate(gathered.graph, gathered.bindings), "tall")


def test_a_computed_index_out_of_range_raises_from_the_device_record(rng):
    """The CUDA prelude records the first out-of-range gather index on the device (graphc_index_error,
    claimed with atomicCAS) and clamps the access; the backend reads the record back and raises
    IndexError naming the op, the index and the axis, like the C backend. Here every thread of
    a block races for the record; any one of the bad indices may win. Reading clears it."""
    data = rng.standard_normal(300).astype(np.float32)
    x = graphc.tensor(data)
    shift = int(rng.integers(1, 50))
    offset = graphc.tensor(shift)
    build = build_graph([x[graphc.arange(300) + offset]._node])   # the last `shift` indices overrun
    emulated = EmulatedCudaGraph(build.graph)
    with pytest.raises(IndexError) as caught:
        emulated(build.bindings)
    message = str(caught.value)
    index = int(message.split("index ")[1].split(" ")[0])
    assert 300 <= index < 300 + shift and "out of bounds for an axis of size 300" in message
    assert message.startswith("gather:") and "test_cuda_emulated.py" in message
    # the same program with an offset that keeps every index in range: no stale record, right values
    in_range = {name: (np.array(0, dtype=value.dtype) if np.ndim(value) == 0 else value)
                for name, value in build.bindings.items()}
    np.testing.assert_array_equal(emulated(in_range)[0], data)
