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
from graphc.ir.graph import Graph
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
        node.realized = (self, self.version)
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
                 "leaf", "realized", "grad_name", "grad_inputs", "device", "__weakref__")

    def __init__(self, op, inputs, shape, dtype, attrs, where, requires_grad=False):
        self.op = op
        self.inputs = inputs
        self.shape = shape
        self.dtype = dtype
        self.attrs = attrs
        self.where = where
        self.requires_grad = requires_grad
        self.buffer = None      # input nodes: (storage, shape, strides, offset, version)
        self.leaf = None        # input nodes of leaf tensors that require grad: weakref to it
        self.realized = None    # (storage, version) once computed
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
    node.buffer = (storage, tuple(shape), tuple(strides), offset, storage.version)
    node.device = storage.device if storage.device.type != "cpu" or len(shape) else None
    return node


def strided_view(storage: Storage, shape, strides, offset) -> np.ndarray:
    """The view (NumPy, or the device's array module) of a realized storage that a tensor's
    (shape, strides, offset) describes."""
    itemsize = storage.dtype.itemsize
    if storage.device.type != "cpu":
        from graphc import devices
        xp = devices.arrays_for(storage.device).xp
        return xp.lib.stride_tricks.as_strided(storage.array[offset:], shape=tuple(shape),
                                               strides=tuple(s * itemsize for s in strides))
    if tuple(strides) == contiguous_strides(shape):   # most tensors: a reshape is ~5x cheaper
        return storage.array[offset:offset + math.prod(shape)].reshape(shape)
    return np.lib.stride_tricks.as_strided(storage.array[offset:], shape=shape,
                                           strides=[s * itemsize for s in strides])


# ---- LazyNode DAG -> Graph ----------------------------------------------------------------------
class GraphBuild:
    """A Graph built from lazy nodes, with the bindings its placeholders need."""

    def __init__(self):
        self.graph = Graph()
        self.bindings: dict[str, np.ndarray] = {}
        self.node_of: dict[int, LazyNode] = {}   # graph id -> lazy node it came from
        self.id_of: dict[int, int] = {}          # id(lazy node) -> graph id
        self.key_parts: list = []                # structure, for caching compiled programs
        self.host_bound: list[str] = []          # placeholders bound to CPU memory
        self._dedupe: dict = {}
        self._placeholders = 0

    def placeholder(self, lazy: LazyNode, array: np.ndarray | None, dedupe_key=None,
                    on_host: bool = True) -> int:
        """A placeholder for `lazy`, bound to `array` (None: bound later, e.g. by autodiff)."""
        if dedupe_key is not None and dedupe_key in self._dedupe:
            node_id = self._dedupe[dedupe_key]
        else:
            name = f"in{self._placeholders}"
            self._placeholders += 1
            node_id = self.graph.placeholder(name, lazy.shape, lazy.dtype, lazy.where)
            if array is not None:
                self.bindings[name] = array
                if on_host:
                    self.host_bound.append(name)
            if dedupe_key is not None:
                self._dedupe[dedupe_key] = node_id
            self.node_of[node_id] = lazy
            self.key_parts.append(("input", lazy.shape, lazy.dtype.name))
        self.id_of[id(lazy)] = node_id
        return node_id

    @property
    def key(self) -> tuple:
        return (tuple(self.key_parts), tuple(self.graph.outputs))


def _leaf_value(lazy: LazyNode):
    """(array, dedupe key, storage) a leaf or already-computed node stands for, or None if it
    must be computed."""
    if lazy.buffer is not None:
        storage, shape, strides, offset, version = lazy.buffer
        _check_version(lazy, storage, version)
        return strided_view(storage, shape, strides, offset), (id(storage), shape, strides, offset), storage
    if lazy.realized is not None:
        storage, version = lazy.realized
        _check_version(lazy, storage, version)
        return storage.array.reshape(lazy.shape), ("realized", id(lazy)), storage
    return None


