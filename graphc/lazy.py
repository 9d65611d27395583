"""Lazy values: the front end's light-weight graph, and turning it into a `Graph` to run.

Every tensor op makes a `LazyNode` (op, input nodes, shape, dtype, attrs, the user's line). Nothing
runs until a value is needed; then `realize` gathers the pending nodes into one `Graph`, runs it
on the backend and stores the results in the tensors' `Storage`s.

A realized storage is a flat array on its device (NumPy on the CPU, CuPy on a GPU). Tensors viewing it read it through an `input` node that
records the storage's version; in-place writes bump the version, so a graph built before a write
can tell that a value it needs has changed (PyTorch's "modified by an inplace operation").

Every node knows its device (`LazyNode.device`), derived from its inputs when it is made, so an
op mixing devices fails at the user's line. A node's device is None when it may join values on
any device: constants, and 0-dim CPU tensors (PyTorch lets those mix with GPU tensors as scalars).
Realizing runs one graph per device (`graphc.devices` routes non-CPU graphs to their backend).
"""
from __future__ import annotations

import itertools
import math
import os
import threading
import weakref

import numpy as np

from graphc import dtypes
from graphc.dtypes import DType
from graphc.errors import GraphcError, ShapeError, op_error
from graphc.ops import table
from graphc.size import CPU


class Storage:
    """The memory behind one or more tensors: a flat array, or the lazy node that will fill it."""

    __slots__ = ("array", "lazy_node", "version", "dtype", "size", "serial", "device", "__weakref__")

    def __init__(self, dtype: DType, size: int, array: np.ndarray | None = None, lazy_node=None,
                 device=CPU):
        self.serial = next(_serials)  # creation order: realizing in this order keeps graphs stable
        self.device = device
        self.dtype = dtype
        self.size = size
        self.array = array
        self.lazy_node = lazy_node
        self.version = 0
        if array is None:
            _pending.add(self)

    @property
    def is_realized(self) -> bool:
        return self.array is not None

    def store(self, value: np.ndarray) -> None:
        """Adopt a computed value (an array on this storage's device) as this storage's contents."""
        if self.device.type == "cpu":
            owned = value.base is None and value.flags.c_contiguous and value.flags.writeable
            # adopt arrays nobody else holds; copy views so no two storages alias each other's memory
            self.array = value.reshape(-1) if owned else np.array(value, order="C").reshape(-1)
        else:
            from graphc import devices
            owned = value.base is None and value.flags.c_contiguous
            xp = devices.arrays_for(self.device).xp
            self.array = value.reshape(-1) if owned else xp.array(value, order="C").reshape(-1)
        node = self.lazy_node
        node.realized = (self, self.version, self.array)
        if not node.requires_grad:
            node.inputs = ()     # computed, and no gradient goes through it: free what made it
        self.lazy_node = None
        _pending.discard(self)


_pending: "weakref.WeakSet[Storage]" = weakref.WeakSet()
_serials = itertools.count()

# One lock for everything that runs graphs or reuses their buffers: realizing lazy values and
# calling compiled functions. Building lazy nodes needs no lock (each thread's ops only make new
# objects); running one program from two threads at once would share its arena and results.
ENGINE_LOCK = threading.RLock()


def _lock_for_fork():
    ENGINE_LOCK.acquire()     # no other thread is half-way through a run when the process forks


def _unlock_after_fork():
    ENGINE_LOCK.release()


def _reset_after_fork():
    # the child has one thread, the one that forked and holds the lock: make it a fresh lock
    reinit = getattr(ENGINE_LOCK, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()
    else:
        ENGINE_LOCK.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_lock_for_fork, after_in_parent=_unlock_after_fork,
                        after_in_child=_reset_after_fork)


# tensors made since the last realize: the Tensor API computes everything pending when this passes
# RECORD_LIMIT, so a loop that never reads a value (`total += loss` and no print) stays bounded
recorded = [0]
RECORD_LIMIT = 10_000


def mark_pending(storage: Storage) -> None:
    """`storage` now waits for its `lazy_node` again (an in-place write that stays lazy)."""
    _pending.add(storage)


def pending_storages() -> list:
    """The storages still waiting for a value (a snapshot: other threads may add to the set)."""
    while True:
        try:
            return [s for s in list(_pending) if s.array is None]
        except RuntimeError:    # another thread added a storage while the set was copied
            continue


