"""The realize step's backend: which engine runs a gathered graph.

The NumPy reference interpreter runs everything today; the C backend slots in here, behind the
same `run(build)` call.
"""
from __future__ import annotations

from graphc import interpreter

_default = "numpy"


def run(build) -> list:
    """Run a `GraphBuild` (graph + bindings) and return its outputs' arrays."""
    return interpreter.evaluate(build.graph, build.bindings)


def set_default(name: str) -> None:
    global _default
    if name not in ("numpy",):
        raise ValueError(f"unknown backend {name!r}; available: 'numpy'")
    _default = name
