"""One-call helpers over the default cache: compile C to a ready-to-call program, list, clear."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .artifact import Artifact
from .c_compiler import CCompiler
from .cache import BuildCache, CacheEntry, default_cache
from .cprogram import CProgram
from .cuda_compiler import DEFAULT_ARCH, NvccCompiler, find_cuda_compiler, nvcc_command_line
from .errors import LoadError, MissingEntryPoint, ToolchainMissing

__all__ = ["compile_c", "compile_cuda", "load_cuda_program", "cache_entries", "clear_cache", "c_build_command",
           "cuda_build_command"]


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


def c_build_command(source_path, output_path, **options) -> list[str]:
    """The command :func:`compile_c` runs to build C ``source_path`` into the shared library
    ``output_path``, for the same ``options`` (the compiler, its flags, and with ``blas=True``
    the ``-I`` of ``cblas.h`` and OpenBLAS's link flags): for rebuilding a source by hand."""
    return CCompiler(**options).command_line(Path(source_path), Path(output_path))


def cuda_build_command(source_path, output_path, *, arch: str = DEFAULT_ARCH,
                       extra_flags: Sequence[str] = ()) -> list[str]:
    """The nvcc command building CUDA ``source_path`` into ``output_path`` with the options
    :func:`compile_cuda` gives NVRTC (nvcc is its fallback; NVRTC is a library, with no command
    of its own): nvcc as found on PATH, or plain ``nvcc`` where it is not there."""
    try:
        return NvccCompiler(arch=arch, extra_flags=extra_flags).command_line(Path(source_path), Path(output_path))
    except ToolchainMissing:
        return nvcc_command_line(source_path, output_path, arch=arch, extra_flags=extra_flags)


def compile_cuda(source: str, *, arch: Optional[str] = None, cache: Optional[BuildCache] = None,
                 **options) -> Artifact:
    """Compile CUDA ``source`` (cached, like C builds) to PTX or a cubin; no GPU needed.

    ``arch``: ``compute_XX`` gives PTX, ``sm_XX`` a cubin; by default PTX for the current
    device (a cubin, see ``device_arch``; PTX for ``compute_80`` where there is none). NVRTC if it can be found,
    else ``nvcc`` (``options`` go to the compiler class). Raises CompileError, ToolchainMissing.
    """
    from .cuda_program import device_arch

    cache = cache if cache is not None else default_cache()
    compiler = find_cuda_compiler(arch=arch or device_arch() or DEFAULT_ARCH, **options)
    return compiler.compile(source, cache=cache)


def load_cuda_program(source: str, launches, *, arch: Optional[str] = None, cache: Optional[BuildCache] = None,
                      **options):
    """compile_cuda, then load the module with CuPy: a :class:`CudaProgram` running ``launches``.

    A cached module that fails to load is rebuilt once (as :func:`compile_c` does)."""
    from .cuda_program import CudaProgram

    cache = cache if cache is not None else default_cache()
    artifact = compile_cuda(source, arch=arch, cache=cache, **options)
    try:
        return CudaProgram(artifact, launches)
    except LoadError:
        if not artifact.cache_hit:
            raise
        cache.discard(artifact.key)
        return CudaProgram(compile_cuda(source, arch=arch, cache=cache, **options), launches)


def cache_entries(cache: Optional[BuildCache] = None) -> list[CacheEntry]:
    """Entries of the (default) build cache: key, kind, size in bytes, age in seconds, paths."""
    return (cache if cache is not None else default_cache()).entries()


def clear_cache(cache: Optional[BuildCache] = None) -> int:
    """Delete every entry of the (default) build cache; return how many were deleted."""
    return (cache if cache is not None else default_cache()).clear()
