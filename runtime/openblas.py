"""Where the BLAS that generated C may call lives: the PyPI package ``scipy-openblas32``.

Generated code that calls BLAS includes ``cblas.h`` from here and calls the prefixed names
(``scipy_cblas_sgemm(CblasRowMajor, ...)``). CPU_NOTES.md measured it at NumPy's matmul speed.
OpenBLAS runs its own thread pool: call it outside OpenMP parallel regions.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass

from .errors import ToolchainMissing

__all__ = ["BlasFlags", "openblas_flags"]

INSTALL_HINT = (
    "Install it with `pip install scipy-openblas32` (it ships libscipy_openblas and cblas.h), "
    "or compile without blas=True"
)


@dataclass(frozen=True)
class BlasFlags:
    """Include and link flags for one installed OpenBLAS."""

    include_dir: str
    lib_dir: str
    library: str
    version: str

    @property
    def compile_flags(self) -> list[str]:
        return [f"-I{self.include_dir}"]

    @property
    def link_flags(self) -> list[str]:
        # The rpath lets the built library find libscipy_openblas.so without LD_LIBRARY_PATH.
        return [f"-L{self.lib_dir}", f"-l{self.library}", f"-Wl,-rpath,{self.lib_dir}"]


@functools.lru_cache(maxsize=None)
def openblas_flags() -> BlasFlags:
    """Locate scipy-openblas32, or raise :class:`ToolchainMissing` saying how to install it."""
    try:
        import scipy_openblas32
    except ImportError:
        raise ToolchainMissing("scipy-openblas32 (needed for blas=True) is not installed", INSTALL_HINT) from None
    try:
        version = importlib.metadata.version("scipy-openblas32")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree
        version = "unknown"
    return BlasFlags(
        include_dir=str(scipy_openblas32.get_include_dir()),
        lib_dir=str(scipy_openblas32.get_lib_dir()),
        library=str(scipy_openblas32.get_library()),
        version=version,
    )
