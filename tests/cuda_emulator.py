"""Run graphc's generated CUDA programs on the CPU, for tests on machines without a GPU.

The rendered CUDA source is compiled as C++ by the system g++ with `tests/cuda_emulation.h`
force-included (CUDA's keywords, thread indices, barriers, warp shuffles, shared memory and
atomics on real host threads), plus one `extern "C"` host entry per launch appended here:

    int emu_<kernel>(void **buffers, const long long *dims, long long shared_bytes)

`buffers` are the launch's parameters in manifest order, `dims` its grid and block. The entry
casts each pointer to the kernel's parameter type, read from the kernel's own signature, so the
renderer needs no host-side knowledge. Libraries are built through the runtime's build cache
(`GRAPHC_CACHE_DIR` or the user cache), keyed by the source, the header and the compiler.

`EmulatedCudaGraph` mirrors `graphc.backends.cuda.CompiledCudaGraph` with NumPy arrays in place of
CuPy ones: the same pipeline, buffer table (inputs, outputs, arena offsets) and manifest order.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

import runtime
from codegen.render_cuda import render_cuda_program
from graphc.backends.c import CallLocations
from runtime.compiler import Compiler, run_build_command
from runtime.cuda_gemm import library_gemm

HEADER = Path(__file__).resolve().with_name("cuda_emulation.h")
FLAGS = ("-std=c++20", "-O1", "-pthread", "-fPIC", "-w")
GARBAGE = 0xFF   # fresh buffers start as NaN (floats) / -1 (integers): unwritten elements show

_SIGNATURE = re.compile(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\(\n(.*?)\) \{', re.S)
_PARAMETER = re.compile(r"^(.*?)\s*(\w+)$")


class EmulationError(RuntimeError):
    """A launch the emulator refused or stopped (a barrier some thread never reached, a block too big)."""


class EmulatorCompiler(Compiler):
    """g++ building a rendered CUDA program plus host entries into a shared library, with the
    emulation header force-included (from its precompiled copy, which halves each build)."""

    kind = "shared-library"
    source_name = "program.cu.cpp"
    library_name = "program.so"
    toolchain = "C++ compiler (CUDA emulation)"

    def __init__(self, cxx: str = "g++", cache=None):
        found = shutil.which(cxx)
        if found is None:
            raise runtime.ToolchainMissing(f"C++ compiler {cxx!r} was not found", "apt-get install g++")
        self.command = found
        self.cache = cache

    def key_material(self) -> dict:
        return {"toolchain": "cuda-emulation", "command": self.command, "version": _version(self.command),
                "flags": list(FLAGS), "header": hashlib.sha256(HEADER.read_bytes()).hexdigest()}

    def build(self, source: str, out_dir: Path) -> Path:
        source_path = self.write_source(source, Path(out_dir))
        output = Path(out_dir) / self.library_name
        header = PrecompiledHeader(self.command).compile(HEADER.read_text(), cache=self.cache).source_path
        run_build_command([self.command, *FLAGS, "-shared", "-include", str(header), str(source_path),
                           "-o", str(output)], source_path=source_path, toolchain=self.toolchain)
        return output


class PrecompiledHeader(Compiler):
    """The emulation header precompiled (a cache entry holding `cuda_emulation.h` beside its
    `.gch`, which g++ takes in place of the header when the flags match)."""

    kind = "precompiled-header"
    source_name = HEADER.name
    toolchain = "C++ compiler (CUDA emulation header)"

    def __init__(self, command: str):
        self.command = command

    def key_material(self) -> dict:
        return {"toolchain": "cuda-emulation-header", "command": self.command,
                "version": _version(self.command), "flags": list(FLAGS)}

    def build(self, source: str, out_dir: Path) -> Path:
        header = self.write_source(source, Path(out_dir))
        output = Path(out_dir) / f"{HEADER.name}.gch"
        run_build_command([self.command, *FLAGS, "-x", "c++-header", str(header), "-o", str(output)],
                          source_path=header, toolchain=self.toolchain)
        return output


@functools.lru_cache(maxsize=None)
def _version(command: str) -> str:
    return subprocess.run([command, "--version"], capture_output=True, text=True, check=False).stdout


def kernel_parameters(source: str) -> dict:
    """{kernel name: [parameter C type, ...]} from the rendered `__global__` signatures."""
    found = {}
    for name, text in _SIGNATURE.findall(source):
        types = []
        for parameter in text.split(","):
            ctype, _ = _PARAMETER.match(parameter.strip()).groups()
            types.append(ctype.replace("__restrict__", "").strip())
        found[name] = types
    return found


def function_text(source: str, name: str) -> str:
    """The text of kernel `name`'s `__global__` function, signature to closing brace."""
    start = source.index(f" {name}(\n")
    return source[start:source.index("\n}\n", start)]


