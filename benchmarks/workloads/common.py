"""What the workloads share: the run context, PyTorch's default init drawn with NumPy, and one
measuring routine for train steps and one for forward functions, written once for every system."""
from __future__ import annotations

import math
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from benchmarks.report import Result, Row
from benchmarks.systems import System
from benchmarks.timing import Unit, measure_calls, scaled


@dataclass
class Context:
    """How this run measures: the systems, threads, the --quick/--scale factor, the seed.

    In a child process `systems` is the one system it measures (none in the reference child) and
    `references` says whether to measure what no framework runs (roofs, NumPy at a row's shape).
    `threads` is None where every system keeps its own default."""
    systems: list
    threads: int | None = None
    scale: float = 1.0
    seed: int = 0
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))
    references: bool = True

    @property
    def thread_count(self) -> int:
        """`threads`, or all cores available to this process where it is None."""
        from benchmarks.machine import core_count
        return self.threads or core_count()

    def counts(self, warmup: int, counted: int) -> tuple[int, int]:
        """(warm-up, counted) calls after scaling. Three warm-up calls at least: a compiled train
        step traces twice (the first trace creates gradients and optimizer state) before it replays."""
        return scaled(warmup, self.scale, 3), scaled(counted, self.scale, 3)


def measure_each_system(context: Context, row: Row, measure: Callable[[System], Result],
                        jax: Callable[[System], Result] | None = None) -> Row:
    """Fill `row.results` with `measure(system)` for every system (`jax(system)` for JAX, which
    has no PyTorch API; a row without it has no JAX column); a failure is recorded, not raised."""
    for system in context.systems:
        how = jax if system.key == "jax" else measure
        if how is None:
            continue
        context.log(f"  {row.id} {row.title}: {system.label}")
        try:
            row.results[system.key] = how(system)
        except Exception as error:  # noqa: BLE001  (report every failure, keep measuring)
            row.results[system.key] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0][:300])
            row.failures.append((system.key, traceback.format_exc()))
    return row


# ---- initial weights -------------------------------------------------------------------------------
def pytorch_default_parameters(shapes: dict, seed: int) -> dict:
    """PyTorch's default init for Linear and Conv2d, drawn with NumPy: U(-1/√fan_in, 1/√fan_in)
    for a weight (kaiming_uniform with a=√5) and for its bias (fan_in of the sibling weight).

    `shapes`: parameter name -> shape, in `named_parameters()` order (equal in graphc and torch).
    """
    fan_in = {}
    for name, shape in shapes.items():
        owner, _, leaf = name.rpartition(".")
        if leaf == "weight":
            fan_in[owner] = int(np.prod(shape[1:]))
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in shapes.items():
        owner = name.rpartition(".")[0]
        bound = 1.0 / math.sqrt(fan_in[owner])
        arrays[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return arrays


def load_initial_parameters(system: System, model, seed: int) -> None:
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    arrays = pytorch_default_parameters(shapes, seed)
    model.load_state_dict({name: system.tensor(array) for name, array in arrays.items()})


# ---- data -------------------------------------------------------------------------------------------
def classification_batches(seed: int, count: int, shape: tuple, classes: int) -> Callable[[int], tuple]:
    """`count` fresh batches (standard-normal float32 inputs, int64 labels) drawn once from `seed`,
    so every system trains on the same data; returns step index -> (inputs, labels)."""
    rng = np.random.default_rng([seed, 1])
    batches = [(rng.standard_normal(shape, dtype=np.float32), rng.integers(0, classes, shape[0]))
               for _ in range(count)]
    return lambda index: batches[index]


def standard_normal(seed: int, shape: tuple) -> np.ndarray:
    return np.random.default_rng([seed, 2]).standard_normal(shape, dtype=np.float32)


# ---- train steps ------------------------------------------------------------------------------------
@dataclass
class TrainingSetup:
    """A train step: zero_grad, forward, loss, backward, SGD step; batch i is `batch(i)`."""
    build_model: Callable            # framework -> Module
    loss: str                        # a loss class in framework.nn
    learning_rate: float
    momentum: float
    batch: Callable[[int], tuple]    # step index -> (inputs, targets) NumPy arrays
    seed: int


def build_train_step(system: System, setup: TrainingSetup) -> Callable:
    """The model with its initial weights, the loss, the optimizer, and the step over them, on
    `system`'s framework (not yet compiled)."""
    framework = system.framework
    model = setup.build_model(framework)
    load_initial_parameters(system, model, setup.seed)
    criterion = getattr(framework.nn, setup.loss)()
    optimizer = framework.optim.SGD(model.parameters(), lr=setup.learning_rate, momentum=setup.momentum)

    def train_step(inputs, targets):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def batch_arguments(system: System, setup: TrainingSetup) -> Callable[[int], tuple]:
    """Step index -> that step's batch as `system`'s tensors."""
    def arguments(index):
        inputs, targets = setup.batch(index)
        return system.tensor(inputs), system.tensor(targets)
    return arguments


def measure_training(system: System, setup: TrainingSetup, unit: Unit, warmup: int, counted: int) -> Result:
    runner = system.prepare(build_train_step(system, setup))
    last = {}

    def call(inputs, targets):
        loss = runner(inputs, targets)
        system.realize(loss)
        last["loss"] = loss

    timing = measure_calls(call, batch_arguments(system, setup), warmup, counted, system.one_time_work(runner))
    return Result.from_timing(unit, timing, check=float(system.to_numpy(last["loss"])),
                              startup_note=system.startup_note(runner))


# ---- forward functions --------------------------------------------------------------------------------
def measure_forward(system: System, function: Callable, arrays: list, unit: Unit, warmup: int,
                    counted: int) -> Result:
    """Time `function(framework, *tensors)` without gradients on the same inputs every call; the
    checked value is the output's mean (in float64)."""
    framework = system.framework
    inputs = tuple(system.tensor(array) for array in arrays)

    def forward(*tensors):
        return function(framework, *tensors)

    runner = system.prepare(forward)
    last = {}

    def call(*tensors):
        output = runner(*tensors)
        system.realize(output)
        last["output"] = output

    with system.no_grad():
        timing = measure_calls(call, lambda index: inputs, warmup, counted, system.one_time_work(runner))
        check = float(np.mean(system.to_numpy(last["output"]), dtype=np.float64))
    return Result.from_timing(unit, timing, check=check, startup_note=system.startup_note(runner))
