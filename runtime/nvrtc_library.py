"""A ctypes binding to NVRTC (``libnvrtc.so.12``): CUDA C++ source -> PTX or cubin, no GPU needed.

Why ctypes and not CuPy: CuPy's compile entry points ask the device for its architecture even
when one is given, so they fail on machines without a GPU (CUDA_NOTES.md), and CI must still check
every generated kernel. NVRTC itself needs no device; the ``nvidia-cuda-nvrtc-cu12`` wheel ships it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import ToolchainMissing

__all__ = ["NVRTCLibrary", "NVRTCResult", "find_nvrtc_library", "load_nvrtc", "cuda_runtime_include_dir"]

INSTALL_HINT = (
    "Install NVRTC with `pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12` "
    "(or `pip install graphc[cuda]`), or install the CUDA toolkit under /usr/local/cuda"
)

_NVRTC_SUCCESS = 0


def _wheel_directory(package: str) -> Optional[str]:
    """Directory of a namespace package such as ``nvidia.cuda_nvrtc``, without importing CUDA."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def find_nvrtc_library() -> Optional[str]:
    """Where libnvrtc is: the pip wheels first (CUDA 12's ``nvidia/cuda_nvrtc``, pinned by our
    ``cuda`` extra, then CUDA 13's ``nvidia/cu13``), then the dynamic loader's search path, then
    CUDA toolkits under /usr/local. None if nowhere."""
    namespace = _wheel_directory("nvidia")
    if namespace is not None:
        for pattern in ("cuda_nvrtc/lib/libnvrtc.so.12", "cu*/lib/libnvrtc.so.[0-9]*"):
            candidates = sorted(glob.glob(os.path.join(namespace, pattern)))
            if candidates:
                return candidates[-1]
    found = ctypes.util.find_library("nvrtc")
    if found:
        return found
    for pattern in ("/usr/local/cuda/lib64/libnvrtc.so*", "/usr/local/cuda-*/lib64/libnvrtc.so*"):
        candidates = sorted(path for path in glob.glob(pattern) if "builtins" not in path)
        if candidates:
            return candidates[0]
    return None


def cuda_runtime_include_dir() -> Optional[str]:
    """Headers such as ``cuda_fp16.h``, which NVRTC does not have built in (from the
    ``nvidia-cuda-runtime-cu12`` wheel), or None when that wheel is not installed."""
    wheel = _wheel_directory("nvidia.cuda_runtime")
    if wheel is None:
        return None
    include = os.path.join(wheel, "include")
    return include if os.path.isdir(include) else None


@dataclass(frozen=True)
class NVRTCResult:
    """What one NVRTC compilation gave: success, the program log, and the code (or None)."""

    ok: bool
    log: str
    ptx: Optional[bytes]
    cubin: Optional[bytes]


class NVRTCLibrary:
    """The handful of NVRTC functions we call, with their C signatures declared once."""

    def __init__(self, path: str):
        self.path = path
        self._lib = ctypes.CDLL(path)
        program_pointer = ctypes.POINTER(ctypes.c_void_p)
        string_array = ctypes.POINTER(ctypes.c_char_p)
        size_pointer = ctypes.POINTER(ctypes.c_size_t)
        signatures = {
            "nvrtcVersion": [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
            "nvrtcCreateProgram": [
                program_pointer, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, string_array, string_array,
            ],
            "nvrtcCompileProgram": [ctypes.c_void_p, ctypes.c_int, string_array],
            "nvrtcDestroyProgram": [program_pointer],
            "nvrtcGetProgramLogSize": [ctypes.c_void_p, size_pointer],
            "nvrtcGetProgramLog": [ctypes.c_void_p, ctypes.c_char_p],
            "nvrtcGetPTXSize": [ctypes.c_void_p, size_pointer],
            "nvrtcGetPTX": [ctypes.c_void_p, ctypes.c_char_p],
            "nvrtcGetCUBINSize": [ctypes.c_void_p, size_pointer],
            "nvrtcGetCUBIN": [ctypes.c_void_p, ctypes.c_char_p],
        }
        for name, argtypes in signatures.items():
            function = getattr(self._lib, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_int
        self._lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        self._lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, status: int, what: str) -> None:
        if status != _NVRTC_SUCCESS:
            message = self._lib.nvrtcGetErrorString(status)
            raise RuntimeError(f"{what} failed: {message.decode() if message else status}")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def _read(self, program: ctypes.c_void_p, size_function: str, get_function: str) -> bytes:
        size = ctypes.c_size_t()
        self._check(getattr(self._lib, size_function)(program, ctypes.byref(size)), size_function)
        buffer = ctypes.create_string_buffer(size.value)
        self._check(getattr(self._lib, get_function)(program, buffer), get_function)
        return buffer.raw[: size.value]

    def compile(self, source: str, name: str, options: Sequence[str], cubin: bool = False) -> NVRTCResult:
        """Compile one translation unit. ``name`` is the file name NVRTC uses in its log."""
        program = ctypes.c_void_p()
        self._check(
            self._lib.nvrtcCreateProgram(
                ctypes.byref(program), source.encode(), name.encode(), 0, None, None
            ),
            "nvrtcCreateProgram",
        )
        try:
            encoded = [option.encode() for option in options]
            option_array = (ctypes.c_char_p * len(encoded))(*encoded)
            status = self._lib.nvrtcCompileProgram(program, len(encoded), option_array)
            # The log is NUL-terminated text; a warning-only log comes with success.
            log = self._read(program, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")
            log_text = log.rstrip(b"\0").decode(errors="replace")
            if status != _NVRTC_SUCCESS:
                if not log_text.strip():
                    message = self._lib.nvrtcGetErrorString(status)
                    log_text = message.decode() if message else f"NVRTC error {status}"
                return NVRTCResult(False, log_text, None, None)
            if cubin:
                return NVRTCResult(True, log_text, None, self._read(program, "nvrtcGetCUBINSize", "nvrtcGetCUBIN"))
            ptx = self._read(program, "nvrtcGetPTXSize", "nvrtcGetPTX").rstrip(b"\0")
            return NVRTCResult(True, log_text, ptx, None)
        finally:
            self._lib.nvrtcDestroyProgram(ctypes.byref(program))


@functools.lru_cache(maxsize=None)
def load_nvrtc(path: Optional[str] = None) -> NVRTCLibrary:
    """Load NVRTC (found by :func:`find_nvrtc_library` unless ``path`` is given) once per process."""
    path = path or find_nvrtc_library()
    if path is None:
        raise ToolchainMissing("NVRTC (libnvrtc.so.12) was not found", INSTALL_HINT)
    try:
        return NVRTCLibrary(path)
    except (OSError, AttributeError) as error:
        raise ToolchainMissing(f"NVRTC at {path} could not be loaded ({error})", INSTALL_HINT) from error
