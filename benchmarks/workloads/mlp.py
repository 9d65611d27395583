"""W1: train step of a 784→512→256→10 ReLU MLP, cross-entropy, SGD with momentum, batch 128."""
from __future__ import annotations

from benchmarks.report import Row, Target
from benchmarks.timing import milliseconds_per_step
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
              reference_from=("R2", lambda gigaflops: flops / (gigaflops * 1e9) * 1e3),
              target=Target("≤ 0.8× PyTorch eager", 0.8, "torch", at_most=True), check_label="final loss")
    return [measure_each_system(context, row,
                                lambda system: measure_training(system, setup, row.unit, warmup, counted))]
