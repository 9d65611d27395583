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
from graphc.schedule import GraphBuild, Schedule

BACKENDS = ("c", "numpy", "cuda")
_default = os.environ.get("GRAPHC_BACKEND", "c")
_compile_after = int(os.environ.get("GRAPHC_COMPILE_AFTER", "1"))
_programs: dict = {}    # structure key -> CompiledGraph
_seen: dict = {}        # structure key -> interpreted runs so far
stats = {"interpreted": 0, "compiled": 0, "replayed": 0}


def run(work) -> list:
    """Run a realize's `Schedule` (or a `GraphBuild`: graph + bindings) and return its outputs'
    arrays. A structure seen before is a dictionary lookup and one native call: the Graph is built
    only for the interpreted first runs and the compile."""
    if _default == "numpy":
        return _interpret(_graph_build(work))
    key = work.key
    entry = _programs.get(key)
    if entry is None:
        build = _graph_build(work)
        runs = _seen.get(key, 0)
        if runs < _compile_after:
            _seen[key] = runs + 1
            return _interpret(build)
        if _default == "cuda":
            program = _HostCopies(build.graph)
        else:
            from graphc.backends.c import CompiledGraph
            program = CompiledGraph(build.graph)
        entry = _programs[key] = (program, _placeholder_order(program))
        stats["compiled"] += 1
        program.current_graph = build.graph
        return program(build.bindings)
    stats["replayed"] += 1
    program, order = entry
    if type(work) is Schedule:
        program.current_graph = work   # errors name this call's lines, not the first compile's
        arrays = work.arrays
        try:
            return program.call_inputs([arrays[k] for k in order])
        finally:
            program.current_graph = None   # let this call's nodes go
    program.current_graph = work.graph
    return program(work.bindings)


def _graph_build(work) -> GraphBuild:
    return work.build() if type(work) is Schedule else work


def _placeholder_order(program) -> list:
    """For each input the program takes, in its order, the walk's placeholder number (`in<k>`)."""
    return [int(name[2:]) for name in program.input_names]


class _HostCopies:
    """A graph compiled for the GPU, called with host arrays and returning host arrays."""

    current_graph = None

    def __init__(self, graph):
        from graphc.backends.cuda import CompiledCudaGraph
        self.compiled = CompiledCudaGraph(graph)
        self.input_names = self.compiled.layout.input_names

    def call_inputs(self, arrays) -> list:
        return self(dict(zip(self.input_names, arrays)))

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
