"""The realize step's backend: which engine runs a gathered graph.

"c" (the default) compiles a graph structure to native code the second time it is seen and
replays it from then on; the first time it runs on the NumPy reference interpreter, so interactive
use never waits for a compiler (tiering). "numpy" always interprets. "cuda" compiles as "c" does
but runs the program on the GPU (`graphc.backends.cuda`), copying the host arrays in and the
results out, so the test suite's graphs can be checked on a GPU (GRAPHC_DEVICE_TESTS=1).
`GRAPHC_BACKEND` picks the default and `GRAPHC_COMPILE_AFTER=N` sets how many interpreted runs
come before compiling (0: compile at once).
"""
from __future__ import annotations

import os

from graphc import interpreter

BACKENDS = ("c", "numpy", "cuda")
_default = os.environ.get("GRAPHC_BACKEND", "c")
_compile_after = int(os.environ.get("GRAPHC_COMPILE_AFTER", "1"))
_programs: dict = {}    # structure key -> CompiledGraph
_seen: dict = {}        # structure key -> interpreted runs so far
stats = {"interpreted": 0, "compiled": 0, "replayed": 0}


def run(build) -> list:
    """Run a `GraphBuild` (graph + bindings) and return its outputs' arrays."""
    if _default == "numpy":
        return _interpret(build)
    key = build.key
    program = _programs.get(key)
    if program is None:
        runs = _seen.get(key, 0)
        if runs < _compile_after:
            _seen[key] = runs + 1
            return _interpret(build)
        if _default == "cuda":
            program = _programs[key] = _HostCopies(build.graph)
        else:
            from graphc.backends.c import CompiledGraph
            program = _programs[key] = CompiledGraph(build.graph)
        stats["compiled"] += 1
    else:
        stats["replayed"] += 1
    program.current_graph = build.graph   # errors name this call's lines, not the first compile's
    return program(build.bindings)


class _HostCopies:
    """A graph compiled for the GPU, called with host arrays and returning host arrays."""

    current_graph = None

    def __init__(self, graph):
        from graphc.backends.cuda import CompiledCudaGraph
        self.compiled = CompiledCudaGraph(graph)

    def __call__(self, bindings) -> list:
        import cupy
        self.compiled.current_graph = self.current_graph
        results = self.compiled({name: cupy.asarray(array) for name, array in bindings.items()})
        return [cupy.asnumpy(result) for result in results]


def _interpret(build) -> list:
    stats["interpreted"] += 1
    from graphc.autograd import anomaly
    if anomaly.is_anomaly_enabled():  # report the first node that makes a NaN or an Inf
        from graphc import check
        return interpreter.evaluate(build.graph, build.bindings, on_node=check.nan_watch())
    return interpreter.evaluate(build.graph, build.bindings)


def set_default(name: str, compile_after: int | None = None) -> None:
    """Choose the backend ('c', 'numpy' or 'cuda') and, for the compiling ones, how many
    interpreted runs come first."""
    global _default, _compile_after
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if name != _default and "cuda" in (name, _default):
        _programs.clear()   # compiled for the other kind of device
        _seen.clear()
    _default = name
    if compile_after is not None:
        _compile_after = compile_after


def get_default() -> str:
    return _default
