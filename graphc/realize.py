"""Realizing: computing pending values, all of them in one native call per device.

`realize_storages` and `realize_all_pending` gather the pending storages' nodes, walk them
(`graphc.schedule`: the structure key and the arrays to bind) and run them on the device's
backend, which looks the compiled program up by the key. The results become the storages'
arrays. Inside a `graphc.compile` trace nothing can be computed: the capture hook says so.
"""
from __future__ import annotations

import numpy as np

from graphc import backend, capture, devices
from graphc.lazy import ENGINE_LOCK, _pending, pending_storages, recorded
from graphc.schedule import walk
from graphc.size import CPU


def realize_storages(storages) -> None:
    """Compute `storages` if any is pending, and with them everything else pending: one native
    call, and nothing left pending that reads memory an in-place write may change next."""
    if all(s.array is not None for s in storages):
        return
    _refuse_inside_trace("computing a value")
    with ENGINE_LOCK:
        _realize_all_pending([], None)
        still = [s for s in dict.fromkeys(storages) if s.array is None]
        if still:   # dropped as failing on their own (see _drop_failing): raise their error here
            _realize_only(still)


def _realize_only(storages) -> None:
    storages = [s for s in storages if s.array is None]   # another thread may have computed them
    if storages:
        _adopt(storages, run_by_device([(s.lazy_node, s.device) for s in storages]))


def _adopt(storages, results) -> None:
    """Store results; an array returned for two outputs (simplify may merge them) is copied."""
    taken = set()
    for storage, value in zip(storages, results):
        if storage.device.type == "cpu":
            value = np.asarray(value)
        if id(value) in taken:
            value = value.copy()
        taken.add(id(value))
        storage.store(value)


def realize_all_pending(extra=(), device=None) -> list[np.ndarray]:
    """Compute every pending storage (before an in-place write) together with `extra` nodes,
    whose results are wanted on `device` (default: where the nodes live)."""
    extra = list(extra)
    with ENGINE_LOCK:
        return _realize_all_pending(extra, device)


def barrier() -> None:
    """Compute everything pending (outside a trace, which computes nothing): the end of an
    optimizer step, and every RECORD_LIMIT recorded values in code that never reads one."""
    if not capture.tracing():
        realize_all_pending()


def _realize_all_pending(extra, device) -> list:
    recorded[0] = 0
    storages = sorted(pending_storages(), key=lambda s: s.serial)
    if not storages and not extra:
        return []
    _refuse_inside_trace("computing a value")
    try:
        results = run_by_device([(s.lazy_node, s.device) for s in storages] +
                                [(node, device or node.device or CPU) for node in extra])
    except Exception:
        # one pending value that cannot be computed (an index out of range, say) must not make
        # every later computation fail: drop the ones that fail on their own and go on without them
        if not _drop_failing(storages):
            raise
        return _realize_all_pending(extra, device)
    _adopt(storages, results)
    return results[len(storages):]


def _drop_failing(storages) -> list:
    """Realize each storage alone; those that raise leave the pending set (using one later computes
    it again, and raises again). Returns the dropped storages."""
    dropped = []
    for storage in storages:
        try:
            _realize_only([storage])
        except Exception:
            _pending.discard(storage)
            dropped.append(storage)
    return dropped


def run_by_device(targets) -> list:
    """Compute (node, device) pairs: one graph per device, each on that device's backend."""
    groups: dict = {}
    for position, (_, device) in enumerate(targets):
        groups.setdefault(device, []).append(position)
    results = [None] * len(targets)
    for device, positions in groups.items():
        schedule = walk([targets[p][0] for p in positions])
        if device.type == "cpu":
            outputs = backend.run(schedule)
        else:
            outputs = devices.run_graph(schedule.build(), device)
        for position, output in zip(positions, outputs):
            results[position] = output
    return results


def _refuse_inside_trace(what: str) -> None:
    context = capture.active()
    if context is not None:
        context.value_needed(what)
