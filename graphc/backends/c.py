"""The C backend: a Graph becomes one compiled native program (fuse -> lower -> render -> cc).

A `CompiledGraph` owns its arena of temporaries and reuses it on every call; each call allocates
only the arrays it returns. Running the graph is one call across the Python boundary.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import pickle
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

import runtime
from codegen import render_program
from graphc import check, dump
from graphc.errors import op_error
from graphc.backends import sanitize
from graphc.ir.graph import Graph
from graphc.lowering import lower_program
from graphc.lowering.loops import FusionFailed
from graphc.passes.fuse import fuse
from graphc.passes.simplify import simplify

MAX_FUSION_RETRIES = 32
PROFILE = os.environ.get("GRAPHC_PROFILE", "") not in ("", "0")  # per-kernel timers in generated code
RECYCLE_BYTES = 1 << 20     # outputs this large are recycled between calls
SPARES_PER_OUTPUT = 2       # y = f(x) in a loop holds the previous result while computing the next


def compile_pipeline(graph: Graph, aliases: dict | None = None):
    """Graph -> (fusion plan, kernel-IR program, layout, C source), the stages `graphc dump` shows.

    The plan's graph is the simplified one (same placeholders, outputs in the same positions).
    Under GRAPHC_SANITIZE=1 the memory plan puts redzones between temporaries (sanitize.py).
    """
    graph, _ = simplify(graph)
    forced: set = set()
    for _ in range(MAX_FUSION_RETRIES):
        plan = fuse(graph, force_materialize=forced)
        name = "graph_" + hashlib.sha256(graph.to_json().encode()).hexdigest()[:12]
        try:
            program, layout = lower_program(plan, name, aliases, sanitize.redzone())
            break
        except FusionFailed as failure:
            forced.add(failure.node_id)
    else:
        raise RuntimeError("fusion did not converge")
    return plan, program, layout, render_program(program, profile=PROFILE)


@functools.lru_cache(maxsize=1)
def vector_flags() -> tuple:
    """Use 512-bit vectors where the CPU has them: glibc's 16-wide expf/tanhf made W3 (a tanh and
    an exp per element) 40% faster here than gcc's default 256-bit choice (5.8 -> 8.0 GB/s)."""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next((line for line in file if line.startswith("flags")), "")
    except OSError:
        return ()
    return ("-mprefer-vector-width=512",) if " avx512f" in flags else ()


def compile_options(program_ir) -> dict:
    """How a program is built (`runtime.compile_c`'s options): against OpenBLAS when it calls it,
    with wide vectors where the CPU has them, sanitized when GRAPHC_SANITIZE asks. `graphc dump`
    writes the build command from the same options."""
    return {"blas": program_ir.uses_blas, "extra_flags": vector_flags(), "sanitize": runtime.sanitize_requested()}


PIPELINE_FORMAT = "graphc-pipeline-1"


