"""`Variable`: PyTorch's deprecated wrapper, kept for old tutorials.

Since PyTorch 0.4 a Variable *is* a Tensor: ``Variable(t, requires_grad=True)`` returns a new leaf
tensor sharing t's memory (``t.detach()``) with requires_grad set, and
``isinstance(t, Variable)`` is True for every tensor. ``volatile=True`` only warns.
"""
from __future__ import annotations

import operator
import warnings

_ARGUMENTS = ("data", "requires_grad", "volatile", "_grad_fn", "name")


class _VariableMeta(type):
    def __instancecheck__(cls, instance) -> bool:
        from graphc.tensor import Tensor
        return isinstance(instance, Tensor)

    def __call__(cls, *args, **kwargs):
        values = _parse(args, kwargs)
        data, grad_fn = values.get("data"), values.get("_grad_fn")
        # flags as CPython's "b" format parses them: ints and bools (None is an error)
        requires_grad = bool(operator.index(values["requires_grad"])) if "requires_grad" in values else False
        volatile = bool(operator.index(values["volatile"])) if "volatile" in values else False
        if volatile:
            warnings.warn("volatile was removed and now has no effect. Use `with graphc.no_grad():` "
                          "instead.", UserWarning, stacklevel=2)
            if requires_grad:
                raise ValueError("Variable can't be volatile and require_grad at the same time!")
        if grad_fn is not None:
            raise TypeError(f"_grad_fn has to be a Function object or None, but got "
                            f"{type(grad_fn).__name__}")
        from graphc.tensor import Tensor
        if data is None:
            from graphc.creation import empty
            data = empty(0)
        elif not isinstance(data, Tensor):
            from graphc.legacy import _python_type_name
            raise TypeError(f"Variable data has to be a tensor, but got {_python_type_name(type(data))}")
        result = data.detach()
        if requires_grad:
            result.requires_grad_(True)
        return result


def _parse(args: tuple, kwargs: dict) -> dict:
    """Variable's arguments by name, with CPython's messages for the wrong ones."""
    if len(args) > len(_ARGUMENTS):
        raise TypeError(f"function takes at most {len(_ARGUMENTS)} arguments ({len(args) + len(kwargs)} "
                        f"given)")
    values = dict(zip(_ARGUMENTS, args))
    for name, value in kwargs.items():
        if name not in _ARGUMENTS:
            raise TypeError(f"'{name}' is an invalid keyword argument for this function")
        if name in values:
            raise TypeError(f"argument for function given by name ('{name}') and position "
                            f"({_ARGUMENTS.index(name) + 1})")
        values[name] = value
    return values


class Variable(metaclass=_VariableMeta):
    """``Variable(data=None, requires_grad=False, volatile=False)``: returns ``data.detach()``
    (a tensor sharing data's memory) with requires_grad set: ``Variable(graphc.Tensor([1.0]),
    requires_grad=True)``. Every graphc tensor is an instance of Variable."""
