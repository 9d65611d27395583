"""The systems measured, as small adapters around one PyTorch-style framework module.

graphc and PyTorch share an API, so a workload writes its model, loss, optimizer and step once
against `system.framework` (either `graphc` or `torch`); the adapter says only what differs:
whether the step is wrapped in `graphc.compile`, how a NumPy array becomes a tensor, how to make
sure a result is computed before the clock stops, and what counts as one-time work (tracing,
compiling) when the startup time is reported.
"""
from __future__ import annotations

import importlib

import numpy as np

SYSTEM_KEYS = ("compiled", "lazy", "torch")


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


class TorchEager(System):
    """PyTorch eager on the CPU: every op runs when it is called."""
    key = "torch"
    label = "PyTorch eager"

    def tensor(self, array: np.ndarray):
        return self.framework.from_numpy(np.array(array, copy=True))

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.detach().numpy()


def _realize_graphc(value) -> None:
    if isinstance(value, (tuple, list)):
        for item in value:
            _realize_graphc(item)
    elif value is not None:
        value.numpy(force=True)   # computes a pending value; shares memory, copies nothing


LABELS = {cls.key: cls.label for cls in (GraphcCompiled, GraphcLazy, TorchEager)}


def load_systems(keys=SYSTEM_KEYS) -> tuple[list[System], dict[str, str]]:
    """The requested systems that can run here, and why any other could not (key -> reason)."""
    systems, missing = [], {}
    for key in keys:
        if key in ("compiled", "lazy"):
            import graphc
            systems.append(GraphcCompiled(graphc) if key == "compiled" else GraphcLazy(graphc))
        elif key == "torch":
            try:
                torch = importlib.import_module("torch")
            except ImportError as error:
                missing[key] = f"import torch failed: {error}"
                continue
            systems.append(TorchEager(torch))
        else:
            raise ValueError(f"unknown system {key!r}; choose from {', '.join(SYSTEM_KEYS)}")
    return systems, missing
