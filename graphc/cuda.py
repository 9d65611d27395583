"""graphc.cuda: PyTorch's `torch.cuda` questions, answered through CuPy (`graphc.devices`).

`is_available()` never raises and never imports more than CuPy; everything else that needs a GPU
raises `graphc.devices.CudaUnavailable` saying what is missing (CuPy, a driver and GPU, NVRTC).
"""
from __future__ import annotations

import runtime
from graphc import devices
from graphc.legacy import CUDA_TYPES as _LEGACY_TYPES

# PyTorch's legacy CUDA tensor types: graphc.cuda.FloatTensor([1.0]) makes a float32 tensor on the
# GPU, isinstance(t, graphc.cuda.FloatTensor) checks dtype and device, x.type(graphc.cuda.FloatTensor)
FloatTensor = _LEGACY_TYPES["FloatTensor"]
DoubleTensor = _LEGACY_TYPES["DoubleTensor"]
IntTensor = _LEGACY_TYPES["IntTensor"]
LongTensor = _LEGACY_TYPES["LongTensor"]
BoolTensor = _LEGACY_TYPES["BoolTensor"]


def is_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return runtime.cuda_available()


def device_count() -> int:
    return devices.cuda_arrays().count() if is_available() else 0


def current_device() -> int:
    """graphc uses CUDA device 0 unless a tensor names another (no per-thread current device)."""
    devices.require("cuda", "ask for the current CUDA device")
    return 0


def _index(device) -> int:
    if device is None:
        return 0
    return devices.require(device, f"use CUDA device {device}").index


def get_device_name(device=None) -> str:
    return devices.cuda_arrays().device_name(_index(device))


def synchronize(device=None) -> None:
    """Wait for the GPU to finish the work queued so far (for timing; reads wait on their own)."""
    devices.cuda_arrays().synchronize(_index(device))


def require(what: str) -> None:
    """Raise unless a CUDA device can be used, naming what was attempted and what is missing."""
    devices.require("cuda", what)


__all__ = ["is_available", "device_count", "current_device", "get_device_name", "synchronize",
           "require", "FloatTensor", "DoubleTensor", "IntTensor", "LongTensor", "BoolTensor"]
