"""Tracing: run a Python function once with graphc's ops recording into one graph.

While a `TraceContext` is active nothing is computed: values stay lazy nodes, and an in-place
write to memory that existed before the trace (a parameter, a gradient, an optimizer buffer) is
recorded as that storage's new value instead of being written. At the end, the graph's outputs are
the function's results plus every storage written or created during the trace that outlives it.
"""
from __future__ import annotations

import numpy as np

from graphc import capture
from graphc.errors import TraceError  # noqa: F401  (graphc.compile.TraceError, where users find it)
from graphc.lazy import LazyNode, make_node
from graphc.source_location import user_location

def active() -> "TraceContext | None":
    return capture.active()


class TraceContext:
    def __init__(self):
        self.written: dict = {}        # storage -> (node, shape, strides, offset) of its new value
        self.random_keys: list = []    # (key storage, counters consumed before it)
        self.random_count = 0
        self.scalar_inputs: list = []  # (storage, getter) bound to a Python number at each run
        self.events: list = []         # ('scalar', index) and ('scheduler', scheduler), in trace order
        self.backward_calls = 0        # backward() and autograd.grad() calls during the trace
        self.grad_targets: list = []   # the leaves backward() wrote a .grad to

    def __enter__(self):
        capture.push(self)
        return self

    def __exit__(self, *exc):
        capture.pop(self)
        return False

    # ---- hooks called by the front end --------------------------------------------------------
    def value_needed(self, what: str):
        where = user_location()
        raise TraceError(
            f"graphc.compile: {what} needs a tensor's value while the function is being traced "
            f"(at {where}). Inside a compiled function, Python code cannot depend on values the graph "
            f"computes (if/while on a tensor, .item(), print, .numpy()).\n"
            f"HINT: return the value and use it after the call, or call the function without "
            f"graphc.compile.")

    def write(self, target, node: LazyNode, op: str, where: str):
        """Record `target[...] = node` (node already has target's shape and dtype)."""
        storage = target._storage
        whole = (target._offset == 0 and target.is_contiguous() and target.numel() == storage.size)
        if storage.array is None:
            if not whole:
                raise TraceError(f"{op}: in-place writes into part of a tensor computed inside "
                                 f"graphc.compile are not supported (at {where})")
            storage.lazy_node = node
            target._lazy = node
            return target
        if not whole:
            raise TraceError(f"{op}: in-place writes into part of a tensor are not supported inside "
                             f"graphc.compile yet (at {where}).\nHINT: build the new value out of place "
                             f"(where, cat, pad) and assign the whole tensor")
        self.written[storage] = (node, target._shape, target._strides, target._offset)
        target._ref = None
        return target

    def current_value(self, tensor) -> LazyNode | None:
        """The traced value of a tensor whose storage was written during the trace, else None."""
        entry = self.written.get(tensor._storage)
        if entry is None:
            return None
        node, shape, strides, offset = entry
        if (tensor._shape, tensor._strides, tensor._offset) != (shape, strides, offset):
            raise TraceError("reading a different view of a tensor written in place inside "
                             f"graphc.compile is not supported (at {user_location()})")
        if tensor._requires_grad and tensor._is_leaf:
            import weakref
            leaf = make_node("reshape", [node], node.where, False, shape=tuple(shape))
            leaf.requires_grad = True
            leaf.leaf = weakref.ref(tensor)
            return leaf
        return node

    def random_key(self, generator, count: int, device=None):
        """A key input for a random op: [seed, offset] bound fresh at every run of the graph,
        living on the random op's device (a GPU graph's key is copied there at each run)."""
        from graphc.creation import _leaf
        from graphc.size import CPU
        key = _leaf(np.array([generator.seed, generator.offset], dtype=np.int64), device or CPU)
        self.random_keys.append((key._storage, self.random_count, generator))
        self.random_count += max(count, 1)
        generator.offset += max(count, 1)
        return key

    def scalar_input(self, value: float, getter):
        """A 0-d float64 tensor standing for a Python number read at every run (e.g. a learning rate)."""
        from graphc.tensor import Tensor
        scalar = Tensor._from_array(np.array(value, dtype=np.float64))
        self.events.append(("scalar", len(self.scalar_inputs)))
        self.scalar_inputs.append((scalar._storage, getter))
        return scalar
