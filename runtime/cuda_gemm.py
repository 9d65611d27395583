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
