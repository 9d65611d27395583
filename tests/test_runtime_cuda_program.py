"""runtime.CudaProgram without a GPU: a rendered manifest turned into launches on fake kernels
(argument order, grids, shared memory, skipped empty launches, errors), and compile_cuda's cache."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import graphc
import runtime
from codegen.kernel_ir import Buffer, Gemm, Kernel, Program
from codegen.render_cuda import render_cuda_program
from graphc.backends.c import compile_pipeline
from runtime import CudaProgram, LoadError, NVRTCCompiler
from runtime.artifact import Artifact
from runtime.cuda_program import load_cuda_module


class FakeKernel:
    def __init__(self, name, calls):
        self.name = name
        self.calls = calls

    def __call__(self, grid, block, args, shared_mem=0):
        self.calls.append((self.name, grid, block, args, shared_mem))


class FakeModule:
    """Stands in for cupy.RawModule: hands out kernels that record their launches."""

    def __init__(self, names=None):
        self.names = names
        self.calls = []

    def get_function(self, name):
        if self.names is not None and name not in self.names:
            raise RuntimeError(f"named symbol not found: {name}")
        return FakeKernel(name, self.calls)


def fake_artifact() -> Artifact:
    return Artifact(Path("/nonexistent/kernel.ptx"), "ptx", "key", Path("/nonexistent/kernel.cu"), False)


def conv_manifest():
    graph = graphc.trace(lambda x, w: graphc.nn.functional.conv2d(x, w, padding=1).relu(),
                         graphc.randn(2, 3, 6, 6), graphc.randn(4, 3, 3, 3))
    _, program, _, _ = compile_pipeline(graph)
    return program, render_cuda_program(program)[1]


def test_launches_run_in_manifest_order_with_buffers_in_parameter_order():
    program, manifest = conv_manifest()
    module = FakeModule()
    cuda_program = CudaProgram(fake_artifact(), manifest, module=module, gemm="tiled")
    buffers = {b.name: object() for b in program.buffers}
    cuda_program(buffers)
    assert [call[0] for call in module.calls] == [launch.name for launch in manifest]
    for (name, grid, block, args, shared), launch in zip(module.calls, manifest):
        assert args == tuple(buffers[n] for n in launch.params)
        assert grid == launch.grid and block == launch.block and shared == launch.shared_bytes
    # im2col reads the input and writes the columns; the GEMM reads weight and columns into t2
    im2col, gemm = manifest[0], manifest[1]
    assert im2col.params == ("in0", "scratch0") and set(gemm.params) == {"in1", "scratch0", "t2"}


def test_replay_prepares_again_only_the_launches_whose_buffers_changed(monkeypatch):
    program, manifest = conv_manifest()
    module = FakeModule()
    cuda_program = CudaProgram(fake_artifact(), manifest, module=module, gemm="tiled")
    buffers = {b.name: object() for b in program.buffers}
    prepared = []
    original = cuda_program._prepare_one
    monkeypatch.setattr(cuda_program, "_prepare_one", lambda launch, b: prepared.append(launch.name) or original(launch, b))
    cuda_program(buffers)
    cuda_program(dict(buffers))
    assert len(prepared) == len(manifest) and len(module.calls) == 2 * len(manifest)
    takes_input = [launch.name for launch in manifest if "in0" in launch.params]
    assert 0 < len(takes_input) < len(manifest)
    buffers["in0"] = object()          # a new input array: the launches taking it are prepared again
    cuda_program(buffers)
    assert prepared[len(manifest):] == takes_input
    for launch, call in zip(manifest, module.calls[-len(manifest):]):
        assert call[3] == tuple(buffers[name] for name in launch.params)


def test_empty_launches_are_skipped():
    buffers = [Buffer("a", "float", 6, "input", 0), Buffer("b", "float", 6, "input", 1),
               Buffer("c", "float", 4, "output", 2)]
    kernels = [Kernel("kernel_0", [Gemm("a", "b", "c", 0, 2, 3, False, False, 3, 2, 2)], buffers=["a", "b", "c"]),
               Kernel("kernel_1", [Gemm("a", "b", "c", 2, 2, 3, False, False, 3, 2, 2)], buffers=["a", "b", "c"])]
    _, manifest = render_cuda_program(Program("p", buffers, kernels))
    module = FakeModule()
    CudaProgram(fake_artifact(), manifest, module=module, gemm="tiled")({"a": 1, "b": 2, "c": 3})
    assert [call[0] for call in module.calls] == ["kernel_1"]
    assert module.calls[0][1:4] == ((1, 1, 1), (16, 16, 1), (1, 2, 3))


def test_library_gemm_mode_runs_products_with_the_array_library(rng):
    """GRAPHC_CUDA_GEMM=library (the default): a product launch becomes a PreparedGemm calling
    xp.matmul on strided views (NumPy stands in for CuPy); the other launches stay kernels."""
    import numpy as np
    from runtime.cuda_program import PreparedGemm, PreparedLaunch
    buffers = [Buffer("a", "float", 6, "input", 0), Buffer("b", "float", 6, "input", 1),
               Buffer("c", "float", 4, "output", 2)]
    kernels = [Kernel("kernel_0", [Gemm("a", "b", "c", 2, 2, 3, False, False, 3, 2, 2)], buffers=["a", "b", "c"])]
    program_ir = Program("p", buffers, kernels)
    _, manifest = render_cuda_program(program_ir)
    module = FakeModule()
    cuda_program = CudaProgram(fake_artifact(), manifest, module=module, gemm="library", xp=np)
    a, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    c = np.zeros(4, dtype=np.float32)
    prepared = cuda_program.prepare({"a": a, "b": b, "c": c})
    assert [type(p) for p in prepared] == [PreparedGemm]
    cuda_program({"a": a, "b": b, "c": c})
    np.testing.assert_allclose(c.reshape(2, 2), a.reshape(2, 3) @ b.reshape(3, 2), rtol=1e-6)
    assert module.calls == []                      # the tiled kernel never ran
    _, conv = conv_manifest()
    mixed = CudaProgram(fake_artifact(), conv, module=FakeModule(), gemm="library", xp=np)
    program, _ = conv_manifest()
    kinds = {type(p) for p in mixed.prepare({b.name: np.zeros(max(b.size, 1), np.uint8) for b in program.buffers})}
    assert kinds == {PreparedGemm, PreparedLaunch}  # im2col and the epilogue stay generated kernels
    with pytest.raises(ValueError, match="GRAPHC_CUDA_GEMM must be one of library, tiled, not 'cublas'"):
        CudaProgram(fake_artifact(), manifest, module=FakeModule(), gemm="cublas")


def test_unbound_buffer_and_missing_kernel_say_which():
    program, manifest = conv_manifest()
    cuda_program = CudaProgram(fake_artifact(), manifest, module=FakeModule())
    buffers = {b.name: object() for b in program.buffers if b.name != "scratch0"}
    with pytest.raises(KeyError, match=f"launch {manifest[0].name} needs buffer 'scratch0', which was not bound"):
        cuda_program(buffers)
    with pytest.raises(LoadError, match=f"has no kernel '{manifest[1].name}'"):
        CudaProgram(fake_artifact(), manifest, module=FakeModule(names={manifest[0].name}))


def test_loading_without_cupy_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(LoadError, match=r"needs CuPy \(pip install graphc\[cuda\]\)"):
        load_cuda_module("/nonexistent/kernel.ptx")


@pytest.mark.skipif(not NVRTCCompiler.available(), reason="NVRTC not found (pip install nvidia-cuda-nvrtc-cu12)")
def test_compile_cuda_goes_through_the_build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    program, manifest = conv_manifest()
    source, _ = render_cuda_program(program)
    first = runtime.compile_cuda(source)
    if runtime.cuda_available():            # a cubin for the GPU here
        assert not first.cache_hit and first.kind == "cubin" and first.read_bytes()[:4] == b"\x7fELF"
    else:                                   # no device: PTX for the default architecture
        assert not first.cache_hit and first.kind == "ptx" and ".target sm_80" in first.read_text()
        for launch in manifest:
            assert f".entry {launch.name}(" in first.read_text()
    second = runtime.compile_cuda(source)
    assert second.cache_hit and second.path == first.path
    cubin = runtime.compile_cuda(source, arch="sm_90")
    assert cubin.kind == "cubin" and cubin.read_bytes()[:4] == b"\x7fELF"
