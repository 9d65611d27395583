"""Choosing a build cache directory that is safe to load code from, and usable.

graphc ``dlopen``s the shared libraries it finds in its cache (and ``graphc.backends.c`` unpickles
pipeline stages kept there), so a cache directory another user can write is a way for that user to
run code in this process: such a directory is refused with :class:`CacheDirectoryUnsafe`, never
used. A directory that merely cannot be created or written (a read-only home, ``GRAPHC_CACHE_DIR``
naming a file, a full disk) is not an attack, only an inconvenience: graphc then builds into a
private temporary directory for this process and says so once with a warning.
"""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path

from .errors import CacheDirectoryUnsafe, CacheDirectoryWarning

__all__ = ["check_cache_directory", "usable_cache_directory", "make_private_directory", "MANAGED_SUBDIRECTORIES",
           "private_temporary_cache"]

# Directories under the cache root whose contents graphc loads or publishes from.
MANAGED_SUBDIRECTORIES = ("entries", "tmp", "failed", "pipelines")


def _problem(path: Path) -> str | None:
    """Why another user could write ``path`` (an existing directory), or None."""
    status = path.lstat()
    if stat.S_ISLNK(status.st_mode):
        status = path.stat()  # a link we made is fine; what matters is where it leads
    if not stat.S_ISDIR(status.st_mode):
        return None  # not a directory: the writability probe reports it
    if status.st_uid != os.geteuid():
        return f"it is owned by user id {status.st_uid}, not by this user ({os.geteuid()})"
    writable_by = [who for who, bit in (("group", stat.S_IWGRP), ("other users", stat.S_IWOTH))
                   if status.st_mode & bit]
    if writable_by:
        return (f"its mode is {stat.S_IMODE(status.st_mode):04o}: writable by "
                f"{' and '.join(writable_by)}")
    return None


def make_private_directory(path) -> None:
    """Create ``path`` and its missing parents with mode 0700, whatever the umask: with a umask of
    002 (common where every user has a group of their own) plain ``mkdir`` would make the cache's
    directories group-writable, and the next process would refuse the cache graphc itself made."""
    path = Path(path)
    if path.is_dir():
        return
    if not path.parent.exists():
        make_private_directory(path.parent)
    try:
        path.mkdir(mode=0o700)   # the umask can only take bits away from 0700
    except FileExistsError:
        pass   # made meanwhile by another process (check_cache_directory judges it)


def check_cache_directory(root: Path) -> None:
    """Raise :class:`CacheDirectoryUnsafe` if ``root`` or a directory graphc manages inside it can
    be written by someone else. Missing directories are fine (graphc creates them private)."""
    for path in (root, *(root / name for name in MANAGED_SUBDIRECTORIES)):
        try:
            problem = _problem(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if problem is not None:
            raise CacheDirectoryUnsafe(path, problem)


def _writable_problem(root: Path) -> str | None:
    """Create ``root`` (private) and a file in it; return what failed, or None."""
    try:
        make_private_directory(root)
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=root)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def usable_cache_directory(requested: Path) -> Path:
    """``requested`` when it is safe and writable; a private temporary directory (with a warning)
    when it cannot be written; :class:`CacheDirectoryUnsafe` when others could write it."""
    requested = Path(requested).expanduser()
    check_cache_directory(requested)
    problem = _writable_problem(requested)
    if problem is None:
        check_cache_directory(requested)  # mkdir may have met a directory made meanwhile
        return requested
    fallback = private_temporary_cache()
    warnings.warn(
        f"graphc cannot use the build cache directory {requested} ({problem}); building in the "
        f"private temporary directory {fallback} instead, which is deleted at exit, so this "
        "process's builds are not reused by later runs. Set GRAPHC_CACHE_DIR to a writable directory.",
        CacheDirectoryWarning,
        stacklevel=3,
    )
    return fallback


def private_temporary_cache() -> Path:
    """A new private (0700) cache directory under the temporary directory, deleted at exit
    (libraries loaded from it stay mapped after they are unlinked)."""
    fallback = Path(tempfile.mkdtemp(prefix="graphc-cache-"))
    atexit.register(shutil.rmtree, fallback, True)
    return fallback
