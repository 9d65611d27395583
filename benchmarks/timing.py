"""Timing helpers: per-call `time.perf_counter` samples, medians, and the units they are shown in."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Unit:
    """How seconds per call become the number a row shows.

    `work` is what one call does (bytes moved for GB/s, floating-point operations for GFLOP/s);
    time units ignore it.
    """
    name: str
    higher_is_better: bool
    scale: float = 1.0          # seconds -> shown value (time units), or work / scale per second
    work: float = 0.0

    def from_seconds(self, seconds: float | None) -> float | None:
        if seconds is None or not seconds > 0:
            return None
        if self.higher_is_better:
            return self.work / seconds / self.scale
        return seconds * self.scale


def milliseconds_per_step() -> Unit:
    return Unit("ms/step", higher_is_better=False, scale=1e3)


def microseconds_per_step() -> Unit:
    return Unit("µs/step", higher_is_better=False, scale=1e6)


def seconds() -> Unit:
    return Unit("s", higher_is_better=False, scale=1.0)


def gigabytes_per_second(bytes_moved: float) -> Unit:
    return Unit("GB/s", higher_is_better=True, scale=1e9, work=bytes_moved)


def gigaflops_per_second(operations: float) -> Unit:
    return Unit("GFLOP/s", higher_is_better=True, scale=1e9, work=operations)


@dataclass
class Timing:
    """Per-call seconds of one system on one workload."""
    counted: list = field(default_factory=list)      # seconds of each counted call, after warm-up
    warmup: list = field(default_factory=list)       # seconds of each warm-up call
    startup_seconds: float | None = None             # the first call(s): until the first plain replay
    startup_calls: int = 0

    @property
    def median(self) -> float | None:
        return statistics.median(self.counted) if self.counted else None

    @property
    def minimum(self) -> float | None:
        return min(self.counted) if self.counted else None

    @property
    def spread(self) -> float | None:
        """median / min: 1.0 for a quiet machine; well above it when other jobs share the cores."""
        if not self.counted or not self.minimum:
            return None
        return self.median / self.minimum


def measure_calls(call: Callable, arguments: Callable[[int], tuple], warmup: int, counted: int,
                  one_time_work: Callable[[], int] | None = None) -> Timing:
    """Time `call(*arguments(i))` for `warmup` then `counted` calls, one perf_counter pair per call.

    `arguments(i)` runs outside the timed region (fresh data is converted there). The startup time
    is the first call plus every later warm-up call during which `one_time_work()` grew (tracing,
    compiling, interpreting a graph not yet compiled), i.e. the calls before steady replay.
    """
    timing = Timing()
    work_before = one_time_work() if one_time_work else 0
    startup, startup_calls = 0.0, 0
    for index in range(warmup + counted):
        args = arguments(index)
        started = time.perf_counter()
        call(*args)
        elapsed = time.perf_counter() - started
        if index < warmup:
            timing.warmup.append(elapsed)
            work_now = one_time_work() if one_time_work else work_before
            if index == 0 or work_now != work_before:
                startup += elapsed
                startup_calls += 1
            work_before = work_now
        else:
            timing.counted.append(elapsed)
    timing.startup_seconds = startup if warmup else None
    timing.startup_calls = startup_calls
    return timing


def scaled(count: int, scale: float, minimum: int) -> int:
    """`count` calls cut by `scale` (for --quick), never below `minimum`."""
    return max(minimum, int(round(count * scale)))
