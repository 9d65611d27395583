"""CUDA source -> PTX (or cubin): NVRTC first, the toolkit's ``nvcc`` as a fallback.

Loading the result onto a GPU is a separate step, in ``cuda_program.py``
(``cupy.RawModule(code=ptx)`` / ``cupy.cuda.Module().load(...)`` then ``get_function`` and
launches in order, optionally captured in a CUDA graph); compiling here needs no GPU, so CI
checks every generated kernel on machines without one.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .compiler import Compiler, run_build_command
from .errors import CompileError, ToolchainMissing
from .nvrtc_library import INSTALL_HINT, cuda_runtime_include_dir, find_nvrtc_library, load_nvrtc

__all__ = ["NVRTCCompiler", "NvccCompiler", "find_cuda_compiler", "nvcc_command_line", "DEFAULT_ARCH"]

# PTX for compute capability 8.0 runs on A100 and, JIT-compiled by the driver, on anything newer
# (H100, H200); sm_XX asks for a cubin for exactly that GPU instead.
DEFAULT_ARCH = "compute_80"


def _artifact_kind(arch: str) -> str:
    return "cubin" if arch.startswith("sm_") else "ptx"


def _package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class NVRTCCompiler(Compiler):
    """Compiles CUDA C++ with NVRTC through ctypes (see ``nvrtc_library.py``).

    ``arch``: ``compute_XX`` gives PTX (default ``compute_80``), ``sm_XX`` a cubin.
    ``extra_flags`` are passed to NVRTC as they are. ``library``: an explicit libnvrtc path.
    Raises :class:`ToolchainMissing` when NVRTC cannot be found.
    """

    source_name = "kernel.cu"
    toolchain = "NVRTC"

    def __init__(self, *, arch: str = DEFAULT_ARCH, extra_flags: Sequence[str] = (), library: Optional[str] = None):
        self.nvrtc = load_nvrtc(library)
        self.arch = arch
        self.kind = _artifact_kind(arch)
        self.include_dir = cuda_runtime_include_dir()
        self.extra_flags = tuple(extra_flags)

    @staticmethod
    def available() -> bool:
        """Whether libnvrtc can be found (and loaded) here."""
        try:
            load_nvrtc(None)
        except ToolchainMissing:
            return False
        return True

    @property
    def options(self) -> list[str]:
        options = [f"-arch={self.arch}"]
        if self.include_dir is not None:
            options.append(f"-I{self.include_dir}")
        return options + list(self.extra_flags)

    def key_material(self) -> Mapping[str, Any]:
        return {
            "toolchain": "nvrtc",
            "library": os.path.realpath(self.nvrtc.path),
            "version": list(self.nvrtc.version()),
            "options": self.options,
            "runtime_headers": _package_version("nvidia-cuda-runtime-cu12"),
        }

    def artifact_metadata(self) -> Mapping[str, Any]:
        return {"arch": self.arch}

    def build(self, source: str, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        source_path = self.write_source(source, out_dir)
        options = self.options
        # The full path as the program name: NVRTC's log then names the file the user can open.
        result = self.nvrtc.compile(source, str(source_path), options, cubin=self.kind == "cubin")
        if not result.ok:
            raise CompileError(
                result.log, ["nvrtc", *options, str(source_path)], source_path, toolchain=self.toolchain
            )
        if result.log.strip():
            (out_dir / "build.log").write_text(result.log)
        output_path = out_dir / f"kernel.{self.kind}"
        output_path.write_bytes(result.cubin if self.kind == "cubin" else result.ptx)
        return output_path

    def __repr__(self) -> str:
        return f"NVRTCCompiler(arch={self.arch!r}, library={self.nvrtc.path!r})"


def nvcc_command_line(source_path, output_path, *, arch: str = DEFAULT_ARCH, extra_flags: Sequence[str] = (),
                      nvcc: Sequence[str] = ("nvcc",)) -> list[str]:
    """The nvcc command building CUDA ``source_path`` into ``output_path`` (a cubin for ``sm_XX``,
    PTX for ``compute_XX``): what :class:`NvccCompiler` runs, NVRTC's options as nvcc takes them."""
    mode = "-cubin" if _artifact_kind(arch) == "cubin" else "--ptx"
    return [*nvcc, mode, f"-arch={arch}", *extra_flags, str(source_path), "-o", str(output_path)]


@functools.lru_cache(maxsize=None)
def _nvcc_version(executable: str, mtime_ns: int) -> str:
    completed = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    return (completed.stdout + completed.stderr).strip()


class NvccCompiler(Compiler):
    """Compiles CUDA C++ with the toolkit's ``nvcc`` (slower to start than NVRTC; a fallback).

    ``nvcc``: the command (default: ``nvcc`` on PATH). ``arch`` as for :class:`NVRTCCompiler`.
    """

    source_name = "kernel.cu"
    toolchain = "nvcc"

    def __init__(self, *, arch: str = DEFAULT_ARCH, extra_flags: Sequence[str] = (), nvcc: Optional[str] = None):
        command = shlex.split(nvcc or "nvcc")
        found = shutil.which(command[0]) if command else None
        if found is None:
            raise ToolchainMissing(f"nvcc ({nvcc or 'nvcc'}) was not found on PATH", INSTALL_HINT)
        self.command = (found, *command[1:])
        self.executable = os.path.realpath(found)
        self.arch = arch
        self.kind = _artifact_kind(arch)
        self.extra_flags = tuple(extra_flags)

    @staticmethod
    def available() -> bool:
        return shutil.which("nvcc") is not None

    def command_line(self, source_path: Path, output_path: Path) -> list[str]:
        return nvcc_command_line(source_path, output_path, arch=self.arch, extra_flags=self.extra_flags,
                                 nvcc=self.command)

    def key_material(self) -> Mapping[str, Any]:
        return {
            "toolchain": "nvcc",
            "executable": self.executable,
            "version": _nvcc_version(self.executable, os.stat(self.executable).st_mtime_ns),
            "flags": self.command_line(Path("SOURCE"), Path("OUTPUT")),
        }

    def artifact_metadata(self) -> Mapping[str, Any]:
        return {"arch": self.arch}

    def build(self, source: str, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        source_path = self.write_source(source, out_dir)
        output_path = out_dir / f"kernel.{self.kind}"
        log, _ = run_build_command(
            self.command_line(source_path, output_path), source_path=source_path, toolchain=self.toolchain
        )
        if log.strip():
            (out_dir / "build.log").write_text(log)
        return output_path

    def __repr__(self) -> str:
        return f"NvccCompiler(arch={self.arch!r}, nvcc={self.command[0]!r})"


def find_cuda_compiler(**options) -> Compiler:
    """The best CUDA compiler here: NVRTC if it can be found, else ``nvcc`` on PATH.

    ``options`` (``arch``, ``extra_flags``) go to the chosen class. Raises ToolchainMissing
    when neither exists.
    """
    if find_nvrtc_library() is not None:
        try:
            return NVRTCCompiler(**options)
        except ToolchainMissing:
            pass  # found but not loadable: try nvcc
    if NvccCompiler.available():
        return NvccCompiler(**options)
    raise ToolchainMissing("No CUDA compiler: neither NVRTC nor nvcc was found", INSTALL_HINT)
