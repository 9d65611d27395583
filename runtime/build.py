"""One-call helpers over the default cache: compile C to a ready-to-call program, list, clear."""

from __future__ import annotations

from typing import Optional

from .c_compiler import CCompiler
from .cache import BuildCache, CacheEntry, default_cache
from .cprogram import CProgram
from .errors import LoadError, MissingEntryPoint

__all__ = ["compile_c", "cache_entries", "clear_cache"]


def compile_c(
    source: str,
    entry: str,
    *,
    cache: Optional[BuildCache] = None,
    num_buffers: Optional[int] = None,
    **options,
) -> CProgram:
    """Compile C ``source`` (cached) and load its entry point ``void entry(void **buffers)``.

    ``options`` go to :class:`CCompiler` (``cc``, ``sanitize``, ``blas``, ``extra_flags``,
    ``link_flags``). ``cache`` defaults to the cache in ``$GRAPHC_CACHE_DIR`` (or
    ``~/.cache/graphc``). ``program.cache_hit`` tells whether anything was compiled.
    Raises CompileError, ToolchainMissing, LoadError.
    """
    cache = cache if cache is not None else default_cache()
    compiler = CCompiler(**options)
    artifact = compiler.compile(source, cache=cache)
    try:
        return CProgram.from_artifact(artifact, entry, num_buffers=num_buffers)
    except MissingEntryPoint:
        raise  # the source's fault, not the cache's: rebuilding would not help
    except LoadError:
        if not artifact.cache_hit or artifact.metadata.get("sanitize"):
            raise
        # The entry passed the size/hash check but still does not load (for instance its
        # manifest was rewritten along with it): delete it and build once more.
        cache.discard(artifact.key)
        artifact = compiler.compile(source, cache=cache)
        return CProgram.from_artifact(artifact, entry, num_buffers=num_buffers)


def cache_entries(cache: Optional[BuildCache] = None) -> list[CacheEntry]:
    """Entries of the (default) build cache: key, kind, size in bytes, age in seconds, paths."""
    return (cache if cache is not None else default_cache()).entries()


def clear_cache(cache: Optional[BuildCache] = None) -> int:
    """Delete every entry of the (default) build cache; return how many were deleted."""
    return (cache if cache is not None else default_cache()).clear()
