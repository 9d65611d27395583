"""W4: row softmax forward of a 4096×4096 float32 matrix, no grad, as GB/s of one read and one write."""
from __future__ import annotations

from benchmarks.report import DerivedReference, Row, Target
from benchmarks.timing import gigabytes_per_second
from benchmarks.workloads.common import Context, measure_each_system, measure_forward, standard_normal

ID = "W4"
SIZE = 4096
WARMUP, COUNTED = 3, 20


def row_softmax(framework, x):
    return framework.softmax(x, dim=1)


def row_softmax_jax(numpy, x):
    import jax
    return jax.nn.softmax(x, axis=1)


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    x = standard_normal(context.seed, (SIZE, SIZE))
    row = Row(ID, f"row softmax {SIZE}×{SIZE}", gigabytes_per_second(2 * 4 * SIZE * SIZE),
              reference_label="R1 copy roof", reference_from=DerivedReference("R1"),
              target=Target("≥ 12 GB/s", 12.0, "absolute", at_most=False), check_label="output mean")
    return [measure_each_system(
        context, row, lambda system: measure_forward(system, row_softmax, [x], row.unit, warmup, counted),
        jax=lambda system: measure_forward(system, row_softmax_jax, [x], row.unit, warmup, counted))]