def check_unchanged(lazy: LazyNode) -> None:
    """Raise if the buffer or computed value `lazy` stands for was written in place since."""
    if lazy.buffer is not None:
        _check_version(lazy, lazy.buffer[0], lazy.buffer[4])
    elif lazy.realized is not None:
        _check_version(lazy, *lazy.realized)


def _check_version(lazy: LazyNode, storage: Storage, version: int) -> None:
    if storage.version != version:
        raise GraphcError(
            f"one of the values this computation needs has been modified by an inplace operation: "
            f"the {lazy.dtype.name}{list(lazy.shape)} value made at {lazy.where or '<unknown>'} is "
            f"at version {storage.version}; expected version {version}.\n"
            f"HINT: compute what you need before modifying it in place, or modify a .clone().")


def build_graph(outputs, opaque=None) -> GraphBuild:
    """Gather the DAG under `outputs` into a Graph.

    Buffers and computed values become bound placeholders. `opaque(node)` may mark more nodes to
    keep as unbound placeholders (autodiff treats values that need no gradient that way).
    """
    build = GraphBuild()
    stack = [(node, False) for node in reversed(outputs)]
    while stack:
        lazy, inputs_done = stack.pop()
        if id(lazy) in build.id_of:
            continue
        if not inputs_done:
            if opaque is not None and opaque(lazy):
                build.placeholder(lazy, None)
                continue
            leaf = _leaf_value(lazy) if opaque is None else None
            if leaf is not None:
                build.placeholder(lazy, leaf[0], leaf[1], leaf[2].device.type == "cpu")
                continue
            if lazy.op == "input":
                if opaque is None:
                    raise GraphcError(f"internal: input node without a buffer ({lazy})")
                build.placeholder(lazy, None)
                continue
            stack.append((lazy, True))
            stack.extend((i, False) for i in reversed(lazy.inputs) if id(i) not in build.id_of)
            continue
        inputs = [build.id_of[id(i)] for i in lazy.inputs]
        node_id = build.graph.call(lazy.op, inputs, lazy.where, **lazy.attrs)
        build.id_of[id(lazy)] = node_id
        build.node_of[node_id] = lazy
        build.key_parts.append((lazy.op, tuple(inputs), repr(sorted(lazy.attrs.items()))))
    build.graph.output(*(build.id_of[id(node)] for node in outputs))
    return build


def graph_to_lazy(graph: Graph, wanted, node_of: dict, where_default="") -> list[LazyNode]:
    """Turn graph nodes back into lazy nodes; nodes that came from lazy nodes map back to them."""
    made: dict[int, LazyNode] = {}
    for node_id in graph.topo_order():
        if node_id in node_of:
            made[node_id] = node_of[node_id]
            continue
        node = graph.node(node_id)
        inputs = tuple(made[i] for i in node.inputs)
        requires_grad = any(i.requires_grad for i in inputs)
        made[node_id] = LazyNode(node.op, inputs, node.shape, node.dtype, node.attrs,
                                 node.where or where_default, requires_grad)
    return [made[i] for i in wanted]


# ---- running ----------------------------------------------------------------------------------
def realize_storages(storages) -> None:
    """Compute pending storages in one graph run."""
    storages = [s for s in dict.fromkeys(storages) if s.array is None]
    if not storages:
        return
    _refuse_inside_trace("computing a value")
    with ENGINE_LOCK:
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


def _realize_all_pending(extra, device) -> list:
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
            realize_storages([storage])
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
        build = build_graph([targets[p][0] for p in positions])
        if device.type == "cpu":
            from graphc import backend
            outputs = backend.run(build)
        else:
            from graphc import devices
            outputs = devices.run_graph(build, device)
        for position, output in zip(positions, outputs):
            results[position] = output
    return results


def _refuse_inside_trace(what: str) -> None:
    from graphc.compile import tracer
    context = tracer.active()
    if context is not None:
        context.value_needed(what)


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
