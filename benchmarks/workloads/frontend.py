"""F1: what the lazy front end costs per op and per realize, graphc lazy (PyTorch eager beside it
for scale: there each op runs at once).

- F1-op: µs per recorded op: a chain of 1000 elementwise ops (`y = y * 0.5 + x`, 500 times) on a
  16-element tensor, built without realizing it; the median over repeated chains of time / 1000.
- F1-realize: µs per cached realize: `(x * 2 + 1).sum().item()` on the same tensor, repeated (its
  structure recurs, so after the warm-up every call is a lookup and one native call).
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.report import Result, Row, Target
from benchmarks.timing import Timing, Unit, measure_calls
from benchmarks.workloads.common import Context, measure_each_system

ID = "F1"
ELEMENTS = 16
CHAIN_OPS = 1000
CHAINS_WARMUP, CHAINS = 3, 50
REALIZES_WARMUP, REALIZES = 10, 1000
NATIVE_CALLS = "native calls per realize"


def microseconds_per_op() -> Unit:
    return Unit("µs/op", higher_is_better=False, scale=1e6)


def microseconds_per_realize() -> Unit:
    return Unit("µs/realize", higher_is_better=False, scale=1e6)


def chain(x):
    y = x
    for _ in range(CHAIN_OPS // 2):
        y = y * 0.5 + x
    return y


def measure_recording(system, warmup: int, counted: int) -> Result:
    """Seconds per op of `chain`, one sample per chain; the chain is dropped unrealized, outside
    the clock."""
    x = system.tensor(np.linspace(-1, 1, ELEMENTS, dtype=np.float32))
    native_calls = getattr(system, "native_calls", None)
    before = native_calls() if native_calls else None
    timing = Timing()
    for index in range(warmup + counted):
        started = time.perf_counter()
        y = chain(x)
        elapsed = (time.perf_counter() - started) / CHAIN_OPS
        del y
        (timing.warmup if index < warmup else timing.counted).append(elapsed)
    counters = {}
    if native_calls:
        counters["native calls while recording"] = native_calls() - before
    return Result.from_timing(microseconds_per_op(), timing, counters=counters)


def measure_realize(system, warmup: int, counted: int) -> Result:
    x = system.tensor(np.linspace(-1, 1, ELEMENTS, dtype=np.float32))
    last = {}

    def call():
        last["value"] = (x * 2 + 1).sum().item()

    native_calls = getattr(system, "native_calls", None)
    timing = measure_calls(call, lambda index: (), warmup, 0, system.one_time_work(None))
    before = native_calls() if native_calls else None
    timing.counted = measure_calls(call, lambda index: (), 0, counted).counted
    counters = {NATIVE_CALLS: (native_calls() - before) / counted} if native_calls else {}
    return Result.from_timing(microseconds_per_realize(), timing, check=last["value"], counters=counters)


def run(context: Context) -> list[Row]:
    chains_warmup, chains = context.counts(CHAINS_WARMUP, CHAINS)
    realizes_warmup, realizes = context.counts(REALIZES_WARMUP, REALIZES)
    record = Row(f"{ID}-op", f"record one op (a {CHAIN_OPS}-op elementwise chain on {ELEMENTS} elements, "
                 "not realized)", microseconds_per_op(),
                 target=Target("≤ 2 µs/op", 2.0, "absolute", at_most=True, system="lazy"))
    realize = Row(f"{ID}-realize", f"cached realize: (x * 2 + 1).sum().item(), {ELEMENTS} elements",
                  microseconds_per_realize(), check_label="value",
                  target=Target("≤ 10 µs", 10.0, "absolute", at_most=True, system="lazy"))
    record.notes.append("PyTorch eager runs each op as it is called: its column is the cost of a small op, "
                        "for scale")
    measure_each_system(context, record, lambda system: measure_recording(system, chains_warmup, chains))
    measure_each_system(context, realize, lambda system: measure_realize(system, realizes_warmup, realizes))
    return [record, realize]
