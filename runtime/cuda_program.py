"""Running a compiled CUDA program: load its PTX/cubin with CuPy and run a launch manifest in order.

The code generator emits one ``extern "C" __global__`` function per launch and a manifest entry
for each: the function's name, the buffer names it takes as pointer parameters (in order), and
its grid, block and dynamic shared memory. The runtime knows nothing of how the manifest was
made; any object with ``name``, ``params``, ``grid``, ``block`` and ``shared_bytes`` will do.

Buffers are CuPy arrays bound by name. CuPy passes an array argument to a raw kernel as its data
pointer, so a temporary is a byte view into one arena array (``arena[offset:offset + size]``):
its pointer is the arena's plus the offset. Every launch goes onto the current stream, in order;
the launches of one call can also be captured once as a CUDA graph and replayed with one call.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence

from .artifact import Artifact
from .cuda_gemm import CublasGemm, direct_gemm_supported, library_gemm
from .errors import LoadError

__all__ = ["CudaProgram", "PreparedLaunch", "PreparedGemm", "PreparedCublas", "load_cuda_module", "device_arch",
           "GEMM_MODES"]

# how matrix-product launches run: "library" (cuBLAS through CuPy's matmul; the epilogue stays its
# own fused launch) or "tiled" (the generated shared-memory kernel). Library GEMMs are the default:
# a naive tiled kernel reaches a small fraction of cuBLAS on large products (W1 at batch 4096).
GEMM_MODES = ("library", "tiled")
DEFAULT_GEMM = os.environ.get("GRAPHC_CUDA_GEMM", "library")


class PreparedLaunch:
    """One launch with its arguments resolved: ``kernel(grid, block, args, shared_mem=...)``."""

    __slots__ = ("name", "kernel", "grid", "block", "args", "shared_bytes")

    def __init__(self, name, kernel, grid, block, args, shared_bytes):
        self.name = name
        self.kernel = kernel
        self.grid = grid
        self.block = block
        self.args = args
        self.shared_bytes = shared_bytes

    def __call__(self) -> None:
        self.kernel(self.grid, self.block, self.args, shared_mem=self.shared_bytes)

    def __repr__(self) -> str:
        return f"PreparedLaunch({self.name}, grid={self.grid}, block={self.block}, shared={self.shared_bytes})"


class PreparedGemm:
    """A matrix-product launch run by the array library (`library_gemm`) instead of its kernel."""

    __slots__ = ("name", "xp", "a", "b", "c", "gemm")

    def __init__(self, name, xp, a, b, c, gemm):
        self.name, self.xp, self.a, self.b, self.c, self.gemm = name, xp, a, b, c, gemm

    def __call__(self) -> None:
        library_gemm(self.xp, self.a, self.b, self.c, self.gemm)

    def __repr__(self) -> str:
        g = self.gemm
        return f"PreparedGemm({self.name}, {g.m}x{g.n}x{g.k}, batch {g.batch})"


class PreparedCublas:
    """A floating-point matrix-product launch as direct cuBLAS calls on the buffers' pointers."""

    __slots__ = ("name", "call")

    def __init__(self, name, call):
        self.name, self.call = name, call

    def __call__(self) -> None:
        self.call()

    def __repr__(self) -> str:
        g = self.call.gemm
        return f"PreparedCublas({self.name}, {g.m}x{g.n}x{g.k}, batch {g.batch})"


def pointer(array) -> int:
    """The device (or, for NumPy stand-ins, host) address of an array's first element."""
    data = getattr(array, "data", None)
    return data.ptr if hasattr(data, "ptr") else array.ctypes.data


def load_cuda_module(path) -> Any:
    """A CuPy module from a PTX or cubin file (PTX is JIT-compiled by the driver for this GPU)."""
    try:
        import cupy
    except ImportError as error:
        raise LoadError(f"running CUDA programs needs CuPy (pip install graphc[cuda]): {error}") from error
    try:
        return cupy.RawModule(path=str(path))
    except Exception as error:  # CUDADriverError (bad image, no device), CuPy's own errors
        raise LoadError(f"could not load the CUDA module {path}: {error}") from error


def device_arch() -> Optional[str]:
    """``sm_XX`` of the current CUDA device, or None where there is none.

    A cubin for exactly this GPU, not PTX: the driver loads it without a JIT step, and a cubin
    from an NVRTC newer than the driver (same major version) still loads, where its PTX would be
    refused as an unsupported PTX version."""
    try:
        import cupy

        return f"sm_{cupy.cuda.Device().compute_capability}"
    except Exception:
        return None


