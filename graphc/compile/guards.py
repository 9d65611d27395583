"""Guards: the facts a compiled variant was traced under, compared on every call.

A variant is replayed only when every guard holds; otherwise the function is traced again and the
reason (which guard, old and new value) is recorded.
"""
from __future__ import annotations

import collections

from graphc.autograd.grad_mode import is_grad_enabled
from graphc.tensor import Tensor

# optimizer options that become runtime inputs (so a scheduler never causes a retrace)
RUNTIME_OPTIONS = ("lr",)


def discover(function, args, kwargs):
    """Modules, optimizers and schedulers the function can reach: its arguments, `self`, the
    variables it closes over and the globals it names (one level deep)."""
    from graphc.nn import Module
    from graphc.optim import Optimizer
    from graphc.optim.lr_scheduler import LRScheduler
    candidates = list(args) + list(kwargs.values())
    owner = getattr(function, "__self__", None)
    if owner is not None:
        candidates.append(owner)
        candidates.extend(vars(owner).values() if hasattr(owner, "__dict__") else ())
    if isinstance(function, Module):
        candidates.append(function)
    target = getattr(function, "__func__", function)
    for cell in getattr(target, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:
            pass
    code = getattr(target, "__code__", None)
    if code is not None:
        namespace = getattr(target, "__globals__", {})
        candidates.extend(namespace[name] for name in code.co_names if name in namespace)
    modules, optimizers, schedulers = {}, {}, {}
    for item in candidates:
        if isinstance(item, Module):
            modules[id(item)] = item
        elif isinstance(item, Optimizer):
            optimizers[id(item)] = item
        elif isinstance(item, LRScheduler):
            schedulers[id(item)] = item
            optimizers[id(item.optimizer)] = item.optimizer
    return list(modules.values()), list(optimizers.values()), list(schedulers.values())


# a tensor argument's guard: named fields, so a retrace reason reads "argument 0.shape"
TensorGuard = collections.namedtuple("TensorGuard", "kind shape dtype strides offset requires_grad device")


def tensor_signature(tensor: Tensor) -> tuple:
    return (tuple(tensor._shape), tensor.dtype.name, tuple(tensor._strides), tensor._offset,
            tensor.requires_grad, str(tensor.device))


ParameterGuard = collections.namedtuple("ParameterGuard", "identity shape dtype requires_grad grad device")


def _parameter_signature(parameter) -> tuple:
    # storages are not guarded: a replay finds a parameter's, gradient's or buffer's current
    # storage through its owner (see function.Locator), so replacing `p.grad` is fine
    grad = parameter.grad
    return ParameterGuard(id(parameter), tuple(parameter._shape), parameter.dtype.name,
                          parameter.requires_grad, None if grad is None else (tuple(grad._shape), grad.dtype.name),
                          str(parameter.device))  # a model moved to a GPU needs a program compiled for it


def _state_value(value):
    if isinstance(value, Tensor):
        return ("tensor", tuple(value._shape), value.dtype.name)
    if isinstance(value, (int, float, bool, str, type(None))):
        return value
    return type(value).__name__


def signature(args, kwargs, modules, optimizers) -> dict:
    """Every guard, by name, as a comparable value."""
    guards = {"grad mode": is_grad_enabled()}
    for position, value in enumerate(list(args) + sorted(kwargs.items())):
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and position >= len(args):
            name, value = value
        else:
            name = f"argument {position}"
        if isinstance(value, Tensor):
            guards[name] = TensorGuard("tensor", *tensor_signature(value))
        elif isinstance(value, (int, float, bool, str, type(None))):
            guards[name] = value
        else:
            guards[name] = (type(value).__name__, id(value))
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
            while (isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after)):
                index = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
                fields = getattr(before, "_fields", None)
                path += f".{fields[index]}" if fields else f"[{index}]"
                before, after = before[index], after[index]
                if fields:   # a named field (a shape, a dtype) reads best whole
                    break
            return name + path, before, after
    return None
