"""runtime.cuda_gemm: the library GEMM's strided views, checked with NumPy standing in for CuPy.

Every `Gemm` the code generator can describe (transposes, offsets, row strides wider than the
matrix, batch strides including 0 for a broadcast operand, a sum over batches, k = 0, float and
double, temporaries as byte views of an arena) against a product computed element by element.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from codegen.kernel_ir import Gemm
from runtime.cuda_gemm import CublasGemm, direct_gemm_supported, library_gemm


def reference(a, b, c_before, g):
    """C as the tiled kernel defines it, written with explicit indexing (float64)."""
    c = c_before.astype(np.float64).copy()
    for batch in range(g.batch):
        out_batch = 0 if g.sum_batches else batch
        for i in range(g.m):
            for j in range(g.n):
                total = 0.0
                for p in range(g.k):
                    x = (a[g.offset_a + batch * g.batch_stride_a + p * g.lda + i] if g.transpose_a
                         else a[g.offset_a + batch * g.batch_stride_a + i * g.lda + p])
                    y = (b[g.offset_b + batch * g.batch_stride_b + j * g.ldb + p] if g.transpose_b
                         else b[g.offset_b + batch * g.batch_stride_b + p * g.ldb + j])
                    total += float(x) * float(y)
                index = g.offset_c + out_batch * g.batch_stride_c + i * g.ldc + j
                c[index] = total if not (g.sum_batches and batch > 0) else c[index] + total
    return c


def random_gemm(rng, transpose_a, transpose_b, batch, sum_batches, broadcast_b, ctype="float", k=None):
    m, n = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    k = int(rng.integers(1, 6)) if k is None else k
    pad = int(rng.integers(0, 3))
    lda = (m if transpose_a else k) + pad
    ldb = (k if transpose_b else n) + pad
    ldc = n + pad
    rows_a, rows_b = (k if transpose_a else m), (n if transpose_b else k)
    stride_a, stride_b = rows_a * lda + 1, 0 if broadcast_b else rows_b * ldb + 2
    stride_c = m * ldc + 1
    return Gemm("a", "b", "c", m, n, k, transpose_a, transpose_b, lda, ldb, ldc, ctype, batch, stride_a,
                stride_b, stride_c, offset_a=int(rng.integers(0, 4)), offset_b=int(rng.integers(0, 4)),
                offset_c=int(rng.integers(0, 4)), sum_batches=sum_batches)


def buffers(rng, g, dtype):
    size_a = g.offset_a + g.batch * g.batch_stride_a + g.lda * max(g.m, g.k) + 8
    size_b = g.offset_b + g.batch * max(g.batch_stride_b, 1) + g.ldb * max(g.k, g.n) + 8
    size_c = g.offset_c + g.batch * g.batch_stride_c + g.ldc * g.m + 8
    return (rng.standard_normal(size_a).astype(dtype), rng.standard_normal(size_b).astype(dtype),
            rng.standard_normal(size_c).astype(dtype))


@pytest.mark.parametrize("transpose_a,transpose_b,batch,sum_batches,broadcast_b",
                         [combo for combo in itertools.product([False, True], [False, True], [1, 3],
                                                               [False, True], [False, True])
                          if not (combo[2] == 1 and (combo[3] or combo[4]))])
def test_library_gemm_matches_the_kernels_definition(rng, transpose_a, transpose_b, batch, sum_batches,
                                                    broadcast_b):
    g = random_gemm(rng, transpose_a, transpose_b, batch, sum_batches, broadcast_b)
    a, b, c = buffers(rng, g, np.float32)
    want = reference(a, b, c, g)
    library_gemm(np, a, b, c, g)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)   # untouched elements stay as they were


def test_double_precision_and_byte_views_of_an_arena(rng):
    g = random_gemm(rng, True, False, 2, False, False, ctype="double")
    a, b, c = buffers(rng, g, np.float64)
    want = reference(a, b, c, g)
    arena = np.zeros(c.nbytes + 64, dtype=np.uint8)          # a temporary: bytes of the arena
    c_bytes = arena[64:64 + c.nbytes]
    c_bytes.view(np.float64)[:] = c
    library_gemm(np, a, b, c_bytes, g)
    np.testing.assert_allclose(c_bytes.view(np.float64), want, rtol=1e-12, atol=1e-12)


def test_an_empty_sum_writes_zeros_and_an_empty_product_writes_nothing(rng):
    g = random_gemm(rng, False, False, 2, False, False, k=0)
    a, b, c = buffers(rng, g, np.float32)
    want = reference(a, b, c, g)
    library_gemm(np, a, b, c, g)
    np.testing.assert_array_equal(c, want.astype(np.float32))
    empty = Gemm("a", "b", "c", 0, 3, 2, False, False, 2, 3, 3)
    before = c.copy()
    library_gemm(np, a, b, c, empty)
    np.testing.assert_array_equal(c, before)


# ---- CublasGemm: straight cuBLAS calls on pointers ----------------------------------------------
class NumpyCublas:
    """cuBLAS's gemm entry points over host memory, column-major as cuBLAS defines them, with
    host-pointer alpha and beta: what `CublasGemm` calls on a GPU, here on NumPy arrays' addresses."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def _matrix(pointer, rows, cols, ld, dtype):
        """The column-major [rows x cols] matrix at `pointer` with leading dimension ld."""
        size = np.dtype(dtype).itemsize
        flat = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_char * ((cols - 1) * ld * size + rows * size))
                                     .from_address(pointer))
        return np.lib.stride_tricks.as_strided(flat.view(dtype), shape=(rows, cols), strides=(size, ld * size))

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        assert handle == "handle"
        self.calls += 1
        scalar = lambda pointer: np.ctypeslib.as_array((np.ctypeslib.ctypes.c_char * 8).from_address(pointer))\
            .view(dtype)[0]
        left = self._matrix(a, *((k, m) if transa else (m, k)), lda, dtype)
        right = self._matrix(b, *((n, k) if transb else (k, n)), ldb, dtype)
        left, right = (left.T if transa else left), (right.T if transb else right)
        out = self._matrix(c, m, n, ldc, dtype)
        out[...] = scalar(alpha) * (left.astype(np.float64) @ right) + scalar(beta) * out

    def sgemm(self, *args):
        self._gemm(np.float32, *args)

    def dgemm(self, *args):
        self._gemm(np.float64, *args)

    def _batched(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                 beta, c, ldc, stride_c, count):
        size = np.dtype(dtype).itemsize
        for index in range(count):
            self._gemm(dtype, handle, transa, transb, m, n, k, alpha, a + index * stride_a * size, lda,
                       b + index * stride_b * size, ldb, beta, c + index * stride_c * size, ldc)

    def sgemmStridedBatched(self, *args):
        self._batched(np.float32, *args)

    def dgemmStridedBatched(self, *args):
        self._batched(np.float64, *args)


