"""Philox-4x32-10, the counter-based generator behind graphc's random numbers.

Element i of a random op reads counter (offset + i) under key seed, so every element is computed
independently: the C and CUDA kernels produce the same bits as this NumPy version, whatever the
thread count. Each counter gives four 32-bit lanes; `randn` uses two of them (Box-Muller).
"""
from __future__ import annotations

import numpy as np

MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10
MASK32 = np.uint64(0xFFFFFFFF)


def _mulhilo(multiplier, value):
    product = np.uint64(multiplier) * value.astype(np.uint64)
    return product >> np.uint64(32), product & MASK32


def bits(seed: int, offset: int, count: int) -> np.ndarray:
    """uint32 array (count, 4): Philox of counters offset..offset+count-1 under `seed`."""
    counter_index = np.arange(count, dtype=np.uint64) + np.uint64(offset)
    c0 = counter_index & MASK32
    c1 = counter_index >> np.uint64(32)
    c2 = np.zeros(count, dtype=np.uint64)
    c3 = np.zeros(count, dtype=np.uint64)
    k0 = np.uint64(seed & 0xFFFFFFFF)
    k1 = np.uint64((seed >> 32) & 0xFFFFFFFF)
    for round_index in range(ROUNDS):
        hi0, lo0 = _mulhilo(MULTIPLIERS[0], c0)
        hi1, lo1 = _mulhilo(MULTIPLIERS[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(KEY_STEPS[0])) & MASK32
        k1 = (k1 + np.uint64(KEY_STEPS[1])) & MASK32
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def uniform(seed: int, offset: int, count: int, lane: int = 0) -> np.ndarray:
    """float32 in [0, 1): the top 24 bits of one lane, scaled by 2^-24."""
    lane_bits = bits(seed, offset, count)[:, lane]
    return ((lane_bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24))
