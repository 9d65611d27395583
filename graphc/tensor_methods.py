"""Attach the Tensor API's methods and operators to `Tensor` (they are defined by topic in
tensor_ops, views, indexing and inplace)."""
from __future__ import annotations

import numpy as np

from graphc import dtypes, indexing, inplace, tensor_ops as ops, views
from graphc.autograd import engine
from graphc.autograd.functions import GradFn
from graphc.lazy import LazyNode, make_node
from graphc.size import device as Device
from graphc.source_location import user_location
from graphc.tensor import Scalar, Tensor


# ---- autograd attributes ---------------------------------------------------------------------
def _get_requires_grad(self) -> bool:
    return self._requires_grad


def _set_requires_grad(self, value: bool) -> None:
    if not self._is_leaf:
        raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to "
                           "use a computed variable in a subgraph that doesn't require differentiation "
                           "use var_no_grad = var.detach().")
    if value and not self.dtype.is_floating_point:
        raise RuntimeError("only Tensors of floating point dtype can require gradients")
    self._requires_grad = bool(value)
    self._ref = None
    if self._lazy is not None and not value:
        self._lazy = None if self._storage.array is not None else self._lazy


def requires_grad_(self, requires_grad: bool = True) -> Tensor:
    _set_requires_grad(self, requires_grad)
    return self


def _is_leaf(self) -> bool:
    return self._is_leaf


def _grad_fn(self):
    node = self._lazy
    if node is None or self._is_leaf or not node.requires_grad:
        return None
    return GradFn(node)


def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    engine.backward(self, gradient, retain_graph, create_graph, inputs)


def retain_grad(self):
    if self._is_leaf:
        return
    raise NotImplementedError("retain_grad() on non-leaf tensors is not supported yet; use "
                              "graphc.autograd.grad(output, [tensor]) instead")


def detach(self) -> Tensor:
    """Same storage, no gradient history."""
    node = self._lazy
    if node is not None and node.requires_grad:
        node = LazyNode("reshape", (node,), node.shape, node.dtype, {"shape": tuple(node.shape)},
                        node.where, False)
    view = self._view(node, self._shape, self._strides, self._offset) if node is not None else \
        self._view(make_node("reshape", [self._node], user_location(), False, shape=self._shape),
                   self._shape, self._strides, self._offset)
    view._requires_grad = False
    view._is_leaf = True
    if view._lazy is not None and view._lazy.requires_grad:
        view._lazy.requires_grad = False
    return view


def detach_(self) -> Tensor:
    self._lazy, self._version = detach(self)._lazy, self._storage.version
    self._requires_grad, self._is_leaf, self._ref = False, True, None
    return self


def _get_data(self) -> Tensor:
    return detach(self)


def _set_data(self, other: Tensor) -> None:
    """``w.data = ...`` swaps what w holds, keeping w's identity and requires_grad."""
    self._storage, self._shape, self._strides, self._offset = (
        other._storage, other._shape, other._strides, other._offset)
    self._lazy = None if other._storage.array is not None else detach(other)._lazy
    self._version = other._storage.version
    self._ref = None


# ---- conversion ------------------------------------------------------------------------------
def _is_device(value) -> bool:
    return (isinstance(value, Device) or (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and value.split(":")[0] in ("cpu", "cuda")))


def to_arguments(args, kwargs) -> tuple:
    """(device, dtype, copy) of PyTorch's ``to(...)`` signatures, for tensors and modules alike:
    ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)``, keywords."""
    kwargs = dict(kwargs)
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if isinstance(arg, Tensor):
            dtype, device = arg.dtype, arg.device
        elif _is_device(arg):
            device = arg
        elif arg is not None and not isinstance(arg, bool):  # (non_blocking, copy) passed by position
            dtype = dtypes.as_dtype(arg)
    return device, dtype, copy