@pytest.mark.parametrize("ctype", ["float", "double"])
@pytest.mark.parametrize("transpose_a,transpose_b,batch,sum_batches,broadcast_b",
                         [combo for combo in itertools.product([False, True], [False, True], [1, 3],
                                                               [False, True], [False, True])
                          if not (combo[2] == 1 and (combo[3] or combo[4]))])
def test_cublas_calls_compute_the_kernels_definition(rng, ctype, transpose_a, transpose_b, batch, sum_batches,
                                                     broadcast_b):
    dtype = np.float32 if ctype == "float" else np.float64
    g = random_gemm(rng, transpose_a, transpose_b, batch, sum_batches, broadcast_b, ctype=ctype)
    a, b, c = buffers(rng, g, dtype)
    want = reference(a, b, c, g)
    blas = NumpyCublas()
    call = CublasGemm(g, blas, "handle")
    call.bind(a.ctypes.data, b.ctypes.data, c.ctypes.data)
    call()
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)   # untouched elements stay as they were
    assert blas.calls == batch        # a strided-batched call counts one per batch in the stand-in
    c_again = c.copy()
    call()                            # the same pointers again: the same product, not an accumulation
    np.testing.assert_allclose(c, c_again, rtol=1e-6, atol=1e-6)


def test_cublas_path_leaves_integers_and_empty_sums_to_the_library_path():
    assert direct_gemm_supported(Gemm("a", "b", "c", 2, 3, 4, False, False, 4, 3, 3))
    assert not direct_gemm_supported(Gemm("a", "b", "c", 2, 3, 4, False, False, 4, 3, 3, ctype="int64_t"))
    assert not direct_gemm_supported(Gemm("a", "b", "c", 2, 3, 0, False, False, 4, 3, 3))
    with pytest.raises(ValueError, match="cuBLAS path cannot run"):
        CublasGemm(Gemm("a", "b", "c", 0, 3, 2, False, False, 2, 3, 3), NumpyCublas(), "handle")
