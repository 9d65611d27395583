"""W3b: `y = x*a + b` forward on 2^24 float32, no grad: pure bandwidth, held against the copy roof R1."""
from __future__ import annotations

from benchmarks.report import DerivedReference, Row, Target
from benchmarks.timing import gigabytes_per_second
from benchmarks.workloads.common import Context, measure_each_system, measure_forward, standard_normal

ID = "W3b"
ELEMENTS = 1 << 24
SCALE, SHIFT = 1.5, -0.25
WARMUP, COUNTED = 3, 20


def scale_and_shift(framework, x):
    return x * SCALE + SHIFT


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    x = standard_normal(context.seed, (ELEMENTS,))
    row = Row(ID, "x*a + b, 2^24", gigabytes_per_second(2 * 4 * ELEMENTS),
              reference_label="R1 copy roof", reference_from=DerivedReference("R1"),
              target=Target("≥ 85% of R1", 0.85, "R1", at_most=False), check_label="output mean")
    return [measure_each_system(context, row, lambda system: measure_forward(
        system, scale_and_shift, [x], row.unit, warmup, counted))]
