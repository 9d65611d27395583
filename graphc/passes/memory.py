"""Memory planning: place every temporary buffer in one arena, reusing the memory of dead ones.

Lifetimes are kernel indices in schedule order: a buffer is born at the kernel that writes it and
dies after the last kernel that reads it. Offsets are assigned greedily (best fit among freed
blocks, else the end of the arena), 64-byte aligned for vector loads.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGNMENT = 64


@dataclass
class MemoryPlan:
    offsets: dict        # buffer key -> byte offset in the arena
    arena_bytes: int     # peak bytes of temporaries
    lifetimes: dict      # buffer key -> (first kernel, last kernel)

    def describe(self) -> str:
        lines = [f"arena: {self.arena_bytes} bytes (peak of temporaries)"]
        for key, offset in sorted(self.offsets.items(), key=lambda item: item[1]):
            first, last = self.lifetimes[key]
            lines.append(f"  {key}: offset {offset}, live in kernels {first}..{last}")
        return "\n".join(lines)


def _aligned(size: int) -> int:
    return max(ALIGNMENT, (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT)


def plan_memory(sizes: dict, lifetimes: dict) -> MemoryPlan:
    """sizes: key -> bytes; lifetimes: key -> (first, last) kernel index."""
    free: list = []   # (offset, size) blocks available for reuse
    live: list = []   # (last, offset, size)
    offsets, end = {}, 0
    for key in sorted(sizes, key=lambda k: (lifetimes[k][0], -sizes[k], str(k))):
        first, last = lifetimes[key]
        for entry in [e for e in live if e[0] < first]:
            live.remove(entry)
            free.append(entry[1:])
        need = _aligned(sizes[key])
        fits = [block for block in free if block[1] >= need]
        if fits:
            block = min(fits, key=lambda b: b[1])
            free.remove(block)
            offset = block[0]
            if block[1] > need:
                free.append((offset + need, block[1] - need))
        else:
            offset, end = end, end + need
        offsets[key] = offset
        live.append((last, offset, need))
    return MemoryPlan(offsets, end, dict(lifetimes))
