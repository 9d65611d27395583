"""The systems measured, as small adapters around one PyTorch-style framework module.

graphc and PyTorch share an API, so a workload writes its model, loss, optimizer and step once
against `system.framework` (either `graphc` or `torch`); the adapter says only what differs:
whether the step is wrapped in `graphc.compile`, how a NumPy array becomes a tensor, how to make
sure a result is computed before the clock stops, and what counts as one-time work (tracing,
compiling) when the startup time is reported. JAX has no PyTorch API: its workloads are written
as `jax.jit` functions of their own (`benchmarks/workloads/jax_steps.py`), and its adapter only
converts, realizes and jits.

Each system is measured in a child process of its own (`benchmarks/child.py`), which imports only
that system's framework; this module imports none of them (`load_system` does, in the child).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util

import numpy as np

SYSTEM_KEYS = ("compiled", "lazy", "torch", "jax")
DEFAULT_SYSTEMS = SYSTEM_KEYS
REFERENCE = "reference"     # the child that measures what no framework runs (NumPy roofs and references)
FRAMEWORK_MODULES = {"compiled": "graphc", "lazy": "graphc", "torch": "torch", "jax": "jax"}


class System:
    """One column of the table: a framework plus how a step is run on it."""
    key = ""
    label = ""

    def __init__(self, framework):
        self.framework = framework

    def prepare(self, function):
        """The callable that is timed: `function` itself, or its compiled form."""
        return function

    def tensor(self, array: np.ndarray):
        """A tensor holding a copy of `array` (made outside the timed region)."""
        return self.framework.tensor(array)

    def realize(self, value) -> None:
        """Make sure `value` (a tensor, or a tuple of them) is computed; eager systems do nothing."""

    def to_numpy(self, tensor) -> np.ndarray:
        raise NotImplementedError

    def one_time_work(self, runner):
        """A counter that grows while calls still trace or compile, or None (only the first call
        is startup)."""
        return None

    def startup_note(self, runner) -> str:
        return ""

    def set_threads(self, count: int) -> None:
        self.framework.set_num_threads(count)

    def threads_in_use(self) -> int | None:
        """The thread count the framework runs its parallel loops with (None: it does not say)."""
        return self.framework.get_num_threads()

    def no_grad(self):
        return self.framework.no_grad()

    def version(self) -> str:
        return getattr(self.framework, "__version__", "?")


class GraphcCompiled(System):
    """graphc with the step wrapped in `graphc.compile`: traced once, replayed as one native call."""
    key = "compiled"
    label = "graphc compiled"

    def prepare(self, function):
        return self.framework.compile(function)

    def realize(self, value) -> None:
        _realize_graphc(value)

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.numpy(force=True)

    def one_time_work(self, runner):
        return lambda: len(runner.stats()["history"]) + runner.stats()["fallbacks"]

    def startup_note(self, runner) -> str:
        history = runner.stats()["history"]
        hits = [entry.get("cache_hit") for entry in history if entry.get("kept")]
        if not hits:
            return f"{len(history)} traces"
        cached = "cache hit" if all(hits) else "compiled" if not any(hits) else "partly cached"
        return f"{len(history)} traces, {cached}"


class GraphcLazy(System):
    """graphc without `graphc.compile`: lazy tensors, each gathered graph interpreted the first
    time and compiled to native code the next (tiering)."""
    key = "lazy"
    label = "graphc lazy"

    def prepare(self, function):
        from graphc import backend
        self._compiled_before = backend.stats["compiled"]
        return function

    def realize(self, value) -> None:
        _realize_graphc(value)

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.numpy(force=True)

    def one_time_work(self, runner):
        from graphc import backend
        return lambda: backend.stats["interpreted"] + backend.stats["compiled"]

    def startup_note(self, runner) -> str:
        from graphc import backend
        compiled = backend.stats["compiled"] - getattr(self, "_compiled_before", 0)
        return f"{compiled} graphs compiled"

    def native_calls(self) -> int:
        """Realizes so far, each one call into native code or the interpreter (`graphc.backend.stats`)."""
        from graphc import backend
        return backend.stats["interpreted"] + backend.stats["compiled"] + backend.stats["replayed"]


class TorchEager(System):
    """PyTorch eager on the CPU: every op runs when it is called."""
    key = "torch"
    label = "PyTorch eager"

    def tensor(self, array: np.ndarray):
        return self.framework.from_numpy(np.array(array, copy=True))

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.detach().numpy()


class JaxJit(System):
    """JAX on the CPU, each step a `jax.jit` function (compiled at its first call)."""
    key = "jax"
    label = "JAX jit"

    def __init__(self, jax):
        import jax.numpy
        super().__init__(jax.numpy)
        self.jax = jax

    def prepare(self, function):
        return self.jax.jit(function)

    def tensor(self, array: np.ndarray):
        array = np.array(array, copy=True)
        if array.dtype == np.int64:     # JAX runs 32-bit integers unless x64 is enabled
            array = array.astype(np.int32)
        return self.jax.device_put(array)

    def realize(self, value) -> None:
        self.jax.block_until_ready(value)

    def to_numpy(self, tensor) -> np.ndarray:
        return np.asarray(tensor)

    def set_threads(self, count: int) -> None:
        """XLA's CPU thread pools are sized when jax is imported; `XLA_FLAGS` (set by the child
        before the import) is the only setting, and it knows one thread or the default."""

    def threads_in_use(self) -> int | None:
        return None

    def version(self) -> str:
        return self.jax.__version__

    def no_grad(self):
        return contextlib.nullcontext()


def _realize_graphc(value) -> None:
    if isinstance(value, (tuple, list)):
        for item in value:
            _realize_graphc(item)
    elif value is not None:
        value.numpy(force=True)   # computes a pending value; shares memory, copies nothing


LABELS = {cls.key: cls.label for cls in (GraphcCompiled, GraphcLazy, TorchEager, JaxJit)}
LABELS[REFERENCE] = "reference (NumPy)"


def check_keys(keys) -> None:
    unknown = [key for key in keys if key not in SYSTEM_KEYS]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(map(repr, unknown))}; choose from {', '.join(SYSTEM_KEYS)}")


def unavailable(keys) -> dict[str, str]:
    """Which of `keys` cannot run here and why, found without importing any framework."""
    check_keys(keys)
    missing = {}
    for key in keys:
        module = FRAMEWORK_MODULES[key]
        if importlib.util.find_spec(module) is None:
            missing[key] = f"{module} is not installed"
    return missing


def load_system(key: str) -> System:
    """The system `key`, importing its framework (in the child process that measures it)."""
    check_keys([key])
    framework = importlib.import_module(FRAMEWORK_MODULES[key])
    classes = {"compiled": GraphcCompiled, "lazy": GraphcLazy, "torch": TorchEager, "jax": JaxJit}
    return classes[key](framework)


class Placeholder:
    """A system as the parent process knows it: a key and a label, no framework. Workloads that
    start their own processes (W1-compile, CS, C1) read only `key`."""

    def __init__(self, key: str):
        self.key = key
        self.label = LABELS.get(key, key)