class CudaProgram:
    """A loaded CUDA module plus the manifest that says how to run it.

    ``module`` defaults to ``load_cuda_module(artifact.path)``; tests pass any object with
    ``get_function(name)``. Calling the program with ``{buffer name: array}`` runs every launch
    in order on the current stream; :meth:`capture` records the same launches as a CUDA graph.
    """

    def __init__(self, artifact: Artifact, launches: Sequence, module: Any = None,
                 loader: Callable = load_cuda_module, gemm: str = DEFAULT_GEMM, xp: Any = None):
        """`gemm`: "library" or "tiled" (see GEMM_MODES); `xp`: the array module of library GEMMs
        (default CuPy, imported when first needed)."""
        if gemm not in GEMM_MODES:
            raise ValueError(f"GRAPHC_CUDA_GEMM must be one of {', '.join(GEMM_MODES)}, not {gemm!r}")
        self.gemm_mode = gemm
        self._xp = xp
        self.artifact = artifact
        self.launches = list(launches)
        self.module = module if module is not None else loader(artifact.path)
        self.kernels = {}
        for launch in self.launches:
            try:
                self.kernels[launch.name] = self.module.get_function(launch.name)
            except Exception as error:
                raise LoadError(f"the CUDA module {artifact.path} has no kernel {launch.name!r}: {error}") from error
        self._index_error = None          # graphc_index_error as a device array, once asked for
        self._cublas: Any = False         # (binding, handle) once asked for; None: not CuPy
        self._bound: Optional[dict] = None    # buffer name -> the array the prepared launches use
        self._prepared: list = []             # per launch: its prepared call, or None (empty)
        self._users: dict = {}                # buffer name -> indices of the launches taking it
        for index, launch in enumerate(self.launches):
            gemm = getattr(launch, "gemm", None)
            names = set(launch.params) | ({gemm.a, gemm.b, gemm.c} if gemm is not None else set())
            for name in names:
                self._users.setdefault(name, []).append(index)

    @property
    def xp(self):
        if self._xp is None:
            import cupy
            self._xp = cupy
        return self._xp

    @property
    def cache_hit(self) -> bool:
        return self.artifact.cache_hit

    def prepare(self, buffers: Mapping[str, Any]) -> list:
        """The launches with their argument tuples (arrays in parameter order); launches with no
        blocks (an empty matrix product) are left out."""
        return [prepared for prepared in (self._prepare_one(launch, buffers) for launch in self.launches)
                if prepared is not None]

    def _prepare_one(self, launch, buffers: Mapping[str, Any]):
        if min(launch.grid) == 0 or min(launch.block) == 0:
            return None
        try:
            args = tuple(buffers[name] for name in launch.params)
        except KeyError as error:
            raise KeyError(f"launch {launch.name} needs buffer {error.args[0]!r}, which was not bound; "
                           f"bound: {sorted(buffers)}") from None
        gemm = getattr(launch, "gemm", None)
        if gemm is not None and self.gemm_mode == "library":
            if direct_gemm_supported(gemm) and self.cublas is not None:
                call = CublasGemm(gemm, *self.cublas)
                call.bind(pointer(buffers[gemm.a]), pointer(buffers[gemm.b]), pointer(buffers[gemm.c]))
                return PreparedCublas(launch.name, call)
            return PreparedGemm(launch.name, self.xp, buffers[gemm.a], buffers[gemm.b], buffers[gemm.c], gemm)
        return PreparedLaunch(launch.name, self.kernels[launch.name], tuple(launch.grid),
                              tuple(launch.block), args, int(launch.shared_bytes))

    @property
    def cublas(self) -> Optional[tuple]:
        """(cuBLAS binding, handle) for direct GEMM calls, or None to use the array library's matmul
        (an array module other than CuPy, as in the tests)."""
        if self._cublas is False:
            self._cublas = None
            try:
                xp = self.xp
            except ImportError:   # no CuPy: launches only (test doubles)
                return None
            if getattr(xp, "__name__", "") == "cupy":
                from cupy.cuda import cublas, device
                self._cublas = (cublas, device.get_cublas_handle())
        return self._cublas

    def __call__(self, buffers: Mapping[str, Any]) -> None:
        """Run every launch in order on the current stream (asynchronously, as CuPy does).

        Prepared launches are kept from call to call; only those taking a buffer bound to a
        different array than last time are prepared again (an unchanged step does no work here)."""
        bound = self._bound
        if bound is None:
            self._prepared = [self._prepare_one(launch, buffers) for launch in self.launches]
            self._bound = dict(buffers)       # keeps the arrays alive, so their ids stay theirs
        else:
            changed = [name for name, array in buffers.items() if bound.get(name) is not array]
            if changed:
                for index in {i for name in changed for i in self._users.get(name, ())}:
                    self._prepared[index] = self._prepare_one(self.launches[index], buffers)
                bound.update((name, buffers[name]) for name in changed)
        if self.cublas is not None:   # cuBLAS runs on the current stream, host-side alpha and beta
            blas, handle = self.cublas
            blas.setStream(handle, self.xp.cuda.get_current_stream().ptr)
            blas.setPointerMode(handle, 0)
        for launch in self._prepared:
            if launch is not None:
                launch()

    def take_index_error(self) -> Optional[tuple]:
        """(node id, index, axis size) of the first out-of-range gather/scatter index the launches
        since the last call recorded (programs rendered with ``graphc_index_error``), or None;
        the record is cleared. Reading it waits for the launches to finish."""
        if self._index_error is None:
            try:
                pointer = self.module.get_global("graphc_index_error")
            except Exception as error:
                raise LoadError(f"the CUDA module {self.artifact.path} has no graphc_index_error: {error}") from error
            self._index_error = self.xp.ndarray((3,), dtype=self.xp.int64, memptr=pointer)
        record = self._index_error.get()
        if record[0] < 0:
            return None
        self._index_error[0] = -1
        return int(record[0]), int(record[1]), int(record[2])

    def capture(self, buffers: Mapping[str, Any], stream: Any = None) -> Any:
        """The launches recorded once as a CUDA graph (``graph.launch(stream)`` replays them).

        The graph holds raw pointers: replay it only while these same arrays are alive."""
        import cupy

        prepared = self.prepare(buffers)
        stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        with stream:
            if self.cublas is not None:     # cuBLAS calls are recorded on the capturing stream
                blas, handle = self.cublas
                blas.setStream(handle, stream.ptr)
                blas.setPointerMode(handle, 0)
            stream.begin_capture()
            try:
                for launch in prepared:
                    launch()
            finally:
                graph = stream.end_capture()
        self._captured_prepared = prepared  # the graph holds the host scalars' addresses (alpha, beta)
        return graph