def _synchronizes(body: str) -> bool:
    """Whether a kernel's threads meet (barriers, shuffles, shared memory): then a block must end
    before the next starts. Kernels without any of these may run their blocks interleaved."""
    return any(word in body for word in ("__syncthreads", "__shfl", "__shared__", "graphc_block_reduce",
                                          "graphc_gemm", "GRAPHC_DYNAMIC_SHARED"))


def host_entries(source: str, launches) -> str:
    """The C++ appended to the program: per launch, a trampoline casting the buffer table to the
    kernel's parameters and an `emu_` entry running it over a grid."""
    parameters = kernel_parameters(source)
    pieces = ["\n/* ---- host entries for the CUDA emulator (tests/cuda_emulator.py) ---- */"]
    for launch in launches:
        types = parameters[launch.name]
        if len(types) != len(launch.params):
            raise ValueError(f"kernel {launch.name} takes {len(types)} parameters, the manifest lists "
                             f"{len(launch.params)}: {launch.params}")
        arguments = ", ".join(f"({ctype})buffers[{k}]" for k, ctype in enumerate(types))
        pieces.append(
            f"static void graphc_emulated_{launch.name}(void **buffers) {{ {launch.name}({arguments}); }}\n"
            f'extern "C" __attribute__((visibility("default"))) int emu_{launch.name}('
            f"void **buffers, const long long *dims, long long shared_bytes) {{\n"
            f'  return graphc_emulation::run("{launch.name}", graphc_emulated_{launch.name}, buffers, dims, '
            f"shared_bytes, {str(not _synchronizes(function_text(source, launch.name))).lower()});\n}}")
    pieces.append('extern "C" __attribute__((visibility("default"))) const char *emu_error() '
                  "{ return graphc_emulation::error_message; }")
    pieces.append('extern "C" __attribute__((visibility("default"))) void emu_release() '
                  "{ graphc_emulation::release_pool(); }")
    pieces.append('extern "C" __attribute__((visibility("default"))) void emu_set_deadline(double seconds) '
                  "{ graphc_emulation::deadlock_seconds = seconds; }\n")
    return "\n".join(pieces)


