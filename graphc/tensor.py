"""`graphc.Tensor`: PyTorch's tensor API over lazy graph nodes.

A tensor is a view (shape, strides, offset) of a `Storage`, plus the `LazyNode` that computes
its value. Ops add nodes; values are computed when Python needs them (`numpy()`, `item()`,
`print`...). Views share storage and in-place ops write through it, so aliasing behaves as in
PyTorch: a write through one view is seen by every other view and by `numpy()` arrays.
"""
from __future__ import annotations

import builtins
import math
import numbers
import weakref

import numpy as np

from graphc import dtypes
from graphc.autograd.grad_mode import is_grad_enabled
from graphc.dtypes import DType
from graphc.errors import GraphcError, ShapeError, op_error
from graphc.lazy import (RECORD_LIMIT, LazyNode, Storage, _check_version, buffer_node,
                         contiguous_strides, make_node, python_scalar_node, recorded, strided_view)
from graphc.realize import realize_all_pending, realize_storages
from graphc.size import CPU, Size, device
from graphc.source_location import user_location
from graphc import capture

Scalar = (bool, int, float, np.bool_, np.integer, np.floating)

# Storages whose memory NumPy code holds (from_numpy, numpy(), storage(), np.asarray(t)): it may
# write them at any time, unseen. PyTorch computes `y = x * 2` at once, so a later NumPy write to
# x's array never reaches y; to look the same, a value that reads such memory is computed when it
# is made (only ops that read the memory directly; their consumers stay lazy).
_exposed: "weakref.WeakSet[Storage]" = weakref.WeakSet()
_exposed_read = [False]  # set when a node reading exposed memory was handed out


def _expose(storage: Storage) -> None:
    _exposed.add(storage)


def realize_pending(extra=(), device=None) -> list:
    """`realize_all_pending` (before an in-place write): afterwards nothing pending reads exposed
    memory, so the next op need not be computed at once. `extra` nodes are computed on `device`."""
    results = realize_all_pending(extra, device)
    _exposed_read[0] = False
    return results


def _normalize_dim(dim: int, ndim: int, op: str) -> int:
    from graphc.tensor_ops import normalize_dim
    return normalize_dim(dim, ndim, op)


