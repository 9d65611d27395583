"""The on-disk build cache: a second run of a program compiles nothing.

Layout under the cache directory (``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else
``~/.cache/graphc``)::

    entries/<key>/manifest.json   what was built, by what, the artifact's size and sha256
    entries/<key>/program.c       the generated source, kept for error messages and `graphc dump`
    entries/<key>/program.so      the artifact (or kernel.cu + kernel.ptx for CUDA)
    failed/<key>/                 the source (and log) of the last build of <key> that failed
    tmp/                          private build directories and entries being deleted

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
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from .artifact import Artifact
from .cache_safety import make_private_directory, usable_cache_directory
from .errors import CompileError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .compiler import Compiler

__all__ = [
    "BuildCache",
    "CacheEntry",
    "CacheStats",
    "RUNTIME_FORMAT_VERSION",
    "cache_directory",
    "cpu_features",
    "default_cache",
]

# Bump when the cache layout, the manifest or the calling convention changes: old entries then
# simply stop matching (the version is hashed into every key).
RUNTIME_FORMAT_VERSION = 1

MANIFEST_NAME = "manifest.json"

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


class BuildCache:
    """Built artifacts on disk, keyed by source + toolchain + flags + CPU + format version.

    ``directory`` defaults to :func:`cache_directory`; one that other users could write is refused
    (:class:`~runtime.errors.CacheDirectoryUnsafe`), one that cannot be written is replaced by a
    private temporary directory with a :class:`~runtime.errors.CacheDirectoryWarning`.
    ``stats`` counts this object's hits and
    misses. Use :meth:`get_or_build` (what ``Compiler.compile`` calls), :meth:`lookup`,
    :meth:`discard`, :meth:`entries` and :meth:`clear`.
    """

    def __init__(self, directory: Union[str, Path, None] = None):
        requested = Path(directory).expanduser() if directory is not None else cache_directory()
        # Refuses a directory others could write (CacheDirectoryUnsafe); falls back to a private
        # temporary one, with a warning, when it cannot be written (cache_safety.py).
        self.requested_directory = requested
        self.directory = usable_cache_directory(requested)
        self.entries_dir = self.directory / "entries"
        self.failed_dir = self.directory / "failed"
        self.temp_dir = self.directory / "tmp"
        self.stats = CacheStats()
        # key -> (inode, size, mtime) of an artifact whose sha256 was already checked: later
        # lookups in this process compare a stat instead of hashing the file again.
        self._verified: dict[str, tuple[int, int, int]] = {}
        # One build per key at a time inside this process; other processes are handled by rename.
        self._key_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"BuildCache({str(self.directory)!r})"

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
            manifest = json.loads((entry / MANIFEST_NAME).read_text())
        except FileNotFoundError:
            if entry.exists():  # a directory without a manifest was not published by us
                self.discard(key)
            return None
        except (OSError, ValueError):
            self.discard(key)
            return None
        artifact = self._validated(key, entry, manifest)
        if artifact is None:
            self.discard(key)
        return artifact

    def _validated(self, key: str, entry: Path, manifest: Any) -> Optional[Artifact]:
        try:
            if manifest["format"] != RUNTIME_FORMAT_VERSION or manifest["key"] != key:
                return None
            artifact_path = entry / manifest["artifact"]
            status = artifact_path.stat()
            if status.st_size != manifest["size"]:
                return None
            identity = (status.st_ino, status.st_size, status.st_mtime_ns)
            if self._verified.get(key) != identity:
                if _sha256_of_file(artifact_path) != manifest["sha256"]:
                    return None
                self._verified[key] = identity
            return Artifact(
                path=artifact_path,
                kind=manifest["kind"],
                key=key,
                source_path=entry / manifest["source"],
                cache_hit=True,
                build_seconds=0.0,
                metadata=dict(manifest.get("metadata", {})),
            )
        except (OSError, KeyError, TypeError):
            return None

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
            return self._build(key, source, compiler)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._key_locks[key]

    def _build(self, key: str, source: str, compiler: "Compiler") -> Artifact:
        make_private_directory(self.temp_dir)
        work = Path(tempfile.mkdtemp(prefix=f"build-{key[:16]}-", dir=self.temp_dir))
        keep_work = False
        try:
            started = time.perf_counter()
            try:
                built = Path(compiler.build(source, work))
            except CompileError as error:
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
        finally:
            if not keep_work and work.exists():
                shutil.rmtree(work, ignore_errors=True)

    def _publish(self, key: str, work: Path) -> Optional[Path]:
        """Rename ``work`` to ``entries/<key>``; None when a published entry is already there."""
        make_private_directory(self.entries_dir)
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
        make_private_directory(self.failed_dir)
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

    def _remove_directory(self, directory: Path) -> bool:
        make_private_directory(self.temp_dir)
        trash = self.temp_dir / f"delete-{uuid.uuid4().hex}"
        try:
            os.replace(directory, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def entries(self) -> list[CacheEntry]:
        """Every entry, oldest first: key, kind, size in bytes, age, paths."""
        listed = []
        now = time.time()
        try:
            directories = [path for path in self.entries_dir.iterdir() if path.is_dir()]
        except FileNotFoundError:
            return []
        for directory in directories:
            try:
                files = [path for path in directory.iterdir() if path.is_file()]
                size = sum(path.stat().st_size for path in files)
                created = directory.stat().st_mtime
            except FileNotFoundError:  # deleted by another process meanwhile
                continue
            kind, source_path, artifact_path = "corrupt", None, None
            try:
                manifest = json.loads((directory / MANIFEST_NAME).read_text())
                kind = manifest["kind"]
                created = manifest["created"]
                source_path = directory / manifest["source"]
                artifact_path = directory / manifest["artifact"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
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

    def clear(self) -> int:
        """Delete every entry and kept failed source; return how many entries were deleted.

        Programs already loaded keep working (their files stay mapped until unloaded).
        """
        removed = 0
        for entry in self.entries():
            if self._remove_directory(entry.path):
                removed += 1
        self._verified.clear()
        self._remove_directory(self.failed_dir)
        try:
            leftovers = list(self.temp_dir.iterdir())
        except FileNotFoundError:
            leftovers = []
        now = time.time()
        for path in leftovers:
            try:
                stale = now - path.stat().st_mtime > _STALE_TEMPORARY_SECONDS
            except FileNotFoundError:
                continue
            if stale or path.name.startswith("delete-"):
                shutil.rmtree(path, ignore_errors=True)
        return removed


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
