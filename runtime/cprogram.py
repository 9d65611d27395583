"""Calling a compiled C program: ``void ENTRY(void **buffers)`` through ctypes.

One calling convention for every generated program: the entry point takes an array of buffer
pointers, in an order fixed by the code generator (inputs, parameters, outputs, scratch arena).
A whole training step is one such call, so the call itself is on the hot path.

The pointer table is built once per distinct list of arrays and reused: the per-call check is
only "are these the same array objects as last time" (identity, which is valid because the
binding keeps those arrays alive, so their ids and data pointers cannot be recycled). Measured
on the 2-core EPYC dev machine (Python 3.11, an entry point that touches one float, 20 buffers,
best of several runs; the spread between runs is about 30%):

    program(buffers), same arrays as last call      1.0-1.3 us
    program.bind(buffers)() (no per-call check)     0.3-0.45 us
    program(buffers), a different list of arrays    20-25 us  (validates and rebuilds the table:
                                                               ~1 us per array for .ctypes.data)

so replaying a training step costs about a microsecond of Python on top of the native work.
"""

from __future__ import annotations

import ctypes
import json
import operator
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .artifact import Artifact
from .elf import shared_library_problem
from .errors import LoadError, MissingEntryPoint

__all__ = ["CProgram", "BoundCall"]

_is = operator.is_


class _Binding:
    """A pointer table for one tuple of arrays; holds the arrays so the pointers stay valid."""

    __slots__ = ("arrays", "table", "address")

    def __init__(self, arrays: tuple, table: ctypes.Array):
        self.arrays = arrays
        self.table = table
        self.address = ctypes.addressof(table)


def _pointer_table(buffers: Sequence[np.ndarray], expected: Optional[int]) -> _Binding:
    arrays = tuple(buffers)
    if expected is not None and len(arrays) != expected:
        raise ValueError(f"this program takes {expected} buffers, got {len(arrays)}")
    pointers = []
    for index, array in enumerate(arrays):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"buffer {index} is a {type(array).__name__}, not a numpy array")
        if not array.flags.c_contiguous:
            # The generated code indexes buffers as dense row-major memory: a strided view
            # would be read wrongly without any error, so refuse it here.
            raise ValueError(
                f"buffer {index} (shape {array.shape}, dtype {array.dtype}, strides {array.strides}) "
                "is not C-contiguous; pass np.ascontiguousarray(buffer)"
            )
        pointers.append(array.ctypes.data)
    table = (ctypes.c_void_p * len(arrays))(*pointers)
    return _Binding(arrays, table)


