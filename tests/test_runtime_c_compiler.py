"""CCompiler + compile_c: hand-written C kernels built by the system compiler and checked against NumPy."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime import CCompiler, CompileError, ToolchainMissing, compile_c, default_cache
from runtime.c_compiler import BASE_FLAGS
from runtime.openblas import openblas_flags

# y[i] = a[i]*b[i] + tanhf(a[i]), vectorized with glibc's libmvec (see CPU_NOTES.md). The element
# count travels as a one-element int64 buffer, so every argument follows the void** convention.
FMA_TANH = textwrap.dedent(
    """
    #include <math.h>
    #include <stdint.h>
    __attribute__((simd("notinbranch"))) float tanhf(float);

    #ifndef SCALE
    #define SCALE 1.0f
    #endif

    void fma_tanh(void **buffers) {
        const float *a = (const float *)buffers[0];
        const float *b = (const float *)buffers[1];
        float *y = (float *)buffers[2];
        const int64_t n = *(const int64_t *)buffers[3];
        #pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            y[i] = SCALE * (a[i] * b[i] + tanhf(a[i]));
        }
    }
    """
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache and the default (non-sanitized) build."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_SANITIZE", raising=False)
    return tmp_path / "cache"


def run_fma_tanh(program, n, rng, scale=1.0):
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y = np.full(n, np.nan, dtype=np.float32)
    program([a, b, y, np.array([n], dtype=np.int64)])
    reference = scale * (a.astype(np.float64) * b.astype(np.float64) + np.tanh(a.astype(np.float64)))
    return y, reference


def test_kernel_matches_numpy_on_odd_sizes():
    program = compile_c(FMA_TANH, "fma_tanh")
    rng = np.random.default_rng()
    for n in (1, 7, 1023, 100_003):  # odd sizes exercise the vector loop's remainder
        y, reference = run_fma_tanh(program, n, rng)
        np.testing.assert_allclose(y, reference, rtol=2e-6, atol=2e-6)


def test_kernel_propagates_nan_because_fast_math_is_off():
    program = compile_c(FMA_TANH, "fma_tanh")
    a = np.array([np.nan, 1.0, -np.inf], dtype=np.float32)
    b = np.ones(3, dtype=np.float32)
    y = np.zeros(3, dtype=np.float32)
    program([a, b, y, np.array([3], dtype=np.int64)])
    assert np.isnan(y[0]) and np.isfinite(y[1]) and y[2] == -np.inf


def test_vector_math_library_is_used():
    program = compile_c(FMA_TANH, "fma_tanh")
    symbols = subprocess.run(["nm", "-D", str(program.library_path)], capture_output=True, text=True).stdout
    if "-lmvec" not in CCompiler().link_flags:
        pytest.skip("this C library has no libmvec")
    assert "_ZGV" in symbols and "tanhf" in symbols  # a libmvec variant such as _ZGVdN8v_tanhf


def test_second_compile_is_a_cache_hit_without_running_the_compiler(monkeypatch):
    first = compile_c(FMA_TANH, "fma_tanh")
    assert not first.cache_hit and first.artifact.build_seconds > 0

    def must_not_build(self, source, out_dir):
        raise AssertionError("the compiler ran on a cache hit")

    monkeypatch.setattr(CCompiler, "build", must_not_build)
    second = compile_c(FMA_TANH, "fma_tanh")
    assert second.cache_hit
    assert second.library_path == first.library_path
    stats = default_cache().stats
    assert (stats.hits, stats.misses, stats.builds) == (1, 1, 1)
    y, reference = run_fma_tanh(second, 999, np.random.default_rng())
    np.testing.assert_allclose(y, reference, rtol=2e-6, atol=2e-6)


def test_flags_are_part_of_the_key_and_reach_the_compiler():
    cache = default_cache()
    plain, scaled = CCompiler(), CCompiler(extra_flags=["-DSCALE=3.0f"])
    assert cache.key_for(FMA_TANH, plain) == cache.key_for(FMA_TANH, CCompiler())
    assert cache.key_for(FMA_TANH, plain) != cache.key_for(FMA_TANH, scaled)
    assert cache.key_for(FMA_TANH, plain) != cache.key_for(FMA_TANH + "\n", plain)
    assert cache.key_for(FMA_TANH, plain) != cache.key_for(FMA_TANH, CCompiler(sanitize=True))

    rng = np.random.default_rng()
    one = compile_c(FMA_TANH, "fma_tanh")
    three = compile_c(FMA_TANH, "fma_tanh", extra_flags=["-DSCALE=3.0f"])
    assert not three.cache_hit and one.library_path != three.library_path
    y, reference = run_fma_tanh(three, 501, rng, scale=3.0)
    np.testing.assert_allclose(y, reference, rtol=2e-6, atol=6e-6)
    assert len(runtime.cache_entries()) == 2


def test_flags_and_environment_defaults():
    compiler = CCompiler()
    assert compiler.compile_flags[: len(BASE_FLAGS)] == list(BASE_FLAGS)
    assert compiler.link_flags[-1] == "-lm"
    assert not compiler.sanitize
    material = compiler.key_material()
    assert material["version"] and Path(material["executable"]).exists()


def test_sanitize_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHC_SANITIZE", "1")
    compiler = CCompiler()
    assert compiler.sanitize and "-fsanitize=address,undefined" in compiler.compile_flags
    assert not CCompiler(sanitize=False).sanitize


def test_syntax_error_raises_compile_error_with_log_and_source_path():
    broken = "void broken(void **buffers) {\n    float *y = (float *)buffers[0];\n    y[0] = 1.0f\n}\n"
    with pytest.raises(CompileError) as caught:
        compile_c(broken, "broken")
    error = caught.value
    message = str(error)
    assert "error: expected ';'" in message  # gcc's own words
    assert str(error.source_path) in message
    assert error.source_path.read_text() == broken  # the failing source is kept where it says
    assert error.source_path.parent.parent == default_cache().failed_dir
    assert error.line in (3, 4)  # gcc reports the missing ';' at the end of line 3 or on line 4
    assert f"> {error.line} |" in message
    assert default_cache().stats.failures == 1 and runtime.cache_entries() == []


def test_missing_compiler_raises_toolchain_missing(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(ToolchainMissing) as caught:
        compile_c(FMA_TANH, "fma_tanh")
    message = str(caught.value)
    assert "/nonexistent/cc" in message and "$CC" in message
    assert "apt-get install gcc" in message


def test_blas_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)  # makes the import fail
    openblas_flags.cache_clear()
    try:
        with pytest.raises(ToolchainMissing, match="pip install scipy-openblas32"):
            CCompiler(blas=True)
    finally:
        openblas_flags.cache_clear()


SGEMM = textwrap.dedent(
    """
    #include <stdint.h>
    #include <cblas.h>
    /* C[M,N] = A[M,K] @ B[K,N] + bias[N]: OpenBLAS GEMM with a fused epilogue. */
    void gemm_bias(void **buffers) {
        const float *a = buffers[0], *b = buffers[1], *bias = buffers[2];
        float *c = buffers[3];
        const int64_t *shape = buffers[4];
        const int m = (int)shape[0], n = (int)shape[1], k = (int)shape[2];
        scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j) c[(int64_t)i * n + j] += bias[j];
    }
    """
)


def test_blas_gemm_matches_numpy():
    pytest.importorskip("scipy_openblas32", reason="scipy-openblas32 is not installed")
    program = compile_c(SGEMM, "gemm_bias", blas=True)
    rng = np.random.default_rng()
    m, n, k = 37, 29, 41
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.empty((m, n), dtype=np.float32)
    program([a, b, bias, c, np.array([m, n, k], dtype=np.int64)])
    reference = a.astype(np.float64) @ b.astype(np.float64) + bias
    np.testing.assert_allclose(c, reference, rtol=1e-4, atol=1e-4)


OUT_OF_BOUNDS = "void overflow(void **buffers) { float *x = (float *)buffers[0]; x[7] = 1.0f; }\n"


def test_sanitized_library_refuses_to_load_without_the_asan_runtime():
    with pytest.raises(runtime.LoadError, match="LD_PRELOAD"):
        compile_c(OUT_OF_BOUNDS, "overflow", sanitize=True)


def test_sanitizer_catches_an_out_of_bounds_write(tmp_path):
    asan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(asan):
        pytest.skip("libasan is not installed")
    child = textwrap.dedent(
        f"""
        import numpy as np, runtime
        program = runtime.compile_c({OUT_OF_BOUNDS!r}, "overflow", sanitize=True)
        program([np.zeros(7, dtype=np.float32)])  # writes element 7 of 7
        print("no error detected")
        """
    )
    environment = dict(
        os.environ,
        LD_PRELOAD=asan,
        ASAN_OPTIONS="detect_leaks=0",
        PYTHONPATH=str(Path(runtime.__file__).parents[1]),
    )
    completed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode != 0
    assert "heap-buffer-overflow" in completed.stderr
    assert "no error detected" not in completed.stdout