class LazyNode:
    """One value in the front end's graph."""

    __slots__ = ("op", "inputs", "shape", "dtype", "attrs", "where", "requires_grad", "buffer", "freed",
                 "leaf", "realized", "grad_name", "grad_inputs", "device", "signature", "__weakref__")

    def __init__(self, op, inputs, shape, dtype, attrs, where, requires_grad=False):
        self.op = op
        self.inputs = inputs
        self.shape = shape
        self.dtype = dtype
        self.attrs = attrs
        self.where = where
        self.requires_grad = requires_grad
        self.buffer = None      # input nodes: (storage, shape, strides, offset, version, array)
        self.leaf = None        # input nodes of leaf tensors that require grad: weakref to it
        self.realized = None    # (storage, version, array) once computed
        self.signature = None   # structure id (op, shape, dtype, attrs), see `signature`
        self.grad_name = None   # grad_fn name for the public op that made this node
        self.grad_inputs = None  # that public op's inputs, for grad_fn.next_functions
        self.freed = False      # a backward() without retain_graph went through it (see autograd)
        self.device = result_device(op, inputs, where)  # None: a constant or CPU scalar

    def __repr__(self):
        return f"<LazyNode {self.op} {self.dtype.name}{list(self.shape)} at {self.where}>"


def result_device(op: str, inputs, where: str):
    """The device an op's result lives on: its inputs' one device (None-device inputs join any).
    Two different devices are the user's mistake, reported as PyTorch words it, at their line."""
    found = None
    for value in inputs:
        device = value.device
        if device is None or device is found or device == found:
            continue
        if found is None:
            found = device
            continue
        raise op_error(op, f"Expected all tensors to be on the same device, but found at least two "
                           f"devices, {found} and {device}!", where,
                       hint="move one of them with .to(device) (e.g. x.to('cuda'), y.cpu()); Python "
                            "numbers and 0-dim CPU tensors mix with tensors on any device")
    return found


def make_node(op: str, inputs, where: str, requires_grad: bool = False, **attrs) -> LazyNode:
    """Create a node, checking its operands with the op table's shape rule (errors name the line)."""
    entry = table.get(op)
    try:
        shape, dtype = entry.infer([i.shape for i in inputs], [i.dtype for i in inputs], attrs)
    except ValueError as error:
        raise op_error(op, str(error), where, kind=ShapeError) from None
    # only floating-point values carry gradients (a comparison of tensors that require grad does not)
    requires_grad = requires_grad and dtype.is_floating_point
    return LazyNode(op, tuple(inputs), tuple(shape), dtype, attrs, where, requires_grad)


def buffer_node(storage: Storage, shape, strides, offset, where="") -> LazyNode:
    node = LazyNode("input", (), tuple(shape), storage.dtype, {}, where)
    # the array itself is kept: a later in-place write that stays lazy gives the storage a new
    # array, and this node still reads the values it was made from
    node.buffer = (storage, tuple(shape), tuple(strides), offset, storage.version, storage.array)
    node.device = storage.device if storage.device.type != "cpu" or len(shape) else None
    return node


def strided_view(storage: Storage, shape, strides, offset) -> np.ndarray:
    """The view (NumPy, or the device's array module) of a realized storage that a tensor's
    (shape, strides, offset) describes."""
    return array_view(storage.array, storage, shape, strides, offset)


def array_view(array, storage: Storage, shape, strides, offset) -> np.ndarray:
    """`strided_view` of `array`, a flat array that is (or was, before a write replaced it)
    `storage`'s memory."""
    if storage.device.type != "cpu":
        from graphc import devices
        itemsize = storage.dtype.itemsize
        xp = devices.arrays_for(storage.device).xp
        return xp.lib.stride_tricks.as_strided(array[offset:], shape=tuple(shape),
                                               strides=tuple(s * itemsize for s in strides))
    if tuple(strides) == contiguous_strides(shape):   # most tensors: a reshape is ~5x cheaper
        return array[offset:offset + math.prod(shape)].reshape(shape)
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(array[offset:], shape=shape,
                                           strides=[s * itemsize for s in strides])


# ---- values written in place since they were read ---------------------------------------------
def check_unchanged(lazy: LazyNode) -> None:
    """Raise if the buffer or computed value `lazy` stands for was written in place since."""
    if lazy.buffer is not None:
        _check_version(lazy, lazy.buffer[0], lazy.buffer[4])
    elif lazy.realized is not None:
        _check_version(lazy, lazy.realized[0], lazy.realized[1])


def _check_version(lazy: LazyNode, storage: Storage, version: int) -> None:
    if storage.version != version:
        raise GraphcError(
            f"one of the values this computation needs has been modified by an inplace operation: "
            f"the {lazy.dtype.name}{list(lazy.shape)} value made at {lazy.where or '<unknown>'} is "
            f"at version {storage.version}; expected version {version}.\n"
            f"HINT: compute what you need before modifying it in place, or modify a .clone().")


def contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def numel(shape) -> int:
    return math.prod(shape)


def python_scalar_node(value, dtype: DType, where: str) -> LazyNode:
    if dtype.category == dtypes.FLOATING:
        value = float(value)
    elif dtype.category == dtypes.INTEGER:
        value = int(value)
    else:
        value = bool(value)
    return LazyNode("constant", (), (), dtype, {"value": value, "dtype": dtype.name}, where)
