"""W1: train step of a 784→512→256→10 ReLU MLP, cross-entropy, SGD with momentum, batch 128."""
from __future__ import annotations

from benchmarks.report import DerivedReference, Row, Target
from benchmarks.timing import milliseconds_per_step
from benchmarks.workloads import jax_steps
from benchmarks.workloads.common import (Context, TrainingSetup, classification_batches, measure_each_system,
                                         measure_training)

ID = "W1"
BATCH = 128
LAYERS = ((784, 512), (512, 256), (256, 10))
CLASSES = 10
WARMUP, COUNTED = 20, 200


def build_model(framework):
    nn = framework.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


# the PyTorch model's named_parameters(), in order (Sequential numbers its modules; ReLUs have none)
PARAMETER_SHAPES = {name: shape for index, (inputs, outputs) in zip((0, 2, 4), LAYERS)
                    for name, shape in ((f"{index}.weight", (outputs, inputs)), (f"{index}.bias", (outputs,)))}


def jax_loss(parameters, inputs, labels):
    """The same model and loss for JAX: relu(linear) twice, linear, mean cross-entropy."""
    import jax
    hidden = jax.nn.relu(jax_steps.linear(parameters, "0", inputs))
    hidden = jax.nn.relu(jax_steps.linear(parameters, "2", hidden))
    return jax_steps.cross_entropy(jax_steps.linear(parameters, "4", hidden), labels)


def step_flops(batch: int = BATCH) -> float:
    """GEMM operations of one step: forward, weight gradients, and input gradients of every layer
    but the first (the batch needs none)."""
    products = [2.0 * batch * inputs * outputs for inputs, outputs in LAYERS]
    return 2 * sum(products) + sum(products[1:])


def training_setup(seed: int, steps: int) -> TrainingSetup:
    batch = classification_batches(seed, steps, (BATCH, LAYERS[0][0]), CLASSES)
    return TrainingSetup(build_model, "CrossEntropyLoss", learning_rate=0.01, momentum=0.9, batch=batch,
                         seed=seed)


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    setup = training_setup(context.seed, warmup + counted)
    flops = step_flops()
    row = Row(ID, f"mlp train step, batch {BATCH}", milliseconds_per_step(),
              reference_label="GEMM floor at R2",
              reference_from=DerivedReference("R2", work=flops),
              target=Target("≤ 0.8× PyTorch eager", 0.8, "torch", at_most=True), check_label="final loss")
    return [measure_each_system(
        context, row, lambda system: measure_training(system, setup, row.unit, warmup, counted),
        jax=lambda system: jax_steps.measure_training(system, setup, PARAMETER_SHAPES, jax_loss, row.unit,
                                                      warmup, counted))]
