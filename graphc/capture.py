"""The capture hook of the lazy core: whether this thread is recording a trace, and which one.

`graphc.compile`'s tracer pushes its context here while it runs a function; the lazy core and the
Tensor API ask `active()` (a write, a value needed, a random key, a Python number) and hand the
question to that context. Nothing here knows what a trace does with it, so the core never imports
the compile package that sits above it.
"""
from __future__ import annotations

import threading


class _ActiveTraces(threading.local):
    """The trace contexts of this thread, innermost last: a trace in one thread never records
    another thread's ops."""

    def __init__(self):
        self.stack = []


_active = _ActiveTraces()


def active():
    """The trace this thread is recording into, innermost, or None."""
    stack = _active.stack
    return stack[-1] if stack else None


def tracing() -> bool:
    return bool(_active.stack)


def push(context) -> None:
    _active.stack.append(context)


def pop(context) -> None:
    _active.stack.remove(context)