@functools.lru_cache(maxsize=1)
def _compiler_fingerprint() -> str:
    """A hash of the code that turns graphs into C, so a changed graphc never reuses old stages."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for folder in ("codegen", "graphc/lowering", "graphc/passes", "graphc/backends", "graphc/ops"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".py", ".jinja"):
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _pipeline_path(graph: Graph, aliases) -> "os.PathLike":
    text = (graph.to_json() + repr(sorted((aliases or {}).items())) + PIPELINE_FORMAT + str(PROFILE)
            + str(sanitize.redzone()) + _compiler_fingerprint())
    key = hashlib.sha256(text.encode()).hexdigest()
    # default_cache() checked this directory (refused if others may write it: these are pickles)
    return runtime.default_cache().directory / "pipelines" / key[:2] / f"{key}.pickle"


def _valid_stages(stages) -> bool:
    """What compile_pipeline returns: (FusionPlan over a Graph, Program, Layout, C source)."""
    from codegen.kernel_ir import Program
    from graphc.lowering.program import Layout
    from graphc.passes.fuse import FusionPlan
    return (type(stages) is tuple and len(stages) == 4 and isinstance(stages[0], FusionPlan)
            and isinstance(getattr(stages[0], "graph", None), Graph) and isinstance(stages[1], Program)
            and isinstance(stages[2], Layout) and isinstance(stages[3], str))


def cached_pipeline(graph: Graph, aliases: dict | None = None):
    """compile_pipeline, remembered on disk: a new process compiling a graph it has seen before
    skips simplify, fusion, lowering and rendering as well as the C compiler. A stored file that
    cannot be read as those stages (truncated, another object, a class that changed) is a miss:
    the stages are computed again and written over it."""
    path = _pipeline_path(graph, aliases)
    try:
        with open(path, "rb") as file:
            stages = pickle.load(file)
        if _valid_stages(stages):
            return stages
    except FileNotFoundError:
        pass
    except Exception:  # noqa: BLE001  (any unreadable entry is rebuilt; see runtime/cache.py)
        pass
    stages = compile_pipeline(graph, aliases)
    temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        runtime.default_cache().make_directory(path.parent)   # private, with graphc's marker
        with open(temporary, "wb") as file:
            pickle.dump(stages, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)  # atomic: a reader sees the whole file or none
    except (OSError, ValueError, pickle.PicklingError):   # a full disk, a cache that moved: only slower
        try:
            os.unlink(temporary)
        except OSError:
            pass
    return stages


class CallLocations:
    """What both backends' compiled graphs tell about the user's lines: graphs of one structure
    share a program, but each call's nodes carry their own lines, which errors should name.
    Subclasses set `graph` (the compiled graph) and `current_graph` (the call being run)."""

    current_graph = None

    def where_of(self, node_id: int) -> str:
        """The user line of a node of the compiled graph, as the current call's graph has it
        (simplify keeps the ids of the nodes it keeps, and one structure builds the same ids)."""
        node, current = self.graph.node(node_id), self.current_graph
        if current is not None and node_id in current and current.node(node_id).op == node.op:
            return current.node(node_id).where
        return node.where

    def located_graph(self) -> Graph:
        """The compiled graph with every node's user line as the current call's graph has it."""
        if self.current_graph is None:
            return self.graph
        located = self.graph.copy()
        for node in located.nodes():
            node.where = self.where_of(node.id)
        return located

    def raise_index_error(self, node_id: int, index: int, size: int):
        """The IndexError for a gather/scatter index computed inside the graph that fell outside
        its axis (the generated code records the first one and clamps the access)."""
        node = self.graph.node(node_id)
        raise op_error(node.op, f"index {index} is out of bounds for an axis of size {size} (an index "
                                "computed inside the graph)", self.where_of(node_id), kind=IndexError,
                       hint="the graph's other results were computed with this index clamped into range; "
                            "check the indices (e.g. labels against the number of classes)")


class CompiledGraph(CallLocations):
    """A graph compiled to native code, callable with its placeholders' arrays."""

    def __init__(self, graph: Graph, aliases: dict | None = None, check: bool = False):
        """`aliases`: output position -> placeholder name it may be written over (see Layout).
        `check`: run kernel by kernel against the reference interpreter (graphc.check)."""
        self.check = check
        self._stepper = None
        # the graph of the call being run: graphs of one structure share a program, but each
        # call's nodes carry their own user lines, which error messages should name
        self.current_graph = None
        started = time.perf_counter()
        self.plan, self.program_ir, self.layout, self.source = cached_pipeline(graph, aliases)
        options = compile_options(self.program_ir)
        sanitized = options["sanitize"]
        self.program = runtime.compile_c(self.source, "graphc_entry", **options)
        runtime.get_num_threads()  # applies GRAPHC_NUM_THREADS (default: all cores) once
        # gathers and scatters record the first index outside its axis here (see the C prelude)
        self._index_error = None
        if getattr(self.program_ir, "checks_indices", False):
            library = ctypes.CDLL(str(self.program.library_path))
            self._index_error = (ctypes.c_int64 * 3).in_dll(library, "graphc_index_error")
        self.graph = self.plan.graph
        self.compile_seconds = time.perf_counter() - started
        self.cache_hit = self.program.cache_hit
        if dump.CAPTURE:  # `graphc dump` / GRAPHC_DUMP: keep every stage of this compile
            dump.record(self, graph)
        # 64-byte aligned arena, owned by this program and reused across calls
        raw = np.empty(self.layout.arena_bytes + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        self._arena_owner = raw
        self.arena = raw[start:start + max(self.layout.arena_bytes, 1)]
        if sanitized:  # redzones and alignment slack become unaddressable for ASan
            sanitize.poison_arena(raw, self.arena, self.layout.memory.poison)

        # output arrays of earlier calls, reused once nobody else holds them (a fresh large array
        # costs page faults on first touch, often more than the arithmetic that fills it)
        self._spare_outputs = [[] for _ in self.layout.outputs]
        # results as (kind, position): an input's position among input_names, or an output's
        position_of = {name: k for k, name in enumerate(self.layout.input_names)}
        self._results = [("input", position_of[key]) if kind == "input" else (kind, key)
                         for kind, key in self.layout.results]

    def kernel_seconds(self) -> list:
        """Seconds spent in each kernel over all calls so far (programs built with GRAPHC_PROFILE=1)."""
        if not PROFILE:
            raise RuntimeError("per-kernel times need GRAPHC_PROFILE=1 when the program is compiled")
        library = ctypes.CDLL(str(self.program.library_path))
        count = len(self.program_ir.kernels)
        return list((ctypes.c_double * count).in_dll(library, "graphc_kernel_seconds"))

    def _output_array(self, position: int) -> np.ndarray:
        _, shape, dtype = self.layout.outputs[position]
        spares = self._spare_outputs[position]
        for array in spares:
            # references: the list, the loop variable and getrefcount's argument
            if sys.getrefcount(array) <= 3:
                return array
        array = np.empty(shape, dtype=dtype)
        if array.nbytes >= RECYCLE_BYTES:
            if len(spares) >= SPARES_PER_OUTPUT:
                spares.pop(0)
            spares.append(array)
        return array

    def output_arrays(self) -> list:
        """Fresh (or recycled) arrays for every distinct output."""
        return [self._output_array(k) for k in range(len(self.layout.outputs))]

    def run_arrays(self, inputs: list, outputs: list) -> None:
        """Run on arrays already in slot order (the compile fast path's entry)."""
        if self.check or check.active():
            self._run_checked(inputs, outputs)
            return
        self.program(inputs + outputs + [self.arena])
        if self._index_error is not None and self._index_error[0] >= 0:
            self._raise_index_error()

    def _raise_index_error(self):
        node_id, index, size = self._index_error[0], self._index_error[1], self._index_error[2]
        self._index_error[0] = -1
        self.raise_index_error(node_id, index, size)

    def _run_checked(self, inputs: list, outputs: list) -> None:
        compare, nan = check.wanted(self)
        if compare or nan:
            check.run_checked(self, inputs, outputs, compare, nan)
        else:
            self.program(inputs + outputs + [self.arena])

    @property
    def input_names(self) -> list:
        return self.layout.input_names

    def call_inputs(self, arrays) -> list:
        """Run with the inputs in `input_names` order (the lazy core's cached realize)."""
        inputs = [array if array.flags.c_contiguous else np.require(array, requirements="C")
                  for array in arrays]
        outputs = [self._output_array(k) for k in range(len(self.layout.outputs))]
        self.run_arrays(inputs, outputs)
        return [inputs[key] if kind == "input" else outputs[key] for kind, key in self._results]

    def __call__(self, bindings, out: dict | None = None) -> list:
        """Run with placeholders bound by name. `out` maps output positions (in the distinct
        outputs) to arrays to write into; aliased outputs write over their input's array."""
        # np.require, not np.ascontiguousarray: that one turns a 0-d array into shape (1,), which a
        # graph returning its 0-d input unchanged would hand back
        inputs = [np.require(bindings[name], requirements="C") for name in self.layout.input_names]
        outputs = [self._output_array(k) for k in range(len(self.layout.outputs))]
        if self.layout.aliased:
            by_name = dict(zip(self.layout.input_names, inputs))
            for position, name in self.layout.aliased.items():
                outputs[position] = by_name[name]
        if out:
            for position, array in out.items():
                outputs[position] = array
        self.run_arrays(inputs, outputs)
        by_name = dict(zip(self.layout.input_names, inputs))
        return [by_name[key] if kind == "input" else outputs[key] for kind, key in self.layout.results]
