"""Whether CUDA programs can run here (a GPU through CuPy), asked without ever raising."""

from __future__ import annotations

import functools

__all__ = ["cuda_available"]


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True only when CuPy imports and sees at least one CUDA device.

    CuPy installs and imports fine on machines without a driver, then fails on the first device
    call (CUDA_NOTES.md), so "importable" is not enough: ask for the device count. Memoized:
    a process does not gain or lose GPUs, and importing CuPy takes a noticeable fraction of a second.
    """
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # ImportError, CUDARuntimeError (no driver), anything else: "no"
        return False
