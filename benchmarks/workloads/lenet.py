"""W2: train step of the tutorial's LeNet-5 on 1×32×32 inputs, batch 64, SGD with momentum."""
from __future__ import annotations

from benchmarks.report import DerivedReference, Row, Target
from benchmarks.timing import milliseconds_per_step
from benchmarks.workloads.common import (Context, TrainingSetup, classification_batches, measure_each_system,
                                         measure_training)

ID = "W2"
BATCH = 64
IMAGE = (1, 32, 32)
CLASSES = 10
WARMUP, COUNTED = 10, 100


def build_model(framework):
    nn = framework.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def step_flops(batch: int = BATCH) -> float:
    """Multiply-add operations (×2) of one step in the convolutions and linear layers: forward,
    weight gradients, and input gradients of every layer but the first."""
    conv1 = 2.0 * batch * 6 * 28 * 28 * (1 * 5 * 5)
    conv2 = 2.0 * batch * 16 * 10 * 10 * (6 * 5 * 5)
    linear = [2.0 * batch * i * o for i, o in ((400, 120), (120, 84), (84, 10))]
    forward = conv1 + conv2 + sum(linear)
    return 2 * forward + conv2 + sum(linear)


def training_setup(seed: int, steps: int) -> TrainingSetup:
    batch = classification_batches(seed, steps, (BATCH,) + IMAGE, CLASSES)
    return TrainingSetup(build_model, "CrossEntropyLoss", learning_rate=0.01, momentum=0.9, batch=batch,
                         seed=seed)


def run(context: Context) -> list[Row]:
    warmup, counted = context.counts(WARMUP, COUNTED)
    setup = training_setup(context.seed, warmup + counted)
    flops = step_flops()
    row = Row(ID, f"LeNet-5 train step, batch {BATCH}", milliseconds_per_step(),
              reference_label="GEMM floor at R2",
              reference_from=DerivedReference("R2", work=flops),
              target=Target("≤ 0.5× PyTorch eager", 0.5, "torch", at_most=True), check_label="final loss")
    return [measure_each_system(context, row,
                                lambda system: measure_training(system, setup, row.unit, warmup, counted))]
