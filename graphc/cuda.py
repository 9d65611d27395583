"""graphc.cuda: GPU availability. The CUDA backend is not built yet, so tensors live on the CPU."""
from __future__ import annotations


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def synchronize(device=None) -> None:
    return None


def require(what: str):
    raise RuntimeError(f"cannot {what}: graphc's CUDA backend is not available in this build "
                       "(graphc.cuda.is_available() is False); use the CPU")
