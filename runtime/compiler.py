"""The toolchain interface: source text in, an :class:`Artifact` (a built file) out.

Each toolchain is one small subclass (``CCompiler`` in ``c_compiler.py``; ``NVRTCCompiler`` and
``NvccCompiler`` in ``cuda_compiler.py``). A subclass only knows how to *build* one source into a
directory and how to *describe itself* for the cache key; caching, atomic publication and keeping
failed sources are the cache's job (``cache.py``), so every toolchain gets them the same way.
"""

from __future__ import annotations

import abc
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Sequence

from .artifact import Artifact
from .errors import CompileError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .cache import BuildCache

__all__ = ["Compiler", "Artifact", "run_build_command"]


class Compiler(abc.ABC):
    """Turns source text into a built file.

    Subclasses set ``kind`` (the artifact kind), ``source_name`` (the file name the source is
    written under, which also appears in the compiler's messages) and ``toolchain`` (a short
    name for messages), and implement :meth:`build` and :meth:`key_material`.
    """

    kind: str  # a class attribute, or set per instance (NVRTC: "ptx" or "cubin" by arch)
    source_name: str
    toolchain: ClassVar[str] = "compiler"

    @abc.abstractmethod
    def build(self, source: str, out_dir: Path) -> Path:
        """Compile ``source`` into ``out_dir`` (a fresh private directory) and return the artifact path.

        Writes the source to ``out_dir / self.source_name`` first (see :meth:`write_source`).
        Raises :class:`CompileError` when the toolchain rejects the source.
        """

    @abc.abstractmethod
    def key_material(self) -> Mapping[str, Any]:
        """JSON-serializable description of the toolchain, its version and every flag.

        Anything that can change the built file must be in here: it is hashed into the cache key.
        """

    def artifact_metadata(self) -> Mapping[str, Any]:
        """Facts about a build that the loader needs later (stored in the cache manifest)."""
        return {}

    def write_source(self, source: str, out_dir: Path) -> Path:
        path = Path(out_dir) / self.source_name
        path.write_text(source)
        return path

    def compile(self, source: str, *, cache: Optional["BuildCache"] = None) -> Artifact:
        """Return the built artifact for ``source``, from the on-disk cache when it is there."""
        from .cache import default_cache  # imported here: cache.py is the higher-level module

        return (cache if cache is not None else default_cache()).get_or_build(source, self)


def run_build_command(
    command: Sequence[str],
    *,
    source_path: Path,
    toolchain: str,
    env: Optional[Mapping[str, str]] = None,
) -> tuple[str, float]:
    """Run a compiler command; return (its output, seconds taken) or raise :class:`CompileError`.

    The compiler runs with ``LC_ALL=C`` so its messages (which tests and users grep for) are in
    English and use plain quotes whatever the user's locale.
    """
    environment = dict(os.environ if env is None else env)
    environment["LC_ALL"] = "C"
    started = time.perf_counter()
    completed = subprocess.run(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=environment,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise CompileError(
            completed.stdout,
            command,
            source_path,
            toolchain=toolchain,
            returncode=completed.returncode,
        )
    return completed.stdout, seconds


def __getattr__(name: str):
    # ``from runtime.compiler import CCompiler`` works too; resolved lazily because the toolchain
    # modules import this one for the base class.
    if name == "CCompiler":
        from .c_compiler import CCompiler

        return CCompiler
    if name in ("NVRTCCompiler", "NvccCompiler"):
        from . import cuda_compiler

        return getattr(cuda_compiler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
