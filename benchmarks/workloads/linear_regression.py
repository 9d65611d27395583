"""W5: the tutorial's linear regression, y = 2x + 1 on 11 points, Linear(1, 1), MSELoss, SGD lr 0.01,
full batch. Per-step overhead dominates: the step does almost no arithmetic."""
from __future__ import annotations

import numpy as np

from benchmarks.report import Row, Target
from benchmarks.timing import microseconds_per_step
from benchmarks.workloads import jax_steps
from benchmarks.workloads.common import Context, TrainingSetup, measure_each_system, measure_training

ID = "W5"
WARMUP, COUNTED = 10, 1000


def build_model(framework):
    return framework.nn.Linear(1, 1)


PARAMETER_SHAPES = {"weight": (1, 1), "bias": (1,)}


def jax_loss(parameters, inputs, targets):
    """The same model and loss for JAX: x @ weight.T + bias, mean squared error."""
    return jax_steps.mean_squared_error(inputs @ parameters["weight"].T + parameters["bias"], targets)


def training_setup(seed: int) -> TrainingSetup:
    inputs = np.arange(11, dtype=np.float32).reshape(-1, 1)
    targets = 2 * inputs + 1
    return TrainingSetup(build_model, "MSELoss", learning_rate=0.01, momentum=0.0,
                         batch=lambda index: (inputs, targets), seed=seed)


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    setup = training_setup(context.seed)
    row = Row(ID, "linear regression step, 11 samples", microseconds_per_step(),
              target=Target("≤ 10 µs/step", 10.0, "absolute", at_most=True), check_label="final loss")
    return [measure_each_system(
        context, row, lambda system: measure_training(system, setup, row.unit, warmup, counted),
        jax=lambda system: jax_steps.measure_training(system, setup, PARAMETER_SHAPES, jax_loss, row.unit,
                                                      warmup, counted))]