class Tensor:
    """A multi-dimensional array with PyTorch's API, computed lazily by graphc's compiler.

    >>> x = graphc.tensor([[1., 2.], [3., 4.]])
    >>> (x * 2).sum().item()
    20.0
    """

    # NumPy defers to Tensor's operators (`np.float32(2) * t` is a tensor, not an array)
    __array_priority__ = 1000

    __slots__ = ("_storage", "_shape", "_strides", "_offset", "_lazy", "_version", "_ref", "_requires_grad",
                 "_is_leaf", "grad", "_retains_grad", "__weakref__")

    # ---- construction --------------------------------------------------------------------------
    def __new__(cls, *args, **kwargs):
        """PyTorch's legacy constructor (see graphc.legacy): ``Tensor([1.0])`` (data, of the
        default dtype), ``Tensor(2, 3)`` (a shape; contents unspecified), ``Tensor()``,
        ``Tensor(other)`` (a view). graphc's own constructors below bypass this (they call
        ``object.__new__`` directly), so it costs them nothing."""
        from graphc.legacy import construct
        result = construct(dtypes.get_default_dtype(), "graphc.Tensor", args, kwargs, typed=False)
        if cls is Tensor:
            return result
        # a user's subclass: the same tensor, as an instance of it
        instance = object.__new__(cls)
        for name in Tensor.__slots__:
            if name != "__weakref__":
                setattr(instance, name, getattr(result, name))
        return instance

    def __init__(self, *args, **kwargs):
        pass  # everything happens in __new__

    # ---- construction (internal) ---------------------------------------------------------------

    @classmethod
    def _from_node(cls, node: LazyNode, device=None) -> "Tensor":
        """A new tensor owning a fresh (pending) storage filled by `node`, on the node's device;
        `device` pins a node that may live anywhere (made of constants only) to one."""
        self = object.__new__(cls)
        if node.device is None and device is not None and device.type != "cpu":
            node.device = device
        self._storage = Storage(node.dtype, math.prod(node.shape), lazy_node=node,
                                device=node.device or CPU)
        if _exposed_read[0]:
            _exposed_read[0] = False
            if not capture.tracing():
                realize_storages([self._storage])
        recorded[0] += 1
        if recorded[0] > RECORD_LIMIT and not capture.tracing():
            realize_all_pending()
        self._shape = node.shape
        self._strides = contiguous_strides(node.shape)
        self._offset = 0
        self._lazy = node
        self._version = 0
        self._ref = None
        self._requires_grad = node.requires_grad
        self._is_leaf = not node.requires_grad
        self.grad = None
        self._retains_grad = False
        return self

    @classmethod
    def _from_array(cls, array: np.ndarray, requires_grad: bool = False,
                    share: bool = False) -> "Tensor":
        """A realized leaf tensor holding `array` (sharing its memory when `share`)."""
        dtype = dtypes.from_numpy(array.dtype)
        if array.dtype != dtype.numpy:
            array = array.astype(dtype.numpy)
            share = False
        self = object.__new__(cls)
        if share:
            if any(s < 0 or s % array.itemsize for s in array.strides):
                raise ValueError("from_numpy: arrays with negative or unaligned strides are not "
                                 "supported; pass a copy (array.copy())")
            strides = tuple(s // array.itemsize for s in array.strides)
            span = 1 + builtins.sum((n - 1) * s for n, s in zip(array.shape, strides)) if array.size else 0
            flat = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(array.itemsize,))
            self._storage = Storage(dtype, span, array=flat)
            self._strides = strides
        else:
            flat = np.ascontiguousarray(array).reshape(-1).copy()
            self._storage = Storage(dtype, flat.size, array=flat)
            self._strides = contiguous_strides(array.shape)
        self._shape = tuple(array.shape)
        self._offset = 0
        self._lazy = None
        self._version = 0
        self._ref = None
        self._requires_grad = bool(requires_grad)
        self._is_leaf = True
        self.grad = None
        self._retains_grad = False
        if requires_grad and not dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        return self

    @classmethod
    def _adopt(cls, array: np.ndarray) -> "Tensor":
        """A tensor owning `array` (C-contiguous, a graphc dtype, held by nobody else): no copy."""
        return cls._on_device(array, CPU)

    @classmethod
    def _on_device(cls, array, device: device) -> "Tensor":
        """A leaf tensor owning `array`, a C-contiguous array on `device` that nobody else holds."""
        self = object.__new__(cls)
        self._storage = Storage(dtypes.from_numpy(array.dtype), array.size, array=array.reshape(-1),
                                device=device)
        self._shape = tuple(array.shape)
        self._strides = contiguous_strides(array.shape)
        self._offset = 0
        self._lazy = None
        self._version = 0
        self._ref = None
        self._requires_grad = False
        self._is_leaf = True
        self.grad = None
        self._retains_grad = False
        return self

    def _view(self, node: LazyNode, shape, strides, offset) -> "Tensor":
        """A tensor sharing this one's storage, with its own layout and value node."""
        view = object.__new__(Tensor)
        _exposed_read[0] = False  # a view computes nothing; reading it reads the storage again
        view._storage = self._storage
        view._shape = tuple(shape)
        view._strides = tuple(strides)
        view._offset = offset
        view._lazy = node
        view._version = self._storage.version
        view._ref = None
        view._requires_grad = node.requires_grad
        view._is_leaf = not node.requires_grad
        view.grad = None
        view._retains_grad = False
        return view

    @property
    def _node(self) -> LazyNode:
        """The node computing this tensor's current value."""
        context = capture.active()
        if context is not None:
            traced = context.current_value(self)
            if traced is not None:
                return traced
        elif self._storage in _exposed:
            _exposed_read[0] = True
        lazy = self._lazy
        storage = self._storage
        if lazy is not None and (lazy.requires_grad or storage.array is None):
            if self._version != storage.version:
                lazy = self._written_since(lazy)
            if lazy is not None:
                if lazy.requires_grad or not (self._requires_grad and self._is_leaf):
                    return lazy
                # a leaf that requires grad reads its computed value, so gradients land on it
                realize_storages([storage])
        ref = self._ref
        if ref is None or ref.buffer[4] != self._storage.version:
            ref = buffer_node(self._storage, self._shape, self._strides, self._offset)
            if self._requires_grad and self._is_leaf:
                ref.requires_grad = True
                ref.leaf = weakref.ref(self)
            self._ref = ref
        return ref

    def _written_since(self, lazy: LazyNode) -> LazyNode | None:
        """The node for this tensor's value after its storage was written in place since `lazy`
        was made (through another tensor sharing the storage); None: read the storage's memory."""
        storage = self._storage
        if lazy.requires_grad:   # the gradient history no longer matches the memory: PyTorch's error
            _check_version(lazy, storage, self._version)
        if storage.array is not None:
            return None
        current = storage.lazy_node
        if self._offset == 0 and self.is_contiguous() and self.numel() == storage.size:
            if current.shape != self._shape:
                current = make_node("reshape", [current], current.where, False, shape=self._shape)
        else:   # a part of a storage whose new value is pending: compute it, read the memory
            realize_storages([storage])
            return None
        self._lazy, self._version = current, storage.version
        return current

    # ---- properties ----------------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._shape)
        return self._shape[_normalize_dim(dim, self.ndim, "size")]

    @property
    def dtype(self) -> DType:
        return self._storage.dtype

    @property
    def device(self) -> device:
        return self._storage.device

    @property
    def is_cuda(self) -> bool:
        return self._storage.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self._storage.device.type == "cpu"

    def get_device(self) -> int:
        """The CUDA device index, -1 on the CPU (PyTorch's convention)."""
        return -1 if self._storage.device.type == "cpu" else self._storage.device.index

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    ndimension = dim

    def numel(self) -> int:
        return math.prod(self._shape)

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    def stride(self, dim: int | None = None):
        if dim is None:
            return tuple(self._strides)
        return self._strides[_normalize_dim(dim, self.ndim, "stride")]

    def storage_offset(self) -> int:
        return self._offset

    def untyped_storage(self):
        realize_storages([self._storage])
        return self._storage

    def storage(self):
        """The flat storage contents as a 1-d tensor sharing memory (PyTorch's TypedStorage)."""
        realize_storages([self._storage])
        _expose(self._storage)
        flat = Tensor._from_array(self._storage.array, share=True)
        _expose(flat._storage)
        return flat

    def data_ptr(self) -> int:
        realize_storages([self._storage])
        return self._storage.array.ctypes.data + self._offset * self.dtype.itemsize

    def is_contiguous(self, memory_format=None) -> bool:
        if 0 in self._shape:
            return True  # PyTorch: an empty tensor is contiguous whatever its strides
        expected = 1
        for size, stride in zip(reversed(self._shape), reversed(self._strides)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def __getstate__(self):
        """Pickling and deepcopy keep the value and the storage it shares with other tensors (one
        Storage object per pickle), not the lazy graph that computed it."""
        self._realize()
        state = {name: getattr(self, name) for name in Tensor.__slots__ if name != "__weakref__"}
        state["_lazy"], state["_ref"], state["_version"] = None, None, self._storage.version
        state["_is_leaf"] = True
        return None, state

    # ---- values --------------------------------------------------------------------------------
    def _realize(self) -> None:
        if self._storage.array is None:
            realize_storages([self._storage])

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """A NumPy array sharing this tensor's memory (computing it first if pending)."""
        if self._storage.device.type != "cpu":
            raise TypeError(f"can't convert {self._storage.device} device type tensor to numpy. Use "
                            f"Tensor.cpu() to copy the tensor to host memory first.")
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        self._realize()
        _expose(self._storage)
        return strided_view(self._storage, self._shape, self._strides, self._offset)

    def _value(self) -> np.ndarray:
        """The values as a NumPy array: a view of CPU memory, a host copy of a GPU tensor's."""
        self._realize()
        view = strided_view(self._storage, self._shape, self._strides, self._offset)
        if self._storage.device.type == "cpu":
            return view
        from graphc import devices
        return devices.to_host(view, self._storage.device)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._value().reshape(()).item()

    def tolist(self):
        return self._value().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.category != dtypes.INTEGER or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __array__(self, dtype=None, copy=None):
        if self._storage.device.type != "cpu":
            self.numpy()  # raises PyTorch's "can't convert cuda:0 device type tensor to numpy"
        array = self._value()
        _expose(self._storage)
        return array.astype(dtype) if dtype is not None else array

    def __repr__(self) -> str:
        from graphc.formatting import format_tensor
        suffixes = [] if self._storage.device.type == "cpu" else [f"device='{self._storage.device}'"]
        if self.grad_fn is not None:
            suffixes.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            suffixes.append("requires_grad=True")
        return format_tensor(np.array(self._value()), self.dtype.name, suffixes)

    __str__ = __repr__

    def __format__(self, spec):
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return repr(self)
