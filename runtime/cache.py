"""The on-disk build cache: a second run of a program compiles nothing.

Layout under the cache directory (``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else
``~/.cache/graphc``)::

    entries/<key>/manifest.json   what was built, by what, the artifact's size and sha256
    entries/<key>/program.c       the generated source, kept for error messages and `graphc dump`
    entries/<key>/program.so      the artifact (or kernel.cu + kernel.ptx for CUDA)
    failed/<key>/                 the source (and log) of the last build of <key> that failed
    tmp/                          private build directories and entries being deleted
    pipelines/<xx>/<key>.pickle   graphc.backends.c's stored compiler stages
    .graphc-cache                 graphc's marker, in the root and in every directory it makes

Why it is safe with several processes (pytest-xdist workers, two training scripts):

* Every build runs in its own ``tmp/build-*`` directory, and the finished directory - artifact,
  source and manifest together - is published with one ``os.replace`` (``rename(2)``), which is
  atomic. Nobody ever sees a half-written entry under ``entries/``.
* ``rename`` of a directory onto an existing non-empty one fails. So when two processes build the
  same key at once, the second rename fails, and the loser uses the winner's entry and drops its
  own: both succeed, and the entry is written once.
* Deleting also goes through a rename (into ``tmp/``), so an entry disappears at once as a whole.

Why it is safe against corruption: the manifest records the artifact's size and sha256, checked
on lookup (the hash once per process per file; after that a ``stat`` compare). A truncated or
altered artifact - a full disk, a crash before the data reached the disk, a user's hand - fails
the check and is deleted and rebuilt. Loaders add a second check: a library that fails to load
is discarded and rebuilt too (``runtime.build.compile_c``).

Files are never modified in place, only created in a private directory and renamed: a process
that has a library mapped keeps its (unlinked) copy intact when the entry is deleted or rebuilt.
Writing into a library that a running process has loaded would crash that process (SIGBUS).

Any entry that cannot be read as what it should be is a miss that gets rebuilt, never a crash:
a manifest that is not JSON, or whose fields have the wrong types, or whose artifact or source
is not a plain file directly inside the entry (a name like ``../../x``, an absolute path, a
symlink) - the artifact must lie inside the cache.

The cache only ever removes what it made. ``GRAPHC_CACHE_DIR`` may point at a folder that holds
other files, so every directory the cache creates gets a small marker file (``.graphc-cache``,
naming graphc and the layout version), and :meth:`BuildCache.clear` removes only marked
directories (and, for caches written before markers, directories named and laid out as graphc
names them), and inside them only files with graphc's names and extensions. It never follows a
symlink while deleting (a link is unlinked, what it points to is left alone), and it refuses,
with :class:`~runtime.errors.CacheDirectoryNotRecognized`, to clear a folder in which it
recognizes nothing of its own.

A full disk: a build that runs out of space in the cache directory is built again in a private
temporary directory, which the rest of the process uses, with one
:class:`~runtime.errors.CacheDirectoryWarning` naming the full directory and the space the build
took (the same policy as for a cache directory that cannot be written: the program still runs,
and the user learns what to fix). Where the temporary directory is full too, the build raises
:class:`~runtime.errors.CacheDiskFull` naming both directories and the space needed.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from .artifact import Artifact
from .cache_safety import make_private_directory, private_temporary_cache, usable_cache_directory
from .errors import CacheDirectoryNotRecognized, CacheDirectoryWarning, CacheDiskFull, CompileError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .compiler import Compiler

__all__ = [
    "BuildCache",
    "CacheEntry",
    "CacheStats",
    "ClearReport",
    "RUNTIME_FORMAT_VERSION",
    "cache_directory",
    "cpu_features",
    "default_cache",
]

# Bump when the cache layout, the manifest or the calling convention changes: old entries then
# simply stop matching (the version is hashed into every key).
RUNTIME_FORMAT_VERSION = 1

MANIFEST_NAME = "manifest.json"

# The marker in every directory the cache makes: what `clear` recognizes as its own.
MARKER_NAME = ".graphc-cache"
CACHE_LAYOUT_VERSION = 1
MARKER_TEXT = json.dumps({"graphc": "build-cache", "layout": CACHE_LAYOUT_VERSION}) + "\n"

# Files graphc and its compilers write inside the directories it makes: the only files `clear`
# deletes (besides the names a manifest lists).
OWN_FILE_NAMES = frozenset({MANIFEST_NAME, MARKER_NAME, "build.log"})
OWN_FILE_SUFFIXES = (".c", ".cc", ".cpp", ".cu", ".h", ".gch", ".so", ".ptx", ".cubin", ".fatbin", ".o", ".log",
                     ".json", ".pickle", ".tmp")
_KEY_NAME = re.compile(r"[0-9a-f]{64}")
_PIPELINE_SHARD_NAME = re.compile(r"[0-9a-f]{2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

# Temporary directories older than this are leftovers of killed processes; younger ones may be a
# build in flight in another process, which clear() must not pull from under it.
_STALE_TEMPORARY_SECONDS = 3600.0


def cache_directory() -> Path:
    """The cache root: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``."""
    override = os.environ.get("GRAPHC_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


@functools.lru_cache(maxsize=None)
def cpu_features() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags, or the machine name without them."""
    machine = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                # x86 says "flags", arm64 says "Features".
                if name.strip() in ("flags", "Features"):
                    return f"{machine}: {' '.join(sorted(value.split()))}"
    except OSError:
        pass
    return machine


