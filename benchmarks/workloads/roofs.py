"""The machine's roofs: R1, copy bandwidth of 2^25 float32 (the faster of numpy.copyto and a copy
split over the run's threads), and R2, NumPy's float32 matmul at 2048³."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.report import Result, Row
from benchmarks.timing import gigabytes_per_second, gigaflops_per_second, measure_calls
from benchmarks.workloads.common import Context, standard_normal

COPY_ELEMENTS = 1 << 25
GEMM_SIZE = 2048
WARMUP, COUNTED = 3, 20


def copy_roof(context: Context) -> list[Row]:
    """R1: GB/s counting the read and the write."""
    warmup, counted = context.counts(WARMUP, COUNTED)
    source = np.full(COPY_ELEMENTS, 1.5, dtype=np.float32)
    destination = np.zeros_like(source)
    destination[:] = 0.0    # fault the pages in before timing
    unit = gigabytes_per_second(2 * 4 * COPY_ELEMENTS)
    row = Row("R1", "copy roof, 2^25 float32", unit, reference_label="")
    single = Result.from_timing(unit, measure_calls(lambda: np.copyto(destination, source), lambda i: (),
                                                    warmup, counted))
    candidates = {"numpy.copyto": single}
    if context.thread_count > 1:
        bounds = np.linspace(0, COPY_ELEMENTS, context.thread_count + 1).astype(int)
        pieces = [(destination[lo:hi], source[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
        with ThreadPoolExecutor(max_workers=context.thread_count) as pool:
            def threaded_copy():   # NumPy releases the GIL while copying
                for future in [pool.submit(np.copyto, out, piece) for out, piece in pieces]:
                    future.result()
            candidates[f"{context.thread_count}-thread copy"] = Result.from_timing(
                unit, measure_calls(threaded_copy, lambda i: (), warmup, counted))
    best = max(candidates, key=lambda name: candidates[name].value or 0.0)
    row.reference = candidates[best]
    row.reference_label = best
    row.notes.append(", ".join(f"{name} {candidates[name].value:.1f} GB/s (fastest call "
                               f"{candidates[name].best:.1f})" for name in candidates))
    return [row]


def gemm_roof(context: Context) -> list[Row]:
    """R2: NumPy float32 matmul 2048³ into a preallocated output, GFLOP/s."""
    warmup, counted = context.counts(WARMUP, COUNTED)
    a = standard_normal(context.seed, (GEMM_SIZE, GEMM_SIZE))
    b = standard_normal(context.seed + 1, (GEMM_SIZE, GEMM_SIZE))
    out = np.empty_like(a)
    unit = gigaflops_per_second(2.0 * GEMM_SIZE ** 3)
    row = Row("R2", "GEMM roof, NumPy matmul 2048³", unit, reference_label="NumPy")
    row.reference = Result.from_timing(unit, measure_calls(lambda: np.matmul(a, b, out=out), lambda i: (),
                                                           warmup, counted))
    return [row]
