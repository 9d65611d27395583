"""W3: `y = tanh(x*a + b)*0.5 + sigmoid(x)*c` forward on 2^24 float32, no grad: transcendental
math fused into one pass, reported as GB/s of one read and one write."""
from __future__ import annotations

from benchmarks.report import DerivedReference, Row, Target
from benchmarks.timing import gigabytes_per_second
from benchmarks.workloads.common import Context, measure_each_system, measure_forward, standard_normal

ID = "W3"
ELEMENTS = 1 << 24
SCALE, SHIFT, WEIGHT = 1.5, -0.25, 0.75      # a, b, c
WARMUP, COUNTED = 3, 20


def fused(framework, x):
    return framework.tanh(x * SCALE + SHIFT) * 0.5 + framework.sigmoid(x) * WEIGHT


def fused_jax(numpy, x):
    """The same for JAX (`numpy` is jax.numpy; sigmoid is jax.nn's)."""
    import jax
    return numpy.tanh(x * SCALE + SHIFT) * 0.5 + jax.nn.sigmoid(x) * WEIGHT


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    x = standard_normal(context.seed, (ELEMENTS,))
    row = Row(ID, "tanh(x*a + b)*0.5 + sigmoid(x)*c, 2^24", gigabytes_per_second(2 * 4 * ELEMENTS),
              reference_label="R1 copy roof", reference_from=DerivedReference("R1"),
              target=Target("≥ 15 GB/s", 15.0, "absolute", at_most=False), check_label="output mean")
    return [measure_each_system(
        context, row, lambda system: measure_forward(system, fused, [x], row.unit, warmup, counted),
        jax=lambda system: measure_forward(system, fused_jax, [x], row.unit, warmup, counted))]
