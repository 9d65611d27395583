"""`nn.Parameter`: a leaf tensor that a `Module` registers as one of its parameters."""
from __future__ import annotations

import copy

import numpy as np

from graphc import dtypes
from graphc.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that requires grad by default and that `Module` attributes register.

    It shares the storage of the tensor it is made from (a pending value is computed first:
    a parameter is a leaf holding data).

    >>> p = graphc.nn.Parameter(graphc.ones(2))
    >>> p
    Parameter containing:
    tensor([1., 1.], requires_grad=True)
    """

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from graphc.creation import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(): expected a graphc.Tensor as data, got {type(data).__name__}")
        if requires_grad and not data.dtype.is_floating_point:
            raise RuntimeError("Only Tensors of floating point dtype can require gradients")
        data._realize()
        self = object.__new__(cls)
        self._storage = data._storage
        self._shape = data._shape
        self._strides = data._strides
        self._offset = data._offset
        self._lazy = None
        self._version = 0
        self._ref = None
        self._requires_grad = bool(requires_grad)
        self._is_leaf = True
        self.grad = None
        self._retains_grad = False
        return self

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (Tensor's legacy constructor is not used)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = Parameter(self.detach().clone(), self.requires_grad)
        if self.grad is not None:
            result.grad = copy.deepcopy(self.grad, memo)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        # pickle the value only (a fresh copy: no graph, no links to this parameter)
        return (_rebuild_parameter, (np.array(self._value()), self.dtype.name, self.requires_grad))


def _rebuild_parameter(array, dtype_name, requires_grad):
    from graphc.creation import tensor
    return Parameter(tensor(array, dtype=dtypes.by_name(dtype_name)), requires_grad)
