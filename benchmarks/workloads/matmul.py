"""MM: matmul at 2048³ and at W1's layer shapes (M×N×K: an M×K times a K×N matrix), as GFLOP/s,
against NumPy's matmul at the same shape (the reference column) and the GEMM roof R2 (the target)."""
from __future__ import annotations

import numpy as np

from benchmarks.report import Result, Row, Target
from benchmarks.timing import gigaflops_per_second, measure_calls
from benchmarks.workloads.common import Context, measure_each_system, measure_forward, standard_normal

ID = "MM"
SHAPES = (  # (M, N, K, what it is, warm-up, counted)
    (2048, 2048, 2048, "square", 3, 20),
    (128, 512, 784, "W1 layer 1", 20, 200),
    (128, 256, 512, "W1 layer 2", 20, 200),
    (784, 512, 128, "a W1 weight gradient", 20, 200),
)


def product(framework, a, b):
    return framework.matmul(a, b)


def numpy_matmul(a: np.ndarray, b: np.ndarray, unit, warmup: int, counted: int) -> Result:
    """NumPy (its OpenBLAS) into a preallocated output: the best NumPy does at this shape."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    timing = measure_calls(lambda: np.matmul(a, b, out=out), lambda index: (), warmup, counted)
    return Result.from_timing(unit, timing, check=float(np.mean(out, dtype=np.float64)))


def run(context: Context) -> list[Row]:
    rows = []
    for m, n, k, what, warmup, counted in SHAPES:
        warmup, counted = context.counts(warmup, counted)
        a = standard_normal(context.seed + m, (m, k))
        b = standard_normal(context.seed + n, (k, n))
        unit = gigaflops_per_second(2.0 * m * n * k)
        row = Row(f"MM {m}×{n}×{k}", f"matmul, {what}", unit, reference_label="NumPy",
                  target=Target("≥ 80% of R2", 0.8, "R2", at_most=False), check_label="output mean")
        if context.references:      # in the reference child, which measures no framework
            row.reference = numpy_matmul(a, b, unit, warmup, counted)
        measure_each_system(context, row, lambda system: measure_forward(
            system, product, [a, b], unit, warmup, counted))
        rows.append(row)
    return rows
