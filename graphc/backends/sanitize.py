"""Sanitizer builds of the C backend (``GRAPHC_SANITIZE=1``): redzones between arena temporaries.

AddressSanitizer checks every load and store against its shadow memory, but the arena that holds a
program's temporaries is one allocation: a kernel writing past the end of its temporary would land
in the next one unseen. In a sanitizer build the memory plan therefore gives each temporary its own
bytes with a gap after it (``graphc.passes.memory``), and :func:`poison_arena` marks the gaps, the
alignment tails and the arena's own slack unaddressable through ASan's public interface, so such a
write stops the program with a report naming the kernel.

A sanitized library only loads into a process that has the ASan runtime (``LD_PRELOAD``; see
README "Sanitizers"); ``runtime.CProgram`` refuses otherwise, before this module is needed.
"""
from __future__ import annotations

import ctypes
import functools
import weakref

import numpy as np

from runtime.c_compiler import sanitize_requested

REDZONE_BYTES = 64  # per gap; ASan's own heap redzones start at 16 bytes


def redzone() -> int:
    """Gap bytes the memory plan leaves after each temporary: 0 unless building sanitized."""
    return REDZONE_BYTES if sanitize_requested() else 0


@functools.lru_cache(maxsize=2)
def _asan_function(name: str):
    """``__asan_poison_memory_region`` / ``__asan_unpoison_memory_region`` from the preloaded ASan
    runtime, or None without it."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    function.restype = None
    return function


def _unpoison(regions) -> None:
    unpoison = _asan_function("__asan_unpoison_memory_region")
    for address, size in regions:
        unpoison(address, size)


def poison_arena(raw: np.ndarray, arena: np.ndarray, ranges) -> int:
    """Mark unaddressable the bytes of ``raw`` outside ``arena`` and ``ranges`` (arena offsets).

    Returns the number of ranges poisoned (0 when the ASan runtime is not loaded). The marks are
    cleared when ``raw`` is deallocated: NumPy keeps small freed buffers in a cache of its own and
    hands them out again without malloc, so marks left behind would fault innocent arrays later.
    """
    poison = _asan_function("__asan_poison_memory_region")
    if poison is None:
        return 0
    base, arena_start = raw.ctypes.data, arena.ctypes.data
    regions = [(base, arena_start - base), (arena_start + arena.nbytes, base + raw.nbytes - arena_start - arena.nbytes)]
    regions += [(arena_start + offset, size) for offset, size in ranges]
    regions = [(address, size) for address, size in regions if size > 0]
    for address, size in regions:
        poison(address, size)
    weakref.finalize(raw, _unpoison, regions)
    return len(regions)