def _source_beside(library_path: Path) -> Optional[Path]:
    """The source a cache entry keeps next to its library (named in its manifest), if any."""
    try:
        manifest = json.loads((library_path.parent / "manifest.json").read_text())
        source_path = library_path.parent / manifest["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source_path if source_path.exists() else None


def _sanitizer_runtime_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libasan" in line for line in maps)
    except OSError:  # not Linux: let dlopen decide
        return True


class BoundCall:
    """A program bound to one fixed list of arrays: calling it runs the program, nothing else.

    For loops that replay a step over the same buffers; the arrays are kept alive by this object.
    """

    __slots__ = ("program", "_function", "_binding")

    def __init__(self, program: "CProgram", binding: _Binding):
        self.program = program
        self._function = program._function
        self._binding = binding

    @property
    def buffers(self) -> tuple:
        return self._binding.arrays

    def __call__(self) -> None:
        self._function(self._binding.address)


def _rebind_changed(binding: _Binding, buffers: Sequence[np.ndarray]) -> _Binding:
    """A new binding that shares nothing mutable with the old one, validating and re-pointing only
    the slots whose array changed (a train step's new batch: two slots of twenty)."""
    arrays = tuple(buffers)
    table = (ctypes.c_void_p * len(arrays))()
    ctypes.memmove(table, binding.table, ctypes.sizeof(table))
    for index, (new, old) in enumerate(zip(arrays, binding.arrays)):
        if new is not old:
            if not isinstance(new, np.ndarray):
                raise TypeError(f"buffer {index} is a {type(new).__name__}, not a numpy array")
            if not new.flags.c_contiguous:
                raise ValueError(
                    f"buffer {index} (shape {new.shape}, dtype {new.dtype}, strides {new.strides}) "
                    "is not C-contiguous; pass np.ascontiguousarray(buffer)")
            table[index] = new.ctypes.data
    return _Binding(arrays, table)


class CProgram:
    """A loaded shared library and one entry point ``void ENTRY(void **buffers)``.

    ``program(buffers)`` runs it on a list of C-contiguous numpy arrays (any dtype).
    ``source_path`` is the generated source the library was built from: from the artifact, or
    found beside a cache entry's library, or None when unknown.
    ``num_buffers``, when given, is checked whenever the buffer list changes.
    """

    def __init__(
        self,
        library_path: Union[str, Path],
        entry: str,
        *,
        source_path: Union[str, Path, None] = None,
        artifact: Optional[Artifact] = None,
        num_buffers: Optional[int] = None,
    ):
        self.library_path = Path(library_path)
        self.entry = entry
        self.artifact = artifact
        if source_path is None:
            source_path = artifact.source_path if artifact is not None else _source_beside(self.library_path)
        self.source_path: Optional[Path] = Path(source_path) if source_path is not None else None
        self.num_buffers = num_buffers
        if artifact is not None and artifact.metadata.get("sanitize") and not _sanitizer_runtime_loaded():
            # dlopen of an ASan library into a process without the ASan runtime aborts the
            # whole interpreter; refuse with the fix instead.
            raise LoadError(
                f"{self.library_path} was built with AddressSanitizer (sanitize=True or "
                "GRAPHC_SANITIZE=1), and this process does not have the ASan runtime, which must be "
                "loaded before anything else: run it as LD_PRELOAD=$(cc -print-file-name=libasan.so) "
                "ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "
                "GRAPHC_SANITIZE=1 python ..., or unset GRAPHC_SANITIZE (README: Sanitizers)"
            )
        problem = shared_library_problem(self.library_path)
        if problem is not None:  # checked first: dlopen of a truncated file dies with SIGBUS
            raise LoadError(f"cannot load {self.library_path}: {problem}")
        try:
            self._library = ctypes.CDLL(str(self.library_path))
        except OSError as error:
            raise LoadError(f"cannot load {self.library_path}: {error}") from error
        try:
            function = getattr(self._library, entry)
        except AttributeError:
            raise MissingEntryPoint(
                f"{self.library_path} has no entry point {entry!r} (source: {self.source_path})"
            ) from None
        function.argtypes = [ctypes.c_void_p]
        function.restype = None
        self._function = function
        self._binding = _Binding((), (ctypes.c_void_p * 0)())

    @classmethod
    def from_artifact(cls, artifact: Artifact, entry: str, **options) -> "CProgram":
        return cls(artifact.path, entry, artifact=artifact, **options)

    @property
    def cache_hit(self) -> bool:
        """Whether the library came from the build cache without compiling."""
        return bool(self.artifact is not None and self.artifact.cache_hit)

    def read_source(self) -> str:
        if self.source_path is None:
            raise FileNotFoundError(f"no source is recorded for {self.library_path}")
        return self.source_path.read_text()

    def bind(self, buffers: Sequence[np.ndarray]) -> BoundCall:
        """Validate ``buffers`` once and return a zero-argument callable that runs on them."""
        return BoundCall(self, _pointer_table(buffers, self.num_buffers))

    def __call__(self, buffers: Sequence[np.ndarray]) -> None:
        binding = self._binding
        # Hot path: same array objects as last time -> reuse the pointer table. A local variable
        # holds the binding so a concurrent call that rebinds cannot swap it under this one.
        if len(buffers) != len(binding.arrays):
            binding = self._binding = _pointer_table(buffers, self.num_buffers)
        elif not all(map(_is, buffers, binding.arrays)):
            binding = self._binding = _rebind_changed(binding, buffers)
        self._function(binding.address)

    def __repr__(self) -> str:
        return f"CProgram({str(self.library_path)!r}, entry={self.entry!r})"
