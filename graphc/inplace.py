"""In-place ops: a write makes a new version of the tensor's storage.

Most writes (`p.add_`, momentum buffers, `grad.zero_()`, `copy_` into a whole tensor) stay lazy:
the storage's value becomes the written node and is computed at the next barrier in the same
native call as everything else pending; values read before the write keep reading the memory
they read. A write into part of a storage, into memory NumPy shares or on a GPU is done at once:
it first computes every pending value (so nothing pending reads memory after it changes), then
copies into the view. Either way the storage's version goes up, which is how a gradient that
needed the old value finds out (PyTorch's "modified by an inplace operation").
"""
from __future__ import annotations

import numpy as np

from graphc import capture
from graphc.autograd.grad_mode import is_grad_enabled
from graphc.errors import GraphcError, ShapeError, op_error
from graphc.lazy import mark_pending, strided_view
from graphc.source_location import user_location
from graphc.tensor import Tensor, _exposed, realize_pending
from graphc import tensor_ops


def check_inplace(target: Tensor, value, where: str, op: str) -> bool:
    """Raise for in-place writes PyTorch forbids; True when the write must stay in the graph."""
    value_needs_grad = isinstance(value, Tensor) and value.requires_grad
    if not is_grad_enabled() or not (target.requires_grad or value_needs_grad):
        return False
    if target._is_leaf and target.requires_grad:
        raise op_error(op, "a leaf Variable that requires grad is being used in an in-place operation.",
                       where, hint="wrap the update in `with graphc.no_grad():` or use `.data`",
                       kind=RuntimeError)
    return True


def check_overlap(target: Tensor, where: str, op: str) -> None:
    """PyTorch refuses writes where several elements share one memory location (an expanded
    tensor): which value would win is undefined. fill_ and zero_ are allowed (all agree)."""
    if any(size > 1 and stride == 0 for size, stride in zip(target._shape, target._strides)):
        raise op_error(op, "unsupported operation: more than one element of the written-to tensor "
                           "refers to a single memory location (it is expanded: shape "
                           f"{list(target._shape)}, strides {list(target._strides)})", where,
                       hint="clone() the tensor before performing the operation", kind=RuntimeError)


def _owns_storage(target: Tensor) -> bool:
    return (target._offset == 0 and target.is_contiguous() and
            target.numel() == target._storage.size)


def write(target: Tensor, value, where: str, op: str, result_of_op: bool = False) -> Tensor:
    """Store `value` (a tensor or scalar, broadcast and cast) into `target` in place.

    `result_of_op`: value is the result of `target <op> other`, which may not widen target's dtype
    (``int_tensor.div_(2)`` is an error in PyTorch; ``int_tensor.copy_(floats)`` casts).
    """
    value = tensor_ops.check_operand(value, op)
    if result_of_op and value.dtype.category > target.dtype.category:
        raise op_error(op, f"result type {value.dtype.name} can't be cast to the desired output type "
                           f"{target.dtype.name}", where, kind=RuntimeError)
    if op not in ("fill_", "zero_"):
        check_overlap(target, where, op)
    if isinstance(value, Tensor):
        _check_broadcast(value._shape, target._shape, op, where)
    tracked = check_inplace(target, value, where, op)
    node = tensor_ops.operand(value, target.dtype, target._shape, where)
    if tracked:
        # the gradient must flow through the write: rebind the tensor to the new value
        if not _owns_storage(target):
            raise op_error(op, "in-place writes into a view of a tensor that requires grad are not "
                               "supported", where, hint="build the value out of place (cat, where, "
                               "pad) instead", kind=GraphcError)
        if node is target._node or node.op == "input":
            node = tensor_ops.node("reshape", [node], where, shape=target._shape)
        node.requires_grad = True
        rebound = Tensor._from_node(node)
        target._storage, target._lazy, target._version, target._ref = rebound._storage, node, 0, None
        target._requires_grad, target._is_leaf = True, False
        return target
    context = capture.active()
    if context is not None:
        return context.write(target, node, op, where)
    if _stays_lazy(target):
        if isinstance(value, Tensor) and node is value._node:   # a storage's value is its own node
            node = tensor_ops.node("reshape", [node], where, shape=target._shape)
        return _write_lazily(target, node)
    device = target._storage.device
    [result] = realize_pending([node], device)
    view = strided_view(target._storage, target._shape, target._strides, target._offset)
    if device.type == "cpu":
        np.copyto(view, np.asarray(result, dtype=target.dtype.numpy))
    else:
        from graphc import devices
        xp = devices.arrays_for(device).xp
        xp.copyto(view, xp.asarray(result, dtype=target.dtype.numpy))
    target._storage.version += 1
    return target


