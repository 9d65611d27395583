"""CUDA compilation without a GPU: NVRTC through ctypes (skipped when absent), nvcc as a fallback."""

import sys

import pytest

import runtime
from runtime import CompileError, NvccCompiler, NVRTCCompiler, ToolchainMissing, cuda_available
from runtime.nvrtc_library import cuda_runtime_include_dir, load_nvrtc

SAXPY = """
extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        y[i] = a * x[i] + y[i];
}
"""

BROKEN = """extern "C" __global__ void broken(float *y) {
    int i = threadIdx.x;
    y[i] = x;
}
"""

needs_nvrtc = pytest.mark.skipif(
    not NVRTCCompiler.available(),
    reason="NVRTC not found (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12)",
)
needs_nvcc = pytest.mark.skipif(not NvccCompiler.available(), reason="nvcc is not on PATH")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


@needs_nvrtc
def test_nvrtc_compiles_a_kernel_to_ptx():
    compiler = NVRTCCompiler()
    artifact = compiler.compile(SAXPY)
    ptx = artifact.read_text()
    assert artifact.kind == "ptx" and artifact.path.suffix == ".ptx"
    assert ".entry saxpy" in ptx and ".target sm_80" in ptx
    assert artifact.read_source() == SAXPY
    again = compiler.compile(SAXPY)
    assert again.cache_hit and again.path == artifact.path
    assert runtime.default_cache().stats.builds == 1


@needs_nvrtc
def test_nvrtc_arch_and_cubin():
    ptx = NVRTCCompiler(arch="compute_90").compile(SAXPY).read_text()
    assert ".target sm_90" in ptx
    cubin = NVRTCCompiler(arch="sm_80").compile(SAXPY)
    assert cubin.kind == "cubin" and cubin.read_bytes()[:4] == b"\x7fELF"


@needs_nvrtc
def test_nvrtc_finds_cuda_runtime_headers():
    if cuda_runtime_include_dir() is None:
        pytest.skip("nvidia-cuda-runtime-cu12 (cuda_fp16.h) is not installed")
    source = '#include <cuda_fp16.h>\nextern "C" __global__ void half_twice(__half *y) { y[0] = __hadd(y[0], y[0]); }\n'
    assert ".entry half_twice" in NVRTCCompiler().compile(source).read_text()


@needs_nvrtc
def test_nvrtc_error_carries_the_program_log():
    with pytest.raises(CompileError) as caught:
        NVRTCCompiler().compile(BROKEN)
    error = caught.value
    message = str(error)
    assert 'identifier "x" is undefined' in message
    assert error.line == 3 and "> 3 |     y[i] = x;" in message
    assert str(error.source_path) in message and error.source_path.read_text() == BROKEN


def test_missing_nvrtc_raises_toolchain_missing(monkeypatch):
    with pytest.raises(ToolchainMissing, match="nvidia-cuda-nvrtc-cu12"):
        load_nvrtc("/nonexistent/libnvrtc.so.12")
    monkeypatch.setattr(runtime.nvrtc_library, "find_nvrtc_library", lambda: None)
    load_nvrtc.cache_clear()
    try:
        with pytest.raises(ToolchainMissing, match="pip install nvidia-cuda-nvrtc-cu12"):
            NVRTCCompiler()
    finally:
        load_nvrtc.cache_clear()


def test_cuda_compiler_falls_back_to_nvcc(monkeypatch):
    monkeypatch.setattr(runtime.cuda_compiler, "find_nvrtc_library", lambda: None)
    if NvccCompiler.available():
        assert isinstance(runtime.find_cuda_compiler(), NvccCompiler)
    else:
        with pytest.raises(ToolchainMissing, match="neither NVRTC nor nvcc"):
            runtime.find_cuda_compiler()


@needs_nvcc
def test_nvcc_compiles_and_reports_errors():
    compiler = NvccCompiler()
    assert ".entry saxpy" in compiler.compile(SAXPY).read_text()
    with pytest.raises(CompileError, match='identifier "x" is undefined') as caught:
        compiler.compile(BROKEN)
    assert caught.value.line == 3 and caught.value.returncode != 0


def test_cuda_available_never_raises(monkeypatch):
    assert isinstance(cuda_available(), bool)

    class BrokenRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorInsufficientDriver")

    class FakeCupy:
        class cuda:
            runtime = BrokenRuntime

    probe = cuda_available.__wrapped__  # bypass the per-process memo
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    assert probe() is False
    monkeypatch.setitem(sys.modules, "cupy", None)  # not installed
    assert probe() is False
