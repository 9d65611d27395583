"""Exceptions raised by the runtime.

A compile failure must show the user what the compiler said *and* where the generated source
was written (DESIGN.md, "Errors"), so :class:`CompileError` carries the log, the command line and
the source path, and renders the numbered source lines around the first line the log points at:
generated code is long, and the line number alone is useless without the text.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = [
    "CompileError", "ToolchainMissing", "LoadError", "MissingEntryPoint", "CacheDirectoryUnsafe",
    "CacheDirectoryWarning", "CacheDirectoryNotRecognized", "CacheDiskFull",
]

# How many source lines to show on each side of the line the compiler complained about.
_CONTEXT_LINES = 3

# "program.c:12:5: error: ..." (gcc, clang) or "kernel.cu(6): error: ..." (NVRTC, nvcc).
_LOCATION = re.compile(r"(?P<file>[^\s:()]+)(?::(?P<gnu>\d+)(?::\d+)?:|\((?P<paren>\d+)\):)")


def first_error_line(log: str, source_name: Optional[str] = None) -> Optional[int]:
    """Return the first source line number the compiler log mentions, or None.

    Preference order: a line of *our* file on an error line, then any line of our file, then any
    line number at all. Headers (``/usr/include/...``) show up in notes; they are not what the
    user needs to see first.
    """
    ranked: list[tuple[int, int]] = []  # (rank, line) with lower rank preferred
    for text in log.splitlines():
        is_error = "error" in text.lower()
        for match in _LOCATION.finditer(text):
            line = int(match.group("gnu") or match.group("paren"))
            ours = source_name is not None and Path(match.group("file")).name == source_name
            rank = 0 if (ours and is_error) else 1 if ours else 2 if is_error else 3
            ranked.append((rank, line))
    if not ranked:
        return None
    return min(ranked, key=lambda item: item[0])[1]


def numbered_excerpt(source: str, line: int, context: int = _CONTEXT_LINES) -> str:
    """Return the lines around ``line`` (1-based) numbered like a compiler listing, ``>`` marking it."""
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    first, last = max(1, line - context), min(len(lines), line + context)
    width = len(str(last))
    return "\n".join(
        f"{'>' if number == line else ' '} {number:>{width}} | {lines[number - 1]}"
        for number in range(first, last + 1)
    )


class CompileError(Exception):
    """A toolchain rejected generated source.

    Attributes: ``log`` (the compiler's output), ``command`` (the command line, as a list),
    ``source_path`` (where the failing source was kept), ``line`` (first line the log mentions),
    ``toolchain`` (a short name such as "C compiler" or "NVRTC"), ``returncode`` (or None).
    """

    def __init__(
        self,
        log: str,
        command: Union[Sequence[str], str],
        source_path: Union[str, Path, None],
        *,
        toolchain: str = "compiler",
        returncode: Optional[int] = None,
        source: Optional[str] = None,
    ):
        self.log = log
        self.command = [command] if isinstance(command, str) else list(command)
        self.source_path = Path(source_path) if source_path is not None else None
        self.toolchain = toolchain
        self.returncode = returncode
        if source is None and self.source_path is not None:
            # The source is read back from disk so the excerpt shows exactly what was compiled.
            try:
                source = self.source_path.read_text()
            except OSError:
                source = None
        self.source = source
        name = self.source_path.name if self.source_path is not None else None
        self.line = first_error_line(log, name)
        super().__init__(self._render())

    def _render(self) -> str:
        status = f" (exit status {self.returncode})" if self.returncode is not None else ""
        parts = [
            f"{self.toolchain} failed to compile generated source{status}",
            f"  source:  {self.source_path}",
            f"  command: {shlex.join(self.command)}",
            "compiler output:",
            self.log.rstrip() or "(no output)",
        ]
        if self.source is not None and self.line is not None:
            excerpt = numbered_excerpt(self.source, self.line)
            if excerpt:
                parts += [f"source around line {self.line} of {self.source_path}:", excerpt]
        return "\n".join(parts)

    def relocated(self, old_dir: Union[str, Path], new_dir: Union[str, Path]) -> "CompileError":
        """Return a copy whose paths (in log, command and source path) point into ``new_dir``.

        Builds run in a private temporary directory; when one fails, the cache keeps its source
        somewhere stable and the message must name that place, not the deleted temporary one.
        """
        old, new = str(old_dir), str(new_dir)
        source_path = None
        if self.source_path is not None:
            source_path = Path(str(self.source_path).replace(old, new))
        return CompileError(
            self.log.replace(old, new),
            [part.replace(old, new) for part in self.command],
            source_path,
            toolchain=self.toolchain,
            returncode=self.returncode,
            source=self.source,
        )

    def __reduce__(self):
        # Custom __init__ arguments: teach pickle (multiprocessing, pytest-xdist) to rebuild us.
        return (
            _rebuild_compile_error,
            (self.log, self.command, self.source_path, self.toolchain, self.returncode, self.source),
        )


def _rebuild_compile_error(log, command, source_path, toolchain, returncode, source):
    return CompileError(
        log, command, source_path, toolchain=toolchain, returncode=returncode, source=source
    )


class ToolchainMissing(Exception):
    """A needed toolchain (C compiler, NVRTC, a library) is not installed.

    ``what`` says what is missing, ``hint`` how to install it; the message has both.
    """

    def __init__(self, what: str, hint: str):
        self.what = what
        self.hint = hint
        super().__init__(f"{what}. {hint}")

    def __reduce__(self):
        return (ToolchainMissing, (self.what, self.hint))


class LoadError(Exception):
    """A built artifact could not be loaded (for instance a truncated shared library)."""


class MissingEntryPoint(LoadError):
    """The library loaded, but does not export the requested entry point."""


class CacheDirectoryUnsafe(Exception):
    """The build cache directory could be written by another user.

    graphc loads and runs the shared libraries it finds there, so whoever can write the directory
    can make this process run their code. ``directory`` is the offending path, ``reason`` what is
    wrong with it.
    """

    def __init__(self, directory: Union[str, Path], reason: str):
        self.directory = Path(directory)
        self.reason = reason
        super().__init__(
            f"refusing to use the graphc build cache at {self.directory}: {reason}. Another user "
            "could replace a compiled shared library there, and graphc would load and run it in "
            f"this process. Fix it with `chmod go-w {self.directory}` (and make sure you own it), "
            "or set GRAPHC_CACHE_DIR to a directory only you can write"
        )

    def __reduce__(self):
        return (CacheDirectoryUnsafe, (self.directory, self.reason))


class CacheDirectoryWarning(UserWarning):
    """The build cache directory could not be used; a private temporary one is used instead."""


def _size_text(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


class CacheDirectoryNotRecognized(Exception):
    """`clear` was asked to empty a directory that is not a graphc build cache: nothing in it has
    graphc's marker or the layout graphc writes. ``directory`` is the folder, ``found`` some of
    what it holds (paths relative to it)."""

    def __init__(self, directory: Union[str, Path], found: Sequence[str], more: int = 0):
        self.directory = Path(directory)
        self.found = list(found)
        self.more = more
        listing = ", ".join(self.found) + (f" and {more} more" if more else "")
        super().__init__(
            f"refusing to clear {self.directory}: it is not a graphc build cache (it has no .graphc-cache "
            f"marker and nothing graphc writes there; it holds {listing}). Nothing was deleted. If "
            "GRAPHC_CACHE_DIR points there by mistake, point it at graphc's cache directory or unset it"
        )

    def __reduce__(self):
        return (CacheDirectoryNotRecognized, (self.directory, self.found, self.more))


class CacheDiskFull(OSError):
    """No space left for a build: neither in the cache directory nor in the private temporary
    directory graphc tried next. An OSError with errno ENOSPC; ``directory``, ``fallback``,
    ``needed_bytes`` (at least this much more was needed) and ``free_bytes`` say the rest."""

    def __init__(self, directory: Union[str, Path], needed_bytes: int, free_bytes: Optional[int],
                 fallback: Union[str, Path, None] = None, fallback_free_bytes: Optional[int] = None):
        import errno

        self.directory = Path(directory)
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        self.fallback = Path(fallback) if fallback is not None else None
        self.fallback_free_bytes = fallback_free_bytes
        free = f"{_size_text(free_bytes)} free on its file system" if free_bytes is not None else "full"
        message = (f"graphc's build cache {self.directory} has no space left ({free}; this build needs at "
                   f"least {_size_text(needed_bytes)} more)")
        if self.fallback is not None:
            other = (f"{_size_text(fallback_free_bytes)} free" if fallback_free_bytes is not None else "full")
            message += f", and the private temporary directory {self.fallback} graphc tried next is full too ({other})"
        message += (". Free some space there (`graphc cache clear` empties the cache), or set GRAPHC_CACHE_DIR "
                    "(or TMPDIR) to a directory on a file system with room")
        super().__init__(errno.ENOSPC, message)

    def __reduce__(self):
        return (CacheDiskFull, (self.directory, self.needed_bytes, self.free_bytes, self.fallback,
                                self.fallback_free_bytes))
