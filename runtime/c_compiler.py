"""The system C compiler, building one shared library per generated translation unit.

Flags follow CPU_NOTES.md: ``-O3 -march=native -fopenmp -fno-math-errno`` plus ``-lmvec -lm`` lets
gcc call glibc's vector math (``_ZGVeN16v_expf``) from ``#pragma omp simd`` loops when the source
declares ``__attribute__((simd("notinbranch")))`` prototypes, 20x faster than scalar libm and
without ``-ffast-math`` (which would break NaN semantics).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .compiler import Compiler, run_build_command
from .errors import ToolchainMissing
from .openblas import BlasFlags, openblas_flags

__all__ = ["CCompiler", "BASE_FLAGS", "SANITIZE_FLAGS", "sanitize_requested"]

BASE_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fPIC", "-shared", "-std=c11")
# -O0 comes after -O3 and wins. Sanitized builds are for finding bugs, and their cost is the
# compiler: a 130 KB generated program (a graph of 78 reductions) took 23 s to build with ASan and
# UBSan at -O1 -g and 1.4 s at -O0 -g here; -O0 also keeps every load and store the source has, so
# ASan checks them all, and reports point at exact lines.
# -fno-sanitize-recover=all: UBSan stops at the first finding instead of printing and going on,
# so a test sees a failed process, not a passing one with a report buried in its stderr.
SANITIZE_FLAGS = (
    "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O0"
)

INSTALL_HINT = (
    "Install a C compiler with OpenMP (Debian/Ubuntu: `apt-get install gcc`; Fedora: "
    "`dnf install gcc`; macOS: `brew install gcc`), or set the CC environment variable to one"
)


def _environment_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def sanitize_requested() -> bool:
    """Whether ``GRAPHC_SANITIZE`` asks for AddressSanitizer + UBSan builds (read at every call)."""
    return _environment_flag("GRAPHC_SANITIZE")


def _file_identity(path: str) -> tuple[str, int, int]:
    # A compiler upgraded in place changes mtime/size: the memoized probes below then rerun.
    status = os.stat(path)
    return path, status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=None)
def _version_text(command: tuple[str, ...], identity: tuple[str, int, int]) -> str:
    """``cc --version``, memoized per compiler binary (a subprocess costs ~1 ms per call)."""
    completed = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, errors="replace", check=False
    )
    return (completed.stdout + completed.stderr).strip()


@functools.lru_cache(maxsize=None)
def _has_library(command: tuple[str, ...], identity: tuple[str, int, int], file_name: str) -> bool:
    """Whether the compiler's linker finds ``file_name``: ``-print-file-name`` answers the bare
    name when it does not (libmvec only exists with glibc on x86_64 and aarch64)."""
    completed = subprocess.run(
        [*command, f"-print-file-name={file_name}"], capture_output=True, text=True, check=False
    )
    answer = completed.stdout.strip()
    return completed.returncode == 0 and os.path.isabs(answer) and os.path.exists(answer)


class CCompiler(Compiler):
    """Builds C source into a shared library with the system C compiler.

    ``cc``: the compiler command (default: ``$CC``, else ``cc``; may include a launcher such as
    ``ccache gcc``). ``sanitize``: add AddressSanitizer + UBSan (default: ``$GRAPHC_SANITIZE=1``);
    such a library loads only into a process started with ``LD_PRELOAD=$(cc
    -print-file-name=libasan.so)``. ``blas``: compile and link against scipy-openblas32.
    ``extra_flags`` go on the compile line, ``link_flags`` after the source file.
    """

    kind = "shared-library"
    source_name = "program.c"
    library_name = "program.so"
    toolchain = "C compiler"

    def __init__(
        self,
        *,
        cc: Optional[str] = None,
        sanitize: Optional[bool] = None,
        blas: bool = False,
        extra_flags: Sequence[str] = (),
        link_flags: Sequence[str] = (),
    ):
        from_environment = cc is None and bool(os.environ.get("CC"))
        self.command = tuple(shlex.split(cc or os.environ.get("CC") or "cc"))
        if not self.command:
            raise ToolchainMissing("The C compiler command is empty ($CC is blank)", INSTALL_HINT)
        found = shutil.which(self.command[0])
        if found is None:
            origin = " (from $CC)" if from_environment else ""
            raise ToolchainMissing(f"C compiler {self.command[0]!r}{origin} was not found", INSTALL_HINT)
        self.executable = os.path.realpath(found)
        self.command = (found, *self.command[1:])
        self.sanitize = sanitize_requested() if sanitize is None else bool(sanitize)
        self.blas: Optional[BlasFlags] = openblas_flags() if blas else None
        self.extra_flags = tuple(extra_flags)
        self.extra_link_flags = tuple(link_flags)

    # -- flags -------------------------------------------------------------------------------
    @property
    def compile_flags(self) -> list[str]:
        flags = list(BASE_FLAGS)
        if self.sanitize:
            flags += SANITIZE_FLAGS
        if self.blas is not None:
            flags += self.blas.compile_flags
        return flags + list(self.extra_flags)

    @property
    def link_flags(self) -> list[str]:
        flags = []
        if self.blas is not None:
            flags += self.blas.link_flags
        if _has_library(self.command, _file_identity(self.executable), "libmvec.so"):
            flags.append("-lmvec")
        return flags + ["-lm"] + list(self.extra_link_flags)

    def command_line(self, source_path: Path, output_path: Path) -> list[str]:
        # Libraries after the source file: the linker resolves symbols left to right.
        return [*self.command, *self.compile_flags, str(source_path), "-o", str(output_path), *self.link_flags]

    # -- Compiler interface ------------------------------------------------------------------
    def key_material(self) -> Mapping[str, Any]:
        return {
            "toolchain": "cc",
            "command": list(self.command),
            "executable": self.executable,
            "version": _version_text(self.command, _file_identity(self.executable)),
            "compile_flags": self.compile_flags,
            "link_flags": self.link_flags,
            "blas_version": self.blas.version if self.blas is not None else None,
        }

    def artifact_metadata(self) -> Mapping[str, Any]:
        return {"sanitize": self.sanitize, "blas": self.blas is not None}

    def build(self, source: str, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        source_path = self.write_source(source, out_dir)
        output_path = out_dir / self.library_name
        log, _ = run_build_command(
            self.command_line(source_path, output_path), source_path=source_path, toolchain=self.toolchain
        )
        if log.strip():  # warnings: kept beside the artifact for `graphc dump` and debugging
            (out_dir / "build.log").write_text(log)
        return output_path

    def __repr__(self) -> str:
        options = [f"cc={' '.join(self.command)!r}"]
        if self.sanitize:
            options.append("sanitize=True")
        if self.blas is not None:
            options.append("blas=True")
        if self.extra_flags:
            options.append(f"extra_flags={list(self.extra_flags)!r}")
        return f"CCompiler({', '.join(options)})"
