"""The JAX versions of the train steps (W1, W5): the same model, loss, SGD and initial weights as
the PyTorch-API version, written as a `jax.jit` function of (parameters, momenta, inputs, targets)
that returns the new parameters, momenta and the loss. Parameters and momenta are donated, so XLA
updates them in place, as a JAX training loop does. Imported only in the JAX child process.
"""
from __future__ import annotations

from typing import Callable

from benchmarks.report import Result
from benchmarks.systems import System
from benchmarks.timing import Unit, measure_calls
from benchmarks.workloads.common import TrainingSetup, pytorch_default_parameters


def linear(parameters: dict, name: str, x):
    """`x @ weight.T + bias`, as torch.nn.Linear computes it."""
    return x @ parameters[f"{name}.weight"].T + parameters[f"{name}.bias"]


def cross_entropy(logits, labels):
    """Mean cross-entropy of integer labels (torch.nn.CrossEntropyLoss)."""
    import jax
    import jax.numpy as jnp
    log_probabilities = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_probabilities, labels[:, None], axis=1))


def mean_squared_error(predictions, targets):
    import jax.numpy as jnp
    return jnp.mean((predictions - targets) ** 2)


def sgd_step(loss_of: Callable, learning_rate: float, momentum: float) -> Callable:
    """One SGD step as torch.optim.SGD takes it: with momentum, buf = momentum * buf + grad (buf
    starts at zero, which equals PyTorch's first step, buf = grad) and p -= lr * buf."""
    import jax

    def step(parameters, momenta, inputs, targets):
        loss, gradients = jax.value_and_grad(loss_of)(parameters, inputs, targets)
        if momentum:
            momenta = jax.tree_util.tree_map(lambda buffer, grad: momentum * buffer + grad, momenta, gradients)
            gradients = momenta
        parameters = jax.tree_util.tree_map(lambda value, grad: value - learning_rate * grad, parameters,
                                            gradients)
        return parameters, momenta, loss

    return jax.jit(step, donate_argnums=(0, 1))


def measure_training(system: System, setup: TrainingSetup, shapes: dict, loss_of: Callable, unit: Unit,
                     warmup: int, counted: int) -> Result:
    """Time the jitted step on `setup`'s batches; `shapes` are the PyTorch model's parameter shapes
    in `named_parameters()` order, so the initial weights are the very arrays the others get."""
    import jax.numpy as jnp
    arrays = pytorch_default_parameters(shapes, setup.seed)
    state = {"parameters": {name: system.tensor(array) for name, array in arrays.items()}}
    state["momenta"] = {name: jnp.zeros_like(value) for name, value in state["parameters"].items()}
    step = sgd_step(loss_of, setup.learning_rate, setup.momentum)

    def arguments(index):
        inputs, targets = setup.batch(index)
        return system.tensor(inputs), system.tensor(targets)

    def call(inputs, targets):
        state["parameters"], state["momenta"], state["loss"] = step(state["parameters"], state["momenta"],
                                                                    inputs, targets)
        system.realize(state["loss"])

    timing = measure_calls(call, arguments, warmup, counted)
    return Result.from_timing(unit, timing, check=float(system.to_numpy(state["loss"])),
                              startup_note="jit at the first call")
