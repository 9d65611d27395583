"""graphc's runtime: source text -> callable programs.

Imports nothing from ``graphc`` or ``codegen`` (numpy and the standard library only; CuPy is
optional). Modules, one job each:

- ``errors``        CompileError, ToolchainMissing, LoadError
- ``compiler``      the Compiler interface (``compile(source) -> Artifact``)
- ``c_compiler``    CCompiler: the system C compiler -> shared library
- ``openblas``      include/link flags of scipy-openblas32 for ``blas=True``
- ``nvrtc_library`` ctypes binding to libnvrtc
- ``cuda_compiler`` NVRTCCompiler (and NvccCompiler as a fallback): CUDA -> PTX / cubin
- ``cache``         the on-disk build cache (atomic, multi-process safe, self-repairing)
- ``cache_safety``  refuse a cache directory others can write; fall back when it is unwritable
- ``cprogram``      CProgram: call ``void ENTRY(void **buffers)`` in a loaded library
- ``elf``           a truncated-library check run before dlopen (which would SIGBUS)
- ``artifact``      Artifact: a built file and what is known about it
- ``cuda_program``  CudaProgram: a PTX/cubin loaded with CuPy, its launch manifest run in order
- ``build``         compile_c / compile_cuda / load_cuda_program / cache_entries / clear_cache,
                    and the commands they run (c_build_command / cuda_build_command)
- ``cuda``          cuda_available()
"""

from .artifact import Artifact
from .build import (c_build_command, cache_entries, clear_cache, compile_c, compile_cuda, cuda_build_command,
                    load_cuda_program)
from .c_compiler import CCompiler, sanitize_requested
from .cache import BuildCache, CacheEntry, CacheStats, ClearReport, cache_directory, default_cache
from .cache_safety import make_private_directory
from .compiler import Compiler
from .cprogram import BoundCall, CProgram
from .cuda import cuda_available
from .cuda_compiler import NvccCompiler, NVRTCCompiler, find_cuda_compiler
from .cuda_program import CudaProgram
from .errors import (CacheDirectoryNotRecognized, CacheDirectoryUnsafe, CacheDirectoryWarning, CacheDiskFull,
                     CompileError, LoadError, MissingEntryPoint, ToolchainMissing)
from .threads import get_num_threads, set_num_threads

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "Artifact",
    "BoundCall",
    "BuildCache",
    "CacheDirectoryNotRecognized",
    "CacheDirectoryUnsafe",
    "CacheDirectoryWarning",
    "CacheDiskFull",
    "CacheEntry",
    "CacheStats",
    "ClearReport",
    "CCompiler",
    "CompileError",
    "Compiler",
    "CProgram",
    "LoadError",
    "MissingEntryPoint",
    "NvccCompiler",
    "NVRTCCompiler",
    "ToolchainMissing",
    "cache_directory",
    "make_private_directory",
    "cache_entries",
    "clear_cache",
    "compile_c",
    "compile_cuda",
    "c_build_command",
    "cuda_build_command",
    "CudaProgram",
    "load_cuda_program",
    "cuda_available",
    "default_cache",
    "sanitize_requested",
    "find_cuda_compiler",
]
