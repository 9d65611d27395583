"""The CUDA backend: a Graph becomes one CUDA module whose launches run in order on the GPU.

The stages up to codegen's kernel IR are the C backend's (`cached_pipeline`: simplify, fuse,
memory plan, lower), so both backends compute the same kernels over the same buffer table; only
the rendering differs (`codegen.render_cuda`). Arrays are CuPy arrays: a `CompiledCudaGraph`
owns one device arena for the temporaries and returns device arrays, which callers that hold
host tensors copy back (`graphc.backend` with GRAPHC_BACKEND=cuda).
"""
from __future__ import annotations

import re
import time

import runtime
from codegen.render_cuda import render_cuda_program
from graphc.backends.c import CallLocations, cached_pipeline
from graphc.ir.graph import Graph


# ptxas of CUDA 13.0 (driver 580) for sm_90 miscompiles an int32 max reduction over negated values
# (how graphc computes int32 min) at -O1 and above: the PTX is right and -O0 gives the right
# answer (seen on an H100, 2026-11-23; test_max_min_values_and_indices[*-int32]). Programs with an
# int32 max accumulator are built with ptxas at -O0; int32 reductions are rare in training steps.
PTXAS_O0_PATTERN = re.compile(r"\bint32_t acc\d+ = INT32_MIN;")


def ptxas_flags(source: str) -> tuple:
    """Extra NVRTC flags a CUDA source needs to work around known ptxas bugs."""
    return ("-Xptxas", "-O0") if PTXAS_O0_PATTERN.search(source) else ()


class CompiledCudaGraph(CallLocations):
    """A graph compiled to a CUDA module, callable with its placeholders' CuPy arrays.

    A program with gathers or scatters reads the device's index-error record after each call (a
    wait for the GPU) and raises IndexError as the C backend does."""

    def __init__(self, graph: Graph, aliases: dict | None = None, replay: bool = False):
        """`aliases`: output position -> placeholder name it may be written over (see Layout).

        `replay`: a call whose buffers all sit where an earlier call's did replays the launches as
        one captured CUDA graph (captured the second time those addresses are seen; not for
        programs whose products run through cuBLAS, see below); outputs of up to
        SMALL_OUTPUT_BYTES that the caller does not place with `out` then live in buffers this
        object owns, overwritten by the next call (`persistent` lists them: callers copy what
        they keep)."""
        import cupy

        started = time.perf_counter()
        self.plan, self.program_ir, self.layout, _ = cached_pipeline(graph, aliases)
        self.graph = self.plan.graph
        self.source, self.launches = render_cuda_program(self.program_ir)
        self.program = runtime.load_cuda_program(self.source, self.launches, extra_flags=ptxas_flags(self.source))
        self.compile_seconds = time.perf_counter() - started
        self.cache_hit = self.program.cache_hit
        self.arena = cupy.empty(max(self.layout.arena_bytes, 1), dtype=cupy.uint8)
        # temporaries are byte views of the arena: their data pointers are the arena's + offset
        self.temps = {b.name: self.arena[b.offset:b.offset + max(b.size, 1)]
                      for b in self.program_ir.buffers if b.role == "temp"}
        self.input_buffers = [b.name for b in sorted((b for b in self.program_ir.buffers if b.role == "input"),
                                                     key=lambda b: b.slot)]
        # CuPy refuses cuBLAS calls during stream capture: programs with library GEMMs run
        # launch by launch (their host cost is already a few calls per product)
        self.replay = replay and (self.program.gemm_mode != "library"
                                  or all(getattr(launch, "gemm", None) is None for launch in self.launches))
        self.persistent = {position: cupy.empty(shape, dtype=dtype)
                           for position, (_, shape, dtype) in enumerate(self.layout.outputs)
                           if replay and _nbytes(shape, dtype) <= SMALL_OUTPUT_BYTES}
        self.replays = 0                  # calls that ran as one CUDA graph launch
        self._graphs: dict = {}           # buffer addresses -> captured CUDA graph
        self._seen: dict = {}             # buffer addresses seen once (captured when seen again)

    def buffer_table(self, inputs: list, outputs: list) -> dict:
        """{buffer name: array} for the launches: inputs by slot, outputs by position, temps."""
        table = dict(self.temps)
        table.update(zip(self.input_buffers, inputs))
        table.update((f"out{position}", array) for position, array in enumerate(outputs))
        return table

    def __call__(self, bindings, out: dict | None = None) -> list:
        """Run with placeholders bound by name (CuPy arrays; host arrays are copied over). `out`
        maps output positions to device arrays to write into; aliased outputs write over their
        input's array. Returns device arrays, one per graph output."""
        import cupy

        inputs = [_dense(cupy.asarray(bindings[name])) for name in self.layout.input_names]
        persistent = self.persistent
        by_name = dict(zip(self.layout.input_names, inputs))
        aliased, out = self.layout.aliased or {}, out or {}
        outputs = [out[position] if position in out else by_name[aliased[position]] if position in aliased
                   else persistent[position] if position in persistent else cupy.empty(shape, dtype=dtype)
                   for position, (_, shape, dtype) in enumerate(self.layout.outputs)]
        table = self.buffer_table(inputs, outputs)
        if self.replay:
            self._run_or_replay(table)
        else:
            self.program(table)
        if self.program_ir.checks_indices:
            error = self.program.take_index_error()
            if error is not None:
                self.raise_index_error(*error)
        # a result that is an input unchanged (a clone simplified away) is copied: the caller adopts
        # results as new storages, and CuPy views carry no `base` to tell it they are someone's memory
        return [by_name[key].copy() if kind == "input" else outputs[key] for kind, key in self.layout.results]

    def _run_or_replay(self, table: dict) -> None:
        """Replay a captured graph when every buffer is where it was at its capture; capture the
        second time a set of addresses is seen; else launch one by one. A few sets are kept:
        state allocated afresh each step (gradients after zero_grad) often alternates between
        two addresses as the memory pool hands blocks back."""
        import cupy

        key = tuple(array.data.ptr for array in table.values())
        stream = cupy.cuda.get_current_stream()
        graph = self._graphs.get(key)
        if graph is None:
            if key not in self._seen:
                if len(self._seen) >= 4 * CAPTURED_GRAPHS:
                    self._seen.clear()
                self._seen[key] = True
                self.program(table)
                return
            if len(self._graphs) >= CAPTURED_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))   # the oldest capture
            # the graph holds raw addresses, and is launched only for a call whose (live) arrays
            # sit at exactly those addresses: it never needs to keep this call's arrays alive
            graph = self._graphs[key] = self.program.capture(table)
        graph.launch(stream)
        self.replays += 1


CAPTURED_GRAPHS = 4       # captured graphs kept per program (one per set of buffer addresses)

SMALL_OUTPUT_BYTES = 1 << 16


def _nbytes(shape, dtype) -> int:
    import numpy as np
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _dense(array):
    """C-contiguous, keeping 0-d arrays 0-d (ascontiguousarray would make them shape (1,))."""
    return array if array.flags.c_contiguous else array.copy(order="C")