class EmulatedProgram:
    """A rendered CUDA program compiled for the host; `run(buffers)` runs its manifest in order."""

    def __init__(self, source: str, launches, cache=None, deadline_seconds: float = 20.0):
        """`deadline_seconds`: how long a thread may wait at a barrier before the launch fails."""
        self.launches = list(launches)
        self.source = source + host_entries(source, self.launches)
        self.artifact = EmulatorCompiler(cache=cache).compile(self.source, cache=cache)
        self.library = ctypes.CDLL(str(self.artifact.path))
        self.entries = {}
        for launch in self.launches:
            entry = getattr(self.library, f"emu_{launch.name}")
            entry.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_longlong), ctypes.c_longlong]
            entry.restype = ctypes.c_int
            self.entries[launch.name] = entry
        self.library.emu_error.restype = ctypes.c_char_p
        self.library.emu_set_deadline.argtypes = [ctypes.c_double]
        self.library.emu_set_deadline(deadline_seconds)

    def run(self, pointers: dict, grid_limit: int | None = None, arrays: dict | None = None) -> None:
        """Run every launch with `pointers` ({buffer name: address}). `grid_limit` caps the
        blocks of one-dimensional grids (their loops are grid-stride, so any grid must give the
        same result); matmul grids, which map tiles to blocks, are left alone. With `arrays`
        ({buffer name: flat NumPy array}), matrix-product launches run as the runtime's library
        GEMM does on a GPU (`runtime.cuda_gemm`, NumPy's matmul standing in for cuBLAS)."""
        try:
            self._run(pointers, grid_limit, arrays)
        finally:
            self.library.emu_release()

    def _run(self, pointers: dict, grid_limit: int | None, arrays: dict | None) -> None:
        for launch in self.launches:
            if arrays is not None and launch.gemm is not None:
                gemm = launch.gemm
                library_gemm(np, arrays[gemm.a], arrays[gemm.b], arrays[gemm.c], gemm)
                continue
            grid = list(launch.grid)
            if grid_limit is not None and grid[1] == grid[2] == 1 and tuple(launch.block[1:]) == (1, 1):
                grid[0] = min(grid[0], grid_limit)
            table = (ctypes.c_void_p * max(1, len(launch.params)))(*[pointers[name] for name in launch.params])
            dims = (ctypes.c_longlong * 6)(*grid, *launch.block)
            if self.entries[launch.name](table, dims, int(launch.shared_bytes)) != 0:
                raise EmulationError(self.library.emu_error().decode())


class EmulatedCudaGraph(CallLocations):
    """A graph through the CUDA backend's pipeline and renderer, run by the emulator on NumPy arrays;
    an out-of-range computed index raises IndexError as on a GPU (the device record read back)."""

    def __init__(self, graph, aliases: dict | None = None, cache=None):
        from graphc.backends.c import cached_pipeline
        self.plan, self.program_ir, self.layout, _ = cached_pipeline(graph, aliases)
        self.graph = self.plan.graph
        self.source, self.launches = render_cuda_program(self.program_ir)
        self.program = EmulatedProgram(self.source, self.launches, cache=cache)
        self.input_buffers = [b.name for b in sorted((b for b in self.program_ir.buffers if b.role == "input"),
                                                     key=lambda b: b.slot)]

    def __call__(self, bindings, grid_limit: int | None = None, gemm_by_library: bool = False) -> list:
        """Run with placeholders bound by name; returns one array per graph output.
        `gemm_by_library`: matrix products as the runtime's library GEMM (see EmulatedProgram.run)."""
        inputs = [np.require(np.array(bindings[name]), requirements="C") for name in self.layout.input_names]
        outputs = [_garbage(shape, dtype) for _, shape, dtype in self.layout.outputs]
        by_name = dict(zip(self.layout.input_names, inputs))
        for position, name in (self.layout.aliased or {}).items():
            outputs[position] = by_name[name]
        raw = np.full(self.layout.arena_bytes + 64, GARBAGE, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        temps = [b for b in self.program_ir.buffers if b.role == "temp"]
        arrays = {b.name: raw[start + b.offset:start + b.offset + max(b.size, 1)] for b in temps}
        arrays.update(zip(self.input_buffers, (a.reshape(-1) for a in inputs)))
        arrays.update((f"out{k}", a.reshape(-1)) for k, a in enumerate(outputs))
        pointers = {name: array.ctypes.data for name, array in arrays.items()}
        self.program.run(pointers, grid_limit, arrays if gemm_by_library else None)
        if self.program_ir.checks_indices:
            record = (ctypes.c_int64 * 3).in_dll(self.program.library, "graphc_index_error")
            if record[0] >= 0:
                error, record[0] = tuple(record), -1
                self.raise_index_error(*error)
        return [by_name[key] if kind == "input" else outputs[key] for kind, key in self.layout.results]


def _garbage(shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    return np.frombuffer(bytes([GARBAGE]) * (int(np.prod(shape)) * dtype.itemsize), dtype=dtype).reshape(shape).copy()
