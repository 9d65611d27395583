"""Memory planning: place every temporary buffer in one arena, reusing the memory of dead ones.

Lifetimes are kernel indices in schedule order: a buffer is born at the kernel that writes it and
dies after the last kernel that reads it. Offsets are assigned greedily (best fit among freed
blocks, else the end of the arena), 64-byte aligned for vector loads.

Under AddressSanitizer (``GRAPHC_SANITIZE=1``) one arena hides overflows: a kernel that writes past
its temporary lands in its neighbour, which is valid memory as far as ASan knows. So a plan made
with ``redzone > 0`` reuses nothing and leaves ``redzone`` bytes after every buffer, and lists in
``poison`` every byte range no buffer owns (the gaps and each buffer's alignment tail), which the
C backend marks unaddressable before the program runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGNMENT = 64


@dataclass
class MemoryPlan:
    offsets: dict        # buffer key -> byte offset in the arena
    arena_bytes: int     # peak bytes of temporaries
    lifetimes: dict      # buffer key -> (first kernel, last kernel)
    poison: list = field(default_factory=list)  # (offset, bytes) owned by no buffer (redzones)

    def describe(self) -> str:
        lines = [f"arena: {self.arena_bytes} bytes (peak of temporaries)"]
        for key, offset in sorted(self.offsets.items(), key=lambda item: item[1]):
            first, last = self.lifetimes[key]
            lines.append(f"  {key}: offset {offset}, live in kernels {first}..{last}")
        return "\n".join(lines)


def _aligned(size: int) -> int:
    return max(ALIGNMENT, (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT)


def plan_memory(sizes: dict, lifetimes: dict, redzone: int = 0) -> MemoryPlan:
    """sizes: key -> bytes; lifetimes: key -> (first, last) kernel index; redzone: see the module."""
    if redzone > 0:
        return _plan_with_redzones(sizes, lifetimes, _aligned(redzone))
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


def _plan_with_redzones(sizes: dict, lifetimes: dict, redzone: int) -> MemoryPlan:
    """Every buffer in its own place, each followed by an unowned gap: [gap][buf0][gap][buf1][gap]."""
    offsets, poison, end = {}, [(0, redzone)], redzone
    for key in sorted(sizes, key=lambda k: (lifetimes[k][0], str(k))):
        offsets[key] = end
        used = _aligned(sizes[key])
        poison.append((end + sizes[key], used - sizes[key] + redzone))
        end += used + redzone
    return MemoryPlan(offsets, end, dict(lifetimes), poison)