def cache_key(source: str, kind: str, key_material: Mapping[str, Any]) -> str:
    """sha256 over the source, the artifact kind, the toolchain description, CPU and format version."""
    header = json.dumps(
        {
            "format": RUNTIME_FORMAT_VERSION,
            "kind": kind,
            "compiler": key_material,
            "cpu": cpu_features(),
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256()
    digest.update(header.encode())
    digest.update(b"\0")
    digest.update(source.encode())
    return digest.hexdigest()


def _size_text(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CacheStats:
    """Counters of one :class:`BuildCache` object in this process.

    ``hits``/``misses``: lookups that found / did not find a valid entry; ``builds``: toolchain
    runs that succeeded; ``failures``: builds that raised CompileError; ``discarded``: corrupt
    entries deleted; ``lost_races``: builds whose result another process published first;
    ``build_seconds``: total toolchain time.
    """

    hits: int = 0
    misses: int = 0
    builds: int = 0
    failures: int = 0
    discarded: int = 0
    lost_races: int = 0
    build_seconds: float = 0.0

    def as_dict(self) -> dict[str, Union[int, float]]:
        return asdict(self)

    def reset(self) -> None:
        for name, value in asdict(CacheStats()).items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return (
            f"{self.hits} hits, {self.misses} misses, {self.builds} builds "
            f"({self.build_seconds:.2f} s), {self.failures} failed, {self.discarded} discarded"
        )


@dataclass(frozen=True)
class CacheEntry:
    """One cache entry as listed by :meth:`BuildCache.entries`."""

    key: str
    kind: str  # "shared-library", "ptx", "cubin", or "corrupt" when the manifest is unreadable
    size_bytes: int  # the whole entry: artifact, source, manifest, log
    age_seconds: float
    path: Path  # the entry's directory
    source_path: Optional[Path]
    artifact_path: Optional[Path]


def _mark(directory: Path) -> None:
    """Put graphc's marker into a directory the cache just made (no-op when it is there)."""
    try:
        descriptor = os.open(directory / MARKER_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.write(descriptor, MARKER_TEXT.encode())
    except OSError:  # a full disk: no half-written marker left behind
        os.close(descriptor)
        os.unlink(directory / MARKER_NAME)
        raise
    os.close(descriptor)


def _is_marked(directory: Path) -> bool:
    """Whether ``directory`` (itself not a link) holds graphc's marker: a plain file, not a link."""
    marker = directory / MARKER_NAME
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode):
            return False
        with open(marker, "rb") as handle:
            content = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("graphc") == "build-cache"


def _is_real_directory(path: Path) -> bool:
    """A directory, and not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _own_file_name(name: str) -> bool:
    return name in OWN_FILE_NAMES or name.endswith(OWN_FILE_SUFFIXES) or name.startswith(".write-check-")


def _plain_name(value: Any) -> Optional[str]:
    """``value`` when it names a file directly inside a directory (no separators, not . or ..)."""
    if not isinstance(value, str) or not value or value in (".", "..") or "\0" in value:
        return None
    if os.sep in value or (os.altsep and os.altsep in value) or os.path.basename(value) != value:
        return None
    return value


def _disk_full(error: BaseException) -> bool:
    """An error that says the file system is out of space (or quota)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, CompileError):
        return any(text in (error.log or "") for text in ("No space left on device", "Disk quota exceeded"))
    return False


def _free_bytes(path: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


class _DiskFull(Exception):
    """Internal: a build ran out of space; ``needed`` is at least what it still had to write."""

    def __init__(self, error: BaseException, needed: int):
        super().__init__(str(error))
        self.error = error
        self.needed = needed


@dataclass
class ClearReport:
    """What :meth:`BuildCache.clear_all` removed, and what it left alone because graphc did not make it."""

    entries: int = 0
    failed: int = 0
    pipelines: int = 0
    temporary: int = 0
    kept: list = dataclasses.field(default_factory=list)  # paths graphc did not make, untouched


class BuildCache:
    """Built artifacts on disk, keyed by source + toolchain + flags + CPU + format version.

    ``directory`` defaults to :func:`cache_directory`; one that other users could write is refused
    (:class:`~runtime.errors.CacheDirectoryUnsafe`), one that cannot be written is replaced by a
    private temporary directory with a :class:`~runtime.errors.CacheDirectoryWarning` (so is one
    whose file system fills up during a build). ``stats`` counts this object's hits and
    misses. Use :meth:`get_or_build` (what ``Compiler.compile`` calls), :meth:`lookup`,
    :meth:`discard`, :meth:`entries`, :meth:`make_directory` and :meth:`clear` / :meth:`clear_all`.
    """

    def __init__(self, directory: Union[str, Path, None] = None):
        requested = Path(directory).expanduser() if directory is not None else cache_directory()
        # Refuses a directory others could write (CacheDirectoryUnsafe); falls back to a private
        # temporary one, with a warning, when it cannot be written (cache_safety.py).
        self.requested_directory = requested
        self._use_directory(usable_cache_directory(requested))
        self.stats = CacheStats()
        # key -> (inode, size, mtime) of an artifact whose sha256 was already checked: later
        # lookups in this process compare a stat instead of hashing the file again.
        self._verified: dict[str, tuple[int, int, int]] = {}
        # One build per key at a time inside this process; other processes are handled by rename.
        self._key_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._full_fallback: Optional[Path] = None  # where builds go after the cache's disk filled

    def _use_directory(self, directory: Path) -> None:
        self.directory = directory
        self.entries_dir = directory / "entries"
        self.failed_dir = directory / "failed"
        self.temp_dir = directory / "tmp"
        self._root_marked = False

    def __repr__(self) -> str:
        return f"BuildCache({str(self.directory)!r})"

    # -- directories -------------------------------------------------------------------------
    def make_directory(self, path: Union[str, Path]) -> Path:
        """Create ``path`` (inside the cache) and its missing parents, private (0700) and each with
        graphc's marker; mark the cache root too. Directories that already exist are left as they are."""
        path = Path(path)
        if not self._root_marked:
            make_private_directory(self.directory)
            _mark(self.directory)
            self._root_marked = True
        try:
            relative = path.relative_to(self.directory)
        except ValueError:
            raise ValueError(f"{path} is not inside the build cache {self.directory}") from None
        current = self.directory
        for part in relative.parts:
            current = current / part
            if current.is_dir():
                continue
            try:
                current.mkdir(mode=0o700)  # the umask can only take bits away from 0700
            except FileExistsError:
                continue  # made meanwhile by another process
            _mark(current)
        return path

    # -- keys and lookups --------------------------------------------------------------------
    def key_for(self, source: str, compiler: "Compiler") -> str:
        return cache_key(source, compiler.kind, compiler.key_material())

    def entry_path(self, key: str) -> Path:
        return self.entries_dir / key

    def lookup(self, key: str) -> Optional[Artifact]:
        """The valid entry for ``key`` as an Artifact (``cache_hit=True``), or None.

        An entry that fails validation is deleted on the spot, so the caller's rebuild can
        publish a good one.
        """
        entry = self.entry_path(key)
        try:
            with open(entry / MANIFEST_NAME, "rb") as handle:
                manifest = json.loads(handle.read())
        except FileNotFoundError:
            if os.path.lexists(entry):  # a directory without a manifest was not published by us
                self.discard(key)
            return None
        except (OSError, ValueError, RecursionError):
            self.discard(key)
            return None
        artifact = self._validated(key, entry, manifest)
        if artifact is None:
            self.discard(key)
        return artifact

    @staticmethod
    def _inside_entry(entry: Path, name: Any) -> Optional[Path]:
        """``entry / name`` when ``name`` is a plain file name (no directory part: not absolute, no
        ``..``) of a regular file, not a symlink: a file that lies in the entry itself. None otherwise."""
        name = _plain_name(name)
        if name is None:
            return None
        path = entry / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
        return path

    def _validated(self, key: str, entry: Path, manifest: Any) -> Optional[Artifact]:
        """The entry as an Artifact when every field of its manifest is what ``_build`` writes."""
        if not isinstance(manifest, dict) or not _is_real_directory(entry):
            return None
        fields = manifest.get("format"), manifest.get("key"), manifest.get("kind"), manifest.get("size")
        form, stored_key, kind, size = fields
        if type(form) is not int or form != RUNTIME_FORMAT_VERSION or stored_key != key:
            return None
        if not isinstance(kind, str) or not kind or type(size) is not int or size < 0:
            return None
        digest = manifest.get("sha256")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return None
        metadata = manifest.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(name, str) for name in metadata):
            return None
        source_name = _plain_name(manifest.get("source"))
        artifact_path = self._inside_entry(entry, manifest.get("artifact"))
        if source_name is None or artifact_path is None:
            return None
        try:
            status = artifact_path.stat()
            if status.st_size != size:
                return None
            identity = (status.st_ino, status.st_size, status.st_mtime_ns)
            if self._verified.get(key) != identity:
                if _sha256_of_file(artifact_path) != digest:
                    return None
                self._verified[key] = identity
        except OSError:
            return None
        return Artifact(
            path=artifact_path,
            kind=kind,
            key=key,
            source_path=entry / source_name,
            cache_hit=True,
            build_seconds=0.0,
            metadata=dict(metadata),
        )

    # -- building ----------------------------------------------------------------------------
    def get_or_build(self, source: str, compiler: "Compiler") -> Artifact:
        """Return the cached artifact for (source, compiler), building and publishing it if needed."""
        key = self.key_for(source, compiler)
        with self._lock_for(key):
            artifact = self.lookup(key)
            if artifact is not None:
                self.stats.hits += 1
                return artifact
            self.stats.misses += 1
            try:
                return self._build(key, source, compiler)
            except _DiskFull as full:
                return self._build_elsewhere(key, source, compiler, full)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._key_locks[key]

    def _build_elsewhere(self, key: str, source: str, compiler: "Compiler", full: _DiskFull) -> Artifact:
        """The cache's file system is full: build in a private temporary directory, which the rest
        of this process then uses, and say so once; raise CacheDiskFull when that is full too."""
        full_directory, free = self.directory, _free_bytes(self.directory)
        if self._full_fallback is not None:  # already the fallback: nowhere else to go
            raise CacheDiskFull(self.requested_directory, full.needed, _free_bytes(self.requested_directory),
                                full_directory, free) from None
        try:
            fallback = private_temporary_cache()
        except OSError as error:
            if not _disk_full(error):
                raise
            raise CacheDiskFull(full_directory, full.needed, free, tempfile.gettempdir(),
                                _free_bytes(Path(tempfile.gettempdir()))) from None
        self._use_directory(fallback)
        self._full_fallback = fallback
        try:
            artifact = self._build(key, source, compiler)
        except _DiskFull as again:
            fallback_free = _free_bytes(fallback)
            self._use_directory(full_directory)  # later builds try the cache again (space may come back)
            self._full_fallback = None
            shutil.rmtree(fallback, ignore_errors=True)  # made by us just now, holds nothing else
            raise CacheDiskFull(full_directory, max(full.needed, again.needed), free, fallback,
                                fallback_free) from None
        except BaseException:
            self._use_directory(full_directory)
            self._full_fallback = None
            raise
        took = _tree_bytes(artifact.path.parent)
        warnings.warn(
            f"graphc's build cache {full_directory} is full ({full.error}; "
            f"{_size_text(free) if free is not None else 'no space'} free on its file system, and this "
            f"program's build takes {_size_text(took)}); building in the private temporary directory "
            f"{fallback} instead for the rest of this process, which is deleted at exit, so these builds "
            "are not reused by later runs. Free some space there (`graphc cache clear` empties the cache) "
            "or set GRAPHC_CACHE_DIR to a directory on a file system with room.",
            CacheDirectoryWarning,
            stacklevel=4,
        )
        return artifact

    def _build(self, key: str, source: str, compiler: "Compiler") -> Artifact:
        work: Optional[Path] = None
        keep_work = False
        try:
            self.make_directory(self.temp_dir)
            work = Path(tempfile.mkdtemp(prefix=f"build-{key[:16]}-", dir=self.temp_dir))
            _mark(work)
            started = time.perf_counter()
            try:
                built = Path(compiler.build(source, work))
            except CompileError as error:
                if _disk_full(error):
                    raise
                self.stats.failures += 1
                kept_at, error = self._keep_failed(key, work, error)
                keep_work = kept_at == work
                raise error from None
            seconds = time.perf_counter() - started
            self.stats.builds += 1
            self.stats.build_seconds += seconds
            if built.parent != work:
                raise RuntimeError(f"{compiler!r}.build() must write its artifact inside {work}, not {built}")
            source_path = work / compiler.source_name
            if not source_path.exists():
                source_path.write_text(source)
            metadata = dict(compiler.artifact_metadata())
            manifest = {
                "format": RUNTIME_FORMAT_VERSION,
                "key": key,
                "kind": compiler.kind,
                "artifact": built.name,
                "source": source_path.name,
                "size": built.stat().st_size,
                "sha256": _sha256_of_file(built),
                "created": time.time(),
                "build_seconds": seconds,
                "metadata": metadata,
                "compiler": compiler.key_material(),
            }
            (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
            for _ in range(3):
                final = self._publish(key, work)
                if final is not None:
                    break
                # Another process published this key first: use its entry. (lookup deletes it
                # if it is corrupt, and the next round publishes ours in its place.)
                winner = self.lookup(key)
                if winner is not None:
                    self.stats.lost_races += 1
                    return dataclasses.replace(winner, cache_hit=False, build_seconds=seconds)
            else:
                raise RuntimeError(f"could not publish cache entry {key} in {self.entries_dir}")
            return Artifact(
                path=final / built.name,
                kind=compiler.kind,
                key=key,
                source_path=final / source_path.name,
                cache_hit=False,
                build_seconds=seconds,
                metadata=metadata,
            )
        except (OSError, CompileError) as error:
            if not _disk_full(error):
                raise
            written = _tree_bytes(work) if work is not None else 0
            raise _DiskFull(error, written + len(source.encode())) from error
        finally:
            if work is not None and not keep_work and os.path.lexists(work):
                self._delete_own_directory(work, [])

    def _publish(self, key: str, work: Path) -> Optional[Path]:
        """Rename ``work`` to ``entries/<key>``; None when a published entry is already there."""
        self.make_directory(self.entries_dir)
        final = self.entry_path(key)
        try:
            os.replace(work, final)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return None
            raise
        return final

    def _keep_failed(self, key: str, work: Path, error: CompileError) -> tuple[Path, CompileError]:
        """Move a failed build to ``failed/<key>`` and point the error's paths there."""
        self.make_directory(self.failed_dir)
        target = self.failed_dir / key
        for _ in range(2):  # a concurrent failure of the same key may re-create it in between
            self._remove_directory(target)
            try:
                os.replace(work, target)
                return target, error.relocated(work, target)
            except OSError:
                continue
        return work, error  # keep the private directory: the error still names a real file

    # -- maintenance -------------------------------------------------------------------------
    def discard(self, key: str) -> bool:
        """Delete the entry for ``key`` (atomically: it is renamed away first). True if it existed."""
        self._verified.pop(key, None)
        if not self._remove_directory(self.entry_path(key)):
            return False
        self.stats.discarded += 1
        return True

    def _remove_directory(self, directory: Path, kept: Optional[list] = None) -> bool:
        """Rename ``directory`` (a cache entry, a failed build) into ``tmp/`` - so it disappears
        at once as a whole - then delete what graphc wrote in it. A symlink in its place is
        unlinked, never followed. False when there was nothing there."""
        self.make_directory(self.temp_dir)
        trash = self.temp_dir / f"delete-{uuid.uuid4().hex}"
        try:
            os.replace(directory, trash)
        except FileNotFoundError:
            return False
        self._delete_own_directory(trash, kept if kept is not None else [])
        return True

    def _delete_own_directory(self, directory: Path, kept: list) -> bool:
        """Delete a directory graphc made: its links (unlinked, not followed), files with graphc's
        names, marked subdirectories; anything else stays (listed in ``kept``), and so does the
        directory then, marker included. True when the directory is gone."""
        try:
            status = os.lstat(directory)
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(status.st_mode):
            os.unlink(directory)  # a link (or file) where a directory was: the name only
            return True
        try:
            children = list(os.scandir(directory))
        except OSError:
            kept.append(directory)
            return False
        listed = self._listed_names(directory)
        before = len(kept)
        for child in children:
            path = Path(child.path)
            try:
                if child.name == MARKER_NAME:
                    continue
                if child.is_symlink():
                    os.unlink(path)  # the link itself; what it points to is not ours
                elif child.is_dir(follow_symlinks=False):
                    if _is_marked(path):
                        self._delete_own_directory(path, kept)
                    else:
                        kept.append(path)
                elif _own_file_name(child.name) or child.name in listed:
                    os.unlink(path)
                else:
                    kept.append(path)
            except FileNotFoundError:
                continue
        if len(kept) > before:
            return False
        try:
            os.unlink(directory / MARKER_NAME)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:  # something appeared meanwhile: leave it, and mark the directory again
            _mark(directory)
            kept.append(directory)
            return False
        return True

    @staticmethod
    def _listed_names(directory: Path) -> set:
        """The artifact and source names the manifest in ``directory`` lists (plain names only)."""
        try:
            with open(directory / MANIFEST_NAME, "rb") as handle:
                manifest = json.loads(handle.read(1 << 20))
        except (OSError, ValueError, RecursionError):
            return set()
        if not isinstance(manifest, dict):
            return set()
        return {name for name in (_plain_name(manifest.get("artifact")), _plain_name(manifest.get("source")))
                if name is not None}

    def entries(self) -> list[CacheEntry]:
        """Every entry, oldest first: key, kind, size in bytes, age, paths."""
        listed = []
        now = time.time()
        if not _is_real_directory(self.entries_dir):
            return []
        try:
            # graphc's entries only: named by a key or marked (not a user's folder in entries/)
            directories = [Path(child.path) for child in os.scandir(self.entries_dir)
                           if child.is_dir(follow_symlinks=False)
                           and (_KEY_NAME.fullmatch(child.name) or _is_marked(Path(child.path)))]
        except FileNotFoundError:
            return []
        for directory in directories:
            try:
                files = [Path(child.path) for child in os.scandir(directory) if child.is_file(follow_symlinks=False)]
                size = sum(path.lstat().st_size for path in files)
                created = directory.stat().st_mtime
            except FileNotFoundError:  # deleted by another process meanwhile
                continue
            kind, source_path, artifact_path = "corrupt", None, None
            try:
                with open(directory / MANIFEST_NAME, "rb") as handle:
                    manifest = json.loads(handle.read())
            except (OSError, ValueError, RecursionError):
                manifest = None
            if isinstance(manifest, dict):
                if isinstance(manifest.get("kind"), str):
                    kind = manifest["kind"]
                stamp = manifest.get("created")
                if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp == stamp:
                    created = float(stamp)
                source_name = _plain_name(manifest.get("source"))
                source_path = directory / source_name if source_name else None
                artifact_path = self._inside_entry(directory, manifest.get("artifact"))
                if artifact_path is None:
                    kind = "corrupt"
            listed.append(
                CacheEntry(
                    key=directory.name,
                    kind=kind,
                    size_bytes=size,
                    age_seconds=max(0.0, now - created),
                    path=directory,
                    source_path=source_path,
                    artifact_path=artifact_path,
                )
            )
        return sorted(listed, key=lambda entry: -entry.age_seconds)

    # -- clearing ----------------------------------------------------------------------------
    def clear(self) -> int:
        """Delete every entry, kept failed build and stored pipeline graphc made; return how many
        entries were deleted (:meth:`clear_all` says what else was removed and what was kept)."""
        return self.clear_all().entries

    def clear_all(self) -> ClearReport:
        """Delete what graphc made in the cache directory, and nothing else.

        Removed: marked directories (and directories named and laid out as graphc names them,
        from caches written before markers) under ``entries/``, ``failed/``, ``pipelines/`` and
        stale ones under ``tmp/``, and inside them only files with graphc's names. Symlinks are
        never followed (a symlinked ``tmp/`` is left as it is). Everything else is listed in the
        report's ``kept``. A non-empty folder in which nothing is graphc's raises
        :class:`~runtime.errors.CacheDirectoryNotRecognized` and deletes nothing.

        Programs already loaded keep working (their files stay mapped until unloaded).
        """
        report = ClearReport()
        root = self.directory
        try:
            top = sorted(os.scandir(root), key=lambda child: child.name)
        except (FileNotFoundError, NotADirectoryError):
            return report
        top = [child for child in top if child.name != MARKER_NAME]
        if not top:
            return report
        if not self._recognized(root):
            shown = [self._describe(Path(child.path), root) for child in top[:8]]
            raise CacheDirectoryNotRecognized(root, shown, max(0, len(top) - len(shown)))
        for child in top:
            path = Path(child.path)
            if child.name in ("entries", "failed", "tmp", "pipelines"):
                if not child.is_dir(follow_symlinks=False):
                    report.kept.append(path)  # a link or a file where graphc keeps a directory
            elif child.name.startswith(".write-check-") and child.is_file(follow_symlinks=False):
                os.unlink(path)  # a writability probe of a killed process
            else:
                report.kept.append(path)
        self._verified.clear()
        temporaries = self._children(self.temp_dir)   # before the deletions below add their own
        for child in self._children(self.entries_dir):
            if self._is_own_entry(child):
                if self._remove_directory(child, report.kept):
                    report.entries += 1
            else:
                report.kept.append(child)
        for child in self._children(self.failed_dir):
            if _is_real_directory(child) and (_is_marked(child) or _KEY_NAME.fullmatch(child.name)):
                if self._remove_directory(child, report.kept):
                    report.failed += 1
            else:
                report.kept.append(child)
        pipelines = self.directory / "pipelines"
        for child in self._children(pipelines):
            if _is_real_directory(child) and (_is_marked(child) or _PIPELINE_SHARD_NAME.fullmatch(child.name)):
                report.pipelines += sum(1 for name in self._names(child) if name.endswith(".pickle"))
                self._delete_own_directory(child, report.kept)  # readers and writers tolerate it vanishing
            else:
                report.kept.append(child)
        now = time.time()
        for child in temporaries:
            if not _is_real_directory(child) or not (child.name.startswith(("build-", "delete-"))
                                                     or _is_marked(child)):
                report.kept.append(child)
                continue
            try:
                stale = now - os.lstat(child).st_mtime > _STALE_TEMPORARY_SECONDS
            except FileNotFoundError:
                continue
            # a young build-* directory may be a build in flight in another process
            if stale or child.name.startswith("delete-"):
                if self._delete_own_directory(child, report.kept):
                    report.temporary += 1
        return report

    @staticmethod
    def _children(directory: Path) -> list:
        """The entries of ``directory`` but its marker, when it is a real directory (a symlink is
        not followed)."""
        if not _is_real_directory(directory):
            return []
        try:
            return sorted(Path(child.path) for child in os.scandir(directory) if child.name != MARKER_NAME)
        except OSError:
            return []

    @staticmethod
    def _names(directory: Path) -> list:
        try:
            return [child.name for child in os.scandir(directory)]
        except OSError:
            return []

    @staticmethod
    def _is_own_entry(path: Path) -> bool:
        """An entry directory graphc made: marked, or (written before markers) named by a key and
        holding a manifest."""
        if not _is_real_directory(path):
            return False
        if _is_marked(path):
            return True
        try:
            return bool(_KEY_NAME.fullmatch(path.name)) and stat.S_ISREG(os.lstat(path / MANIFEST_NAME).st_mode)
        except OSError:
            return False

    def _recognized(self, root: Path) -> bool:
        """Whether ``root`` is a graphc cache: it has the marker, or something in it is graphc's."""
        if _is_marked(root):
            return True
        if any(self._is_own_entry(child) for child in self._children(self.entries_dir)):
            return True
        if any(_is_real_directory(child) and _is_marked(child)
               for folder in (self.failed_dir, self.temp_dir, root / "pipelines") for child in self._children(folder)):
            return True
        return any(_is_real_directory(child) and _PIPELINE_SHARD_NAME.fullmatch(child.name)
                   and any(name.endswith(".pickle") for name in self._names(child))
                   for child in self._children(root / "pipelines"))

    @staticmethod
    def _describe(path: Path, root: Path) -> str:
        """``path`` relative to ``root``, with a file or two inside when it is a real directory."""
        name = str(path.relative_to(root))
        try:
            status = os.lstat(path)
        except OSError:
            return name
        if stat.S_ISLNK(status.st_mode):
            return f"{name} (a symlink)"
        if not stat.S_ISDIR(status.st_mode):
            return name
        inside = []
        for folder, directories, files in os.walk(path):
            inside.extend(str(Path(folder, file).relative_to(root)) for file in sorted(files))
            directories.sort()
            if len(inside) >= 2:
                break
        return ", ".join(inside[:2]) if inside else f"{name}/ (empty)"


_default_caches: dict[Path, BuildCache] = {}
_default_caches_guard = threading.Lock()


def default_cache() -> BuildCache:
    """The process-wide cache object for the current cache directory.

    The directory is re-read from the environment on every call (tests point
    ``GRAPHC_CACHE_DIR`` elsewhere); each directory keeps one object, so its stats accumulate.
    """
    directory = cache_directory()
    with _default_caches_guard:
        cache = _default_caches.get(directory)
        if cache is None:
            cache = _default_caches[directory] = BuildCache(directory)
        return cache
