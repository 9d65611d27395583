"""A matrix-product launch run by the array library's matmul (cuBLAS through CuPy) instead of the
generated tiled kernel.

The code generator describes each product as a `Gemm` over flat buffers (row-major, offsets, row
strides, batch strides, transposes, a sum over batches for weight gradients). This module turns
those numbers into strided matrix views and calls `xp.matmul`, so the library's tuned kernels do
the arithmetic and the epilogue stays a fused launch of its own. `xp` is any NumPy-compatible
array module: CuPy on a GPU, NumPy in the tests that check the view arithmetic on machines
without one.
"""
from __future__ import annotations

import numpy as np

DTYPES = {"float": "float32", "double": "float64", "int64_t": "int64", "int32_t": "int32"}


def matrices(xp, flat, offset: int, rows: int, cols: int, row_stride: int, batch: int, batch_stride: int,
             transposed: bool, ctype: str):
    """`batch` matrices [rows x cols] read from `flat` (any dtype: reinterpreted as `ctype`).

    Stored transposed, each is a [cols x rows] matrix with row stride `row_stride`, viewed swapped.
    """
    dtype = np.dtype(DTYPES[ctype])
    typed = flat if flat.dtype == dtype else flat.view(dtype)
    size = typed.itemsize
    stored = (cols, rows) if transposed else (rows, cols)
    view = xp.lib.stride_tricks.as_strided(typed[offset:], shape=(batch, *stored),
                                           strides=(batch_stride * size, row_stride * size, size))
    return view.transpose(0, 2, 1) if transposed else view


def library_gemm(xp, a, b, c, gemm) -> None:
    """C (+)= op(A) @ op(B) as `gemm` describes it, with `xp.matmul`; a, b, c are flat arrays."""
    if gemm.m == 0 or gemm.n == 0:
        return
    out = matrices(xp, c, gemm.offset_c, gemm.m, gemm.n, gemm.ldc, 1 if gemm.sum_batches else gemm.batch,
                   gemm.batch_stride_c, False, gemm.ctype)
    if gemm.k == 0:  # an empty sum: the product is zeros
        out[...] = 0
        return
    left = matrices(xp, a, gemm.offset_a, gemm.m, gemm.k, gemm.lda, gemm.batch, gemm.batch_stride_a,
                    gemm.transpose_a, gemm.ctype)
    right = matrices(xp, b, gemm.offset_b, gemm.k, gemm.n, gemm.ldb, gemm.batch, gemm.batch_stride_b,
                     gemm.transpose_b, gemm.ctype)
    product = xp.matmul(left, right)
    # sum_batches: every batch adds into one C, the first overwriting it (the tiled kernel's rule)
    out[...] = product.sum(axis=0, keepdims=True) if gemm.sum_batches else product


# ---- straight to cuBLAS ----------------------------------------------------------------------
# cuBLAS is column-major: a row-major [r x c] matrix with row stride ld is, read column-major, its
# transpose. So row-major C = op(A) @ op(B) is column-major C^T = op(B)^T @ op(A)^T, and each
# operand's "transpose?" flag passes through unchanged: gemm(op_b, op_a, n, m, k, B, A, C).
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
_BLAS_ROUTINES = {"float": ("sgemm", "sgemmStridedBatched", np.float32),
                  "double": ("dgemm", "dgemmStridedBatched", np.float64)}


def direct_gemm_supported(gemm) -> bool:
    """Whether `CublasGemm` runs this product (floating point, non-empty); the rest go through
    `library_gemm`."""
    return gemm.ctype in _BLAS_ROUTINES and gemm.m > 0 and gemm.n > 0 and gemm.k > 0


class CublasGemm:
    """One matrix-product launch as cuBLAS calls on raw device pointers: no views, no temporaries,
    so a run costs one or a few library calls and can be captured in a CUDA graph.

    `blas` is the cuBLAS binding (``cupy.cuda.cublas``; the tests pass a NumPy stand-in with the
    same signatures) and `handle` its handle. Pointers are set with `bind(a, b, c)` (base
    addresses of the flat buffers; the element offsets are added here)."""

    def __init__(self, gemm, blas, handle):
        if not direct_gemm_supported(gemm):
            raise ValueError(f"cuBLAS path cannot run {gemm}")
        self.gemm, self.blas, self.handle = gemm, blas, handle
        single, batched, dtype = _BLAS_ROUTINES[gemm.ctype]
        self.single, self.batched = getattr(blas, single), getattr(blas, batched)
        self.itemsize = np.dtype(dtype).itemsize
        # host scalars alpha, beta = 0 (overwrite) and 1 (accumulate), kept alive with the object
        self.scalars = np.array([1, 0, 1], dtype=dtype)
        self.alpha = self.scalars.ctypes.data
        self.overwrite = self.alpha + self.itemsize
        self.accumulate = self.alpha + 2 * self.itemsize
        self.pointers = (0, 0, 0)

    def bind(self, a: int, b: int, c: int) -> None:
        g, size = self.gemm, self.itemsize
        self.pointers = (a + g.offset_a * size, b + g.offset_b * size, c + g.offset_c * size)

    def __call__(self) -> None:
        g = self.gemm
        a, b, c = self.pointers
        op_a = CUBLAS_OP_T if g.transpose_a else CUBLAS_OP_N
        op_b = CUBLAS_OP_T if g.transpose_b else CUBLAS_OP_N
        if g.batch == 1:
            self.single(self.handle, op_b, op_a, g.n, g.m, g.k, self.alpha, b, g.ldb, a, g.lda,
                        self.overwrite, c, g.ldc)
        elif not g.sum_batches:
            self.batched(self.handle, op_b, op_a, g.n, g.m, g.k, self.alpha, b, g.ldb, g.batch_stride_b,
                         a, g.lda, g.batch_stride_a, self.overwrite, c, g.ldc, g.batch_stride_c, g.batch)
        else:   # every batch adds into one C, the first overwriting it
            size = self.itemsize
            for index in range(g.batch):
                self.single(self.handle, op_b, op_a, g.n, g.m, g.k, self.alpha,
                            b + index * g.batch_stride_b * size, g.ldb, a + index * g.batch_stride_a * size,
                            g.lda, self.accumulate if index else self.overwrite, c, g.ldc)