def to(self, *args, **kwargs):
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``, ``copy=True``;
    returns self when nothing changes. A move to another device copies (see graphc.transfer)."""
    device, dtype, copy = to_arguments(args, kwargs)
    result = self
    if device is not None:
        from graphc import devices
        target = devices.require(device, f"move a tensor to {Device(device)}")
        if target != self.device:
            from graphc.transfer import to_device
            result = to_device(self, target, user_location())
    if dtype is not None and dtypes.as_dtype(dtype) is not result.dtype:
        where = user_location()
        return ops.wrap(ops.node("cast", [result._node], where, dtype=dtypes.as_dtype(dtype).name),
                        "ToCopyBackward0", [result])
    return self.clone() if copy and result is self else result


def _caster(dtype):
    def convert(self, memory_format=None):
        return to(self, dtype)
    convert.__name__ = dtype.name
    return convert


def type_(self, dtype=None, non_blocking=False, **kwargs):
    """``t.type()`` names the tensor's legacy type (``'graphc.FloatTensor'``); ``t.type(T)``
    converts to the dtype T names: a dtype, a legacy type (graphc.LongTensor) or its name
    (``'graphc.LongTensor'``, or ``'torch.LongTensor'`` in ported code); self if it has it."""
    from graphc import legacy
    if dtype is None:
        return legacy.type_name(self)
    target, device_type = legacy.type_target(dtype)
    if device_type is None or device_type == self.device.type:
        return to(self, target)
    return to(self, "cpu" if device_type == "cpu" else "cuda", target)


def clone(self, memory_format=None) -> Tensor:
    where = user_location()
    return ops.wrap(ops.node("reshape", [self._node], where, shape=self._shape), "CloneBackward0", [self])


def contiguous(self, memory_format=None) -> Tensor:
    return self if self.is_contiguous() else clone(self)


def cpu(self, memory_format=None):
    return to(self, "cpu")


def cuda(self, device=None, non_blocking=False, memory_format=None):
    return to(self, "cuda" if device is None else device)


def nonzero(self, as_tuple=False):
    """Coordinates of the nonzero elements (data-dependent: computed now, on the host, and put on
    the tensor's device)."""
    coordinates = np.nonzero(np.asarray(self._value()))
    device = self.device
    if as_tuple:
        return tuple(Tensor._from_array(c.astype(np.int64)).to(device) for c in coordinates)
    return Tensor._from_array(np.stack(coordinates, axis=1).astype(np.int64)
                              if coordinates else np.zeros((0, 0), dtype=np.int64)).to(device)


def all_(self, dim=None, keepdim=False):
    where = user_location()
    axes = ops.normalize_dims(dim, self.ndim, "all", empty_is_all=False)
    value = ops.cast(self._node, dtypes.bool_, where)
    negated = ops.node("logical_not", [value], where)
    found = ops.node("max", [negated], where, axes=axes, keepdims=bool(keepdim)) if self.numel() else None
    if found is None:
        return Tensor._from_array(np.ones(tuple(1 if i in axes else s for i, s in enumerate(self._shape))
                                          if keepdim else tuple(s for i, s in enumerate(self._shape)
                                                                if i not in axes), dtype=bool))
    return Tensor._from_node(ops.node("logical_not", [found], where))


def any_(self, dim=None, keepdim=False):
    where = user_location()
    axes = ops.normalize_dims(dim, self.ndim, "any", empty_is_all=False)
    if not self.numel():
        return Tensor._from_array(np.zeros(tuple(s for i, s in enumerate(self._shape) if i not in axes),
                                           dtype=bool))
    value = ops.cast(self._node, dtypes.bool_, where)
    return Tensor._from_node(ops.node("max", [value], where, axes=axes, keepdims=bool(keepdim)))


def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return bool(np.allclose(self._value(), np.asarray(other._value() if isinstance(other, Tensor) else other),
                            rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(self, other) -> bool:
    return self._shape == other._shape and bool(np.array_equal(self._value(), other._value()))


def contains(self, element) -> bool:
    """``value in t``: whether any element equals value (PyTorch's semantics)."""
    if not isinstance(element, (Tensor,) + Scalar):
        raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you passed in a "
                           f"{type(element).__name__}.")
    return bool(ops.eq(self, element).any())


def _reflected(function):
    return lambda self, other: function(other, self)


def _matmul_reflected(self, other):
    return ops.matmul(other, self)


def _bool_only(op_name, function):
    def apply(self, other=None):
        values = [self] + ([other] if other is not None else [])
        for value in values:
            dtype = value.dtype if isinstance(value, Tensor) else dtypes.scalar_dtype(value)
            if dtype is not dtypes.bool_:
                raise TypeError(f"graphc supports `{op_name}` on bool tensors only, got {dtype}")
        return function(*values)
    return apply


METHODS = {
    # arithmetic and math
    "add": ops.add, "sub": ops.sub, "subtract": ops.sub, "mul": ops.mul, "multiply": ops.mul,
    "div": ops.div, "divide": ops.div, "true_divide": ops.div, "floor_divide": ops.floor_divide,
    "remainder": ops.remainder, "fmod": ops.fmod, "pow": ops.pow, "maximum": ops.maximum,
    "minimum": ops.minimum, "clamp": ops.clamp, "clip": ops.clamp, "where": lambda self, c, o: ops.where(c, self, o),
    "eq": ops.eq, "ne": ops.ne, "lt": ops.lt, "le": ops.le, "gt": ops.gt, "ge": ops.ge,
    "logical_and": ops.logical_and, "logical_or": ops.logical_or, "logical_xor": ops.logical_xor,
    "logical_not": ops.logical_not,
    "exp": ops.unary("exp", "ExpBackward0", floating=True), "log": ops.unary("log", "LogBackward0", floating=True),
    "sqrt": ops.unary("sqrt", "SqrtBackward0", floating=True), "sin": ops.unary("sin", "SinBackward0", floating=True),
    "cos": ops.unary("cos", "CosBackward0", floating=True), "tanh": ops.unary("tanh", "TanhBackward0", floating=True),
    "erf": ops.unary("erf", "ErfBackward0", floating=True),
    "abs": ops.unary("abs", "AbsBackward0"), "neg": ops.unary("neg", "NegBackward0"),
    "negative": ops.unary("neg", "NegBackward0"), "sign": ops.sign,
    "floor": ops.unary("floor", "FloorBackward0"), "reciprocal": ops.unary("reciprocal", "ReciprocalBackward0", floating=True),
    "rsqrt": ops.rsqrt, "sigmoid": ops.sigmoid, "relu": ops.relu, "square": ops.square,
    "softmax": ops.softmax, "log_softmax": ops.log_softmax,
    # reductions
    "sum": ops.sum, "mean": ops.mean, "prod": ops.prod, "max": ops.max, "min": ops.min,
    "amax": ops.amax, "amin": ops.amin, "argmax": ops.argmax, "argmin": ops.argmin, "var": ops.var,
    "std": ops.std, "norm": ops.norm, "all": all_, "any": any_,
    # contraction
    "matmul": ops.matmul, "mm": ops.mm, "bmm": ops.bmm, "dot": ops.dot,
    # shape
    "view": views.view, "view_as": views.view_as, "reshape": views.reshape, "reshape_as": views.reshape_as,
    "permute": views.permute, "transpose": views.transpose, "swapaxes": views.transpose, "t": views.t,
    "unsqueeze": views.unsqueeze, "squeeze": views.squeeze, "flatten": views.flatten,
    "unflatten": views.unflatten, "expand": views.expand, "expand_as": views.expand_as,
    "broadcast_to": views.broadcast_to, "narrow": views.narrow, "select": views.select,
    "split": views.split, "chunk": views.chunk, "unbind": views.unbind, "_alias": views.alias,
    "contiguous": contiguous, "clone": clone, "nonzero": nonzero,
    # in place
    "add_": inplace.add_, "sub_": inplace.sub_, "mul_": inplace.mul_, "div_": inplace.div_,
    "pow_": inplace.pow_, "clamp_": inplace.clamp_, "relu_": inplace.relu_, "sigmoid_": inplace.sigmoid_,
    "zero_": inplace.zero_, "fill_": inplace.fill_, "copy_": inplace.copy_,
    # conversion and autograd
    "to": to, "type": type_, "cpu": cpu, "cuda": cuda, "float": _caster(dtypes.float32),
    "double": _caster(dtypes.float64), "long": _caster(dtypes.int64), "int": _caster(dtypes.int32),
    "bool": _caster(dtypes.bool_), "requires_grad_": requires_grad_, "backward": backward,
    "retain_grad": retain_grad, "detach": detach, "detach_": detach_, "allclose": allclose,
    "equal": equal,
    # operators
    "__add__": ops.add, "__radd__": _reflected(ops.add), "__sub__": ops.sub, "__rsub__": _reflected(ops.sub),
    "__mul__": ops.mul, "__rmul__": _reflected(ops.mul), "__truediv__": ops.div,
    "__rtruediv__": _reflected(ops.div), "__floordiv__": ops.floor_divide,
    "__rfloordiv__": _reflected(ops.floor_divide), "__mod__": ops.remainder,
    "__rmod__": _reflected(ops.remainder), "__pow__": ops.pow, "__rpow__": _reflected(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _matmul_reflected,
    "__neg__": ops.unary("neg", "NegBackward0"), "__pos__": lambda self: self,
    "__abs__": ops.unary("abs", "AbsBackward0"),
    "__eq__": ops.eq, "__ne__": ops.ne, "__lt__": ops.lt, "__le__": ops.le, "__gt__": ops.gt,
    "__ge__": ops.ge,
    "__and__": _bool_only("&", ops.logical_and), "__rand__": _bool_only("&", ops.logical_and),
    "__or__": _bool_only("|", ops.logical_or), "__ror__": _bool_only("|", ops.logical_or),
    "__xor__": _bool_only("^", ops.logical_xor), "__rxor__": _bool_only("^", ops.logical_xor),
    "__invert__": _bool_only("~", ops.logical_not),
    "__iadd__": inplace.iadd, "__isub__": inplace.isub, "__imul__": inplace.imul,
    "__itruediv__": inplace.itruediv,
    "__getitem__": indexing.getitem, "__setitem__": indexing.setitem, "__contains__": contains,
}

PROPERTIES = {
    "requires_grad": property(_get_requires_grad, _set_requires_grad),
    "is_leaf": property(_is_leaf),
    "grad_fn": property(_grad_fn),
    "data": property(_get_data, _set_data),
    "T": property(views.T),
    "mT": property(views.mT),
}


def attach() -> None:
    for name, function in METHODS.items():
        setattr(Tensor, name, function)
    for name, value in PROPERTIES.items():
        setattr(Tensor, name, value)
    Tensor.__hash__ = lambda self: id(self)


attach()