def _stays_lazy(target: Tensor) -> bool:
    """Whether a write into `target` can be a new version of its storage, computed at the next
    barrier with everything else pending: the target is the whole storage, on the CPU, in memory
    NumPy does not share (NumPy would see the write late), and no gradient history reads the
    storage's pending value (a tensor computed with grad keeps reading what it computed)."""
    storage = target._storage
    if storage.device.type != "cpu" or storage in _exposed or not _owns_storage(target):
        return False
    if target._lazy is not None and target._lazy.requires_grad:
        return False
    return storage.array is not None or not storage.lazy_node.requires_grad


def _write_lazily(target: Tensor, node) -> Tensor:
    """The storage's value becomes `node` (target's shape and dtype); reads made before keep the
    memory they read (see graphc.schedule), reads after see the new value."""
    storage = target._storage
    storage.version += 1
    storage.lazy_node = node
    if storage.array is not None:
        storage.array = None
        mark_pending(storage)
    target._lazy, target._version, target._ref = node, storage.version, None
    return target


def _check_broadcast(source, target, op: str, where: str) -> None:
    """An in-place result keeps the target's shape: the value must broadcast to it exactly."""
    lead = len(source) - len(target)
    if lead > 0 and any(s != 1 for s in source[:lead]) or any(
            s not in (1, t) for s, t in zip(source[max(lead, 0):], target[max(-lead, 0):])):
        raise op_error(op, f"output with shape {list(target)} doesn't match the broadcast shape "
                           f"{list(tensor_ops.broadcast_shapes([source, target], op, where))}"
                       if _broadcastable(source, target) else
                       f"the value's shape {list(source)} cannot be broadcast to the target's shape "
                       f"{list(target)}", where, kind=ShapeError)


def _broadcastable(a, b) -> bool:
    return all(x == y or 1 in (x, y) for x, y in zip(reversed(a), reversed(b)))


def _inplace(function):
    def method(self, *args, **kwargs):
        where = user_location()
        return write(self, function(self, *args, **kwargs), where, function.__name__ + "_", True)
    method.__name__ = function.__name__ + "_"
    return method


add_ = _inplace(tensor_ops.add)
sub_ = _inplace(tensor_ops.sub)
mul_ = _inplace(tensor_ops.mul)
div_ = _inplace(tensor_ops.div)
pow_ = _inplace(tensor_ops.pow)
clamp_ = _inplace(tensor_ops.clamp)
relu_ = _inplace(tensor_ops.relu)
sigmoid_ = _inplace(tensor_ops.sigmoid)


def zero_(self):
    return write(self, 0, user_location(), "zero_")


def fill_(self, value):
    return write(self, value, user_location(), "fill_")


def copy_(self, source):
    return write(self, source, user_location(), "copy_")


def iadd(self, other):
    return write(self, tensor_ops.add(self, other), user_location(), "add_", True)


def isub(self, other):
    return write(self, tensor_ops.sub(self, other), user_location(), "sub_", True)


def imul(self, other):
    return write(self, tensor_ops.mul(self, other), user_location(), "mul_", True)


def itruediv(self, other):
    return write(self, tensor_ops.div(self, other), user_location(), "div_", True)
