"""Guards: the facts a compiled variant was traced under, compared on every call.

A variant is replayed only when every guard holds; otherwise the function is traced again and the
reason (which guard, old and new value) is recorded.
"""
from __future__ import annotations

import collections

from graphc.autograd.grad_mode import is_grad_enabled
from graphc.compile import captured as captured_module
from graphc.compile.captured import Value, value_guard
from graphc.tensor import Tensor

# optimizer options that become runtime inputs (so a scheduler never causes a retrace)
RUNTIME_OPTIONS = ("lr",)


def discover(function, args, kwargs):
    """What the function can read besides its arguments (`captured.Captured`): modules,
    optimizers, schedulers, captured tensors and watched slots (closures, globals, attributes)."""
    return captured_module.discover(function, args, kwargs)


# a tensor argument's guard: named fields, so a retrace reason reads "argument 0.shape"
TensorGuard = collections.namedtuple("TensorGuard", "kind shape dtype strides offset requires_grad grad device")


def grad_signature(tensor: Tensor):
    """What `backward()` does with a leaf's gradient depends on: None (create) or its layout (add)."""
    grad = tensor.grad
    return None if grad is None else (tuple(grad._shape), grad.dtype.name, tuple(grad._strides), grad._offset)


def tensor_signature(tensor: Tensor) -> tuple:
    return (tuple(tensor._shape), tensor.dtype.name, tuple(tensor._strides), tensor._offset,
            tensor.requires_grad, grad_signature(tensor), str(tensor.device))


ParameterGuard = collections.namedtuple("ParameterGuard",
                                        "identity shape dtype strides offset requires_grad grad device")


def _parameter_signature(parameter) -> tuple:
    # storages are not guarded: a replay finds a parameter's, gradient's or buffer's current
    # storage through its owner (see function.Locator), so replacing `p.grad` or `p.data` is fine;
    # the layout is (a replay reads the memory with the traced strides)
    return ParameterGuard(id(parameter), tuple(parameter._shape), parameter.dtype.name,
                          tuple(parameter._strides), parameter._offset, parameter.requires_grad,
                          grad_signature(parameter),
                          str(parameter.device))  # a model moved to a GPU needs a program compiled for it


def _state_value(value):
    if isinstance(value, Tensor):
        return ("tensor", tuple(value._shape), value.dtype.name)
    return value_guard(value)   # numbers by type and value, tuples (Adam's betas) by contents


def argument_aliasing(tensors) -> tuple:
    """For each tensor argument, the first argument sharing its storage (a trace of f(x, x)
    reads one buffer for both, so it must not replay f(a, b))."""
    first = {}
    return tuple(first.setdefault(id(t._storage), k) for k, t in enumerate(tensors))


def is_argument_guard(name: str) -> bool:
    """Whether a guard describes the call's arguments (not state that outlives the call)."""
    return name.startswith(("argument", "keyword argument "))


def signature(args, kwargs, captured) -> dict:
    """Every guard, by name, as a comparable value."""
    modules, optimizers = captured.modules, captured.optimizers
    guards = {"grad mode": is_grad_enabled()}
    tensors = []
    for position, value in enumerate(list(args) + sorted(kwargs.items())):
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and position >= len(args):
            name, value = value
            name = f"keyword argument {name}"
        else:
            name = f"argument {position}"
        if isinstance(value, Tensor):
            guards[name] = TensorGuard("tensor", *tensor_signature(value))
            tensors.append(value)
        elif isinstance(value, (int, float, bool, str, type(None))):
            guards[name] = value_guard(value)   # by type too: x * 2 and x * 2.0 differ for ints
        else:
            guards[name] = (type(value).__name__, id(value))
    if len(tensors) > 1:
        guards["arguments sharing memory"] = argument_aliasing(tensors)
    guards.update(captured.guards())
    for label, tensor in zip(captured.tensor_labels, captured.tensors):
        guards[f"tensor {label}"] = _parameter_signature(tensor)   # identity, layout, .grad, as a parameter
    for module in modules:
        label = type(module).__name__
        guards[f"{label} training"] = tuple(m.training for m in module.modules())
        guards[f"{label} parameters"] = tuple(_parameter_signature(p) for p in module.parameters())
        guards[f"{label} buffers"] = tuple((name, None if b is None else (tuple(b._shape), b.dtype.name, str(b.device)))
                                           for name, b in module.named_buffers())
    for number, optimizer in enumerate(optimizers):
        label = f"{type(optimizer).__name__}#{number}"
        groups = []
        for group in optimizer.param_groups:
            options = tuple(sorted((k, _state_value(v)) for k, v in group.items()
                                   if k != "params" and k not in RUNTIME_OPTIONS))
            groups.append((options, tuple(_parameter_signature(p) for p in group["params"])))
        guards[f"{label} param_groups"] = tuple(groups)
        state = []
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                entry = optimizer.state.get(parameter, {})
                state.append(tuple(sorted((k, _state_value(v)) for k, v in entry.items())))
        guards[f"{label} state"] = tuple(state)
    return guards


def first_difference(old: dict, new: dict):
    """(guard name, old value, new value) of the first guard that differs, or None. Inside a
    guard made of nested tuples (one entry per parameter...), the name gets the path to the first
    entry that differs, down to a named field, e.g. "Sequential parameters[0].grad" or
    "argument 0.shape", and the values are that entry's."""
    for name in list(old) + [n for n in new if n not in old]:
        before, after = old.get(name, "<absent>"), new.get(name, "<absent>")
        if before != after:
            path = ""
            while (isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after)
                   and not isinstance(before, Value)):
                index = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
                fields = getattr(before, "_fields", None)
                path += f".{fields[index]}" if fields else f"[{index}]"
                before, after = before[index], after[index]
                if fields:   # a named field (a shape, a dtype) reads best whole
                    break
            return name + path, before, after
    return None
