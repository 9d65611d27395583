"""Where a tensor's memory lives, and which engine runs a graph whose values live there.

A CPU tensor's storage is a flat NumPy array; a CUDA tensor's is a flat CuPy array, and a graph
whose results belong on a GPU is compiled by the CUDA backend (`graphc.backends.cuda`) and run
there, so results stay in GPU memory until Python asks for them. Everything the front end needs to
know about a device kind (its array module, how to copy to and from the host, which class
compiles its graphs) is one `DeviceArrays` record, returned by `arrays_for(device)`: that is the
only seam, so a test can stand a NumPy-backed double in for CuPy on a machine without a GPU.

Nothing here imports CuPy or the CUDA backend until a CUDA device is actually asked for.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

import runtime
from graphc.errors import GraphcError
from graphc.size import CPU, device as Device


class CudaUnavailable(GraphcError):
    """A CUDA device was asked for where graphc cannot use one (no CuPy, no GPU, no NVRTC)."""


@dataclass(frozen=True)
class DeviceArrays:
    """How one kind of device holds arrays and runs graphs."""

    name: str
    xp: object                              # the array module: numpy, cupy
    array_type: type                        # the class of arrays living on the device
    compiled_graph: Callable[[], type]      # the class compiling a Graph for the device (imported late)
    from_host: Callable                     # NumPy array -> a copy on the device
    to_host: Callable                       # device array -> a NumPy copy
    count: Callable[[], int]                # devices of this kind
    device_name: Callable[[int], str]
    synchronize: Callable[[int], None]      # wait for the device's queued work
    select: Callable[[int], object]         # context manager: make device `index` current


def _cpu_compiled_graph():
    from graphc.backends.c import CompiledGraph
    return CompiledGraph


CPU_ARRAYS = DeviceArrays("cpu", np, np.ndarray, _cpu_compiled_graph, np.asarray, np.asarray,
                          lambda: 1, lambda index: "cpu", lambda index: None,
                          lambda index: contextlib.nullcontext())


def arrays_for(device) -> DeviceArrays:
    """The array module and graph compiler of `device` (raises CudaUnavailable for a CUDA device
    this machine cannot use)."""
    return CPU_ARRAYS if Device(device).type == "cpu" else cuda_arrays()


# ---- CUDA through CuPy -----------------------------------------------------------------------
def missing_cuda() -> str | None:
    """What stops graphc from using a GPU here, in words, or None when nothing does."""
    try:
        import cupy
    except ImportError as error:
        return (f"CuPy is not installed ({error}); graphc runs CUDA programs through it.\n"
                "HINT: pip install graphc[cuda] (CuPy for CUDA 12 and NVRTC), or the cupy wheel "
                "matching your CUDA driver")
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as error:  # CUDARuntimeError: no driver, no device, driver too old
        return (f"CuPy {getattr(cupy, '__version__', '')} is installed but cannot reach a CUDA "
                f"driver and GPU: {type(error).__name__}: {error}")
    if count == 0:
        return f"CuPy {getattr(cupy, '__version__', '')} is installed but sees no CUDA GPU"
    try:
        runtime.find_cuda_compiler()
    except runtime.ToolchainMissing as error:
        return f"a GPU is visible but graphc cannot compile CUDA code: {error.what}.\nHINT: {error.hint}"
    return None


def cuda_arrays() -> DeviceArrays:
    """The CuPy record, or CudaUnavailable saying exactly what is missing."""
    return _load_cupy_arrays()


@functools.lru_cache(maxsize=1)
def _load_cupy_arrays() -> DeviceArrays:
    reason = missing_cuda()
    if reason is not None:
        raise CudaUnavailable(f"CUDA is not available: {reason}")
    import cupy

    def compiled_graph():
        try:
            from graphc.backends.cuda import CompiledCudaGraph
        except ImportError as error:
            raise CudaUnavailable(f"CUDA is not available: graphc's CUDA backend cannot be loaded "
                                  f"({error})") from error
        return CompiledCudaGraph

    def device_name(index: int) -> str:
        name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    return DeviceArrays("cuda", cupy, cupy.ndarray, compiled_graph, cupy.asarray, cupy.asnumpy,
                        lambda: int(cupy.cuda.runtime.getDeviceCount()), device_name,
                        lambda index: cupy.cuda.Device(index).synchronize(), cupy.cuda.Device)


def require(device, what: str) -> Device:
    """`device` normalized as a tensor reports it (``cuda`` -> ``cuda:0``), after checking that
    it can be used; raises CudaUnavailable naming `what` was attempted and what is missing."""
    device = Device(device)
    if device.type == "cpu":
        return CPU
    try:
        arrays = cuda_arrays()
    except CudaUnavailable as error:
        raise CudaUnavailable(f"cannot {what}: {error}") from None
    index = 0 if device.index is None else device.index
    count = arrays.count()
    if not 0 <= index < count:
        raise CudaUnavailable(f"cannot {what}: CUDA error: invalid device ordinal (cuda:{index}; "
                              f"{count} CUDA device{'s' if count != 1 else ''} visible)")
    return Device("cuda", index)


# ---- moving arrays and running graphs --------------------------------------------------------
def to_host(array, device) -> np.ndarray:
    """A NumPy copy of an array living on `device` (the array itself on the CPU)."""
    if device.type == "cpu":
        return array
    arrays = arrays_for(device)
    with arrays.select(device.index):
        return arrays.to_host(_dense(array))


def from_host(array: np.ndarray, device):
    """A copy of a NumPy array on `device` (the array itself on the CPU)."""
    if device.type == "cpu":
        return array
    arrays = arrays_for(device)
    with arrays.select(device.index):
        return arrays.from_host(_dense(array))


def copy_from_host(target, array: np.ndarray, device) -> None:
    """Overwrite a device array (same shape and dtype) with a host array's values."""
    xp = arrays_for(device).xp
    if xp is np:
        np.copyto(target, array)
    else:
        with arrays_for(device).select(device.index):
            target.set(np.array(array, order="C"))   # (ascontiguousarray would make a 0-d array 1-d)


def _dense(array):
    """C-contiguous (copied only when it is not), 0-d arrays kept 0-d (`ascontiguousarray` makes
    them 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


_programs: dict = {}    # (device, structure key) -> compiled graph
stats = {"compiled": 0, "replayed": 0, "host_inputs": 0}


def run_graph(build, device) -> list:
    """Run a `GraphBuild` whose results belong on a non-CPU `device`: compiled for it at first
    sight (no interpreted tier: interpreting would copy every input to the host and back),
    cached by structure as the C path does; inputs bound from CPU memory (0-dim CPU tensors,
    which mix with GPU tensors as in PyTorch) are copied over first."""
    arrays = arrays_for(device)
    key = (device, build.key)
    with arrays.select(device.index):
        program = _programs.get(key)
        if program is None:
            program = _programs[key] = arrays.compiled_graph()(build.graph)
            stats["compiled"] += 1
        else:
            stats["replayed"] += 1
        program.current_graph = build.graph   # errors name this call's lines
        bindings = dict(build.bindings)
        for name in build.host_bound:
            if name in bindings:
                stats["host_inputs"] += 1
                bindings[name] = arrays.from_host(_dense(bindings[name]))
        return program(bindings)
