"""What a compiled function reads from outside its arguments, found before it is traced.

A replay skips the Python, so every value the trace took from the function's surroundings must
be either a runtime input or guarded. This module walks those surroundings once per trace:

- the closure cells of the function and the globals its code names (nested code objects, such as
  comprehensions and inner functions, included), and the same for every user function they name,
  so a helper that reads a global is covered too;
- the attributes of the bound method's `self`, of every module (a `Module`'s plain attributes
  such as `self.temperature`) and of plain objects found above (a config object);
- lists, tuples and dicts found there, one level deep.

It returns the modules, optimizers and schedulers found (their state has guards of its own), the
tensors found (each guarded by identity, layout, requires_grad and the state of its `.grad`; a
replay reads their current storage, so `w.data = ...` between calls is seen), and `Watch`es: one
slot (a closure cell, a global, an attribute) with the guard value it had.

Guard values: a Python number, string, bool or None is guarded by type and value (a changed
`scale = 3.0` retraces); a tuple, list or dict of such values (and of tensors, by identity) by
its contents; anything else by identity.
"""
from __future__ import annotations

import dis
import types
from dataclasses import dataclass, field

from graphc.tensor import Tensor

SCALARS = (bool, int, float, complex, str, type(None))
MAX_DEPTH = 4            # helper functions named by helper functions...
MAX_CONTAINER_ITEMS = 64  # longer lists and dicts are guarded by identity only
# a module's tables and mode have guards of their own (guards.signature)
_GUARDED_ELSEWHERE = ("_parameters", "_buffers", "_modules", "training")
_LIBRARY_PREFIXES = ("graphc", "numpy", "builtins", "codegen", "runtime", "networkx", "jinja2")


class Value(tuple):
    """A guard of a Python value: (type name, value). A retrace reason shows the value."""

    __slots__ = ()

    def __new__(cls, kind: str, value):
        return tuple.__new__(cls, (kind, value))

    def __repr__(self):
        return repr(self[1]) if self[0] in ("bool", "int", "float", "complex", "str", "NoneType") \
            else f"{self[0]} {self[1]!r}"


def value_guard(value):
    """The comparable guard of one watched value."""
    kind = type(value)
    if kind in SCALARS:
        if kind is float and value != value:
            return Value("float", "nan")
        return Value(kind.__name__, value)
    if kind in (tuple, list):
        if len(value) <= MAX_CONTAINER_ITEMS:
            return Value(kind.__name__, tuple(_item_guard(v) for v in value))
        return Value(kind.__name__, (id(value), len(value)))
    if kind is dict:
        if len(value) <= MAX_CONTAINER_ITEMS:
            return Value("dict", tuple((_item_guard(k), _item_guard(v)) for k, v in value.items()))
        return Value("dict", (id(value), len(value)))
    return Value(kind.__name__, f"object at {id(value):#x}")


def _item_guard(value):
    kind = type(value)
    if kind in SCALARS:
        return (kind.__name__, "nan") if kind is float and value != value else (kind.__name__, value)
    if kind is tuple and len(value) <= MAX_CONTAINER_ITEMS:
        return ("tuple", tuple(_item_guard(v) for v in value))
    return (kind.__name__, id(value))


def is_mutable(value) -> bool:
    """Whether the guard must be recomputed even when the slot still holds the same object."""
    return type(value) in (list, dict)


class CellSlot:
    """A closure cell read like a dict entry (so cells, globals and attributes are read alike)."""

    __slots__ = ("cell",)

    def __init__(self, cell):
        self.cell = cell

    def get(self, name, default=None):
        try:
            return self.cell.cell_contents
        except ValueError:
            return default


@dataclass
class Watch:
    """One slot the trace may have read: `container.get(name)` held `value`, guarded as `guard`."""
    label: str
    container: object
    name: str
    value: object
    guard: object
    mutable: bool


@dataclass
class Captured:
    modules: list = field(default_factory=list)
    optimizers: list = field(default_factory=list)
    schedulers: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    tensor_labels: list = field(default_factory=list)   # where each tensor was found
    watches: list = field(default_factory=list)

    def guards(self) -> dict:
        """Guard name -> value, for `guards.signature`."""
        return {watch.label: watch.guard for watch in self.watches}


def _is_user_function(value) -> bool:
    if not isinstance(value, (types.FunctionType, types.MethodType)):
        return False
    module = getattr(value, "__module__", None) or ""
    return module.split(".")[0] not in _LIBRARY_PREFIXES


_GLOBAL_READS = {"LOAD_GLOBAL", "LOAD_NAME"}
_global_names_of: dict = {}   # code object -> the globals it and the code nested in it read


def global_names(code) -> tuple:
    """The global names a code object (and the code objects nested in it: comprehensions, inner
    functions, lambdas) reads. Not `co_names`: that also holds attribute names, and a global loop
    variable `step` must not be guarded because the function calls `optimizer.step()`."""
    names = _global_names_of.get(code)
    if names is None:
        found = [i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_READS]
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                found.extend(global_names(constant))
        names = _global_names_of[code] = tuple(dict.fromkeys(found))
    return names


class _Walker:
    def __init__(self):
        self.found = Captured()
        self._seen_objects: set = set()
        self._seen_tensors: set = set()
        self._seen_slots: set = set()
        self._modules: dict = {}
        self._optimizers: dict = {}
        self._schedulers: dict = {}

    # ---- values --------------------------------------------------------------------------------
    def value(self, value, depth: int, label: str = "a captured value") -> None:
        """Note what `value` brings: a module, optimizer, tensor, a function to walk, an object."""
        from graphc.nn import Module
        from graphc.optim import Optimizer
        from graphc.optim.lr_scheduler import LRScheduler
        if isinstance(value, Tensor):
            if id(value) not in self._seen_tensors:
                self._seen_tensors.add(id(value))
                self.found.tensors.append(value)
                self.found.tensor_labels.append(label)
            return
        if isinstance(value, Module):
            if id(value) not in self._modules:
                self._modules[id(value)] = value
                for sub in value.modules():
                    self.attributes(sub, type(sub).__name__, depth)
            return
        if isinstance(value, Optimizer):
            self._optimizers.setdefault(id(value), value)
            return
        if isinstance(value, LRScheduler):
            self._schedulers.setdefault(id(value), value)
            self._optimizers.setdefault(id(value.optimizer), value.optimizer)
            return
        kind = type(value)
        if kind in (list, tuple) and len(value) <= MAX_CONTAINER_ITEMS:
            for number, item in enumerate(value):
                if isinstance(item, Tensor) or _is_user_function(item):
                    self.value(item, depth, f"{label}[{number}]")
            return
        if kind is dict and len(value) <= MAX_CONTAINER_ITEMS:
            for key, item in value.items():
                if isinstance(item, Tensor) or _is_user_function(item):
                    self.value(item, depth, f"{label}[{key!r}]")
            return
        if _is_user_function(value):
            self.function(value, depth + 1)
            return
        if kind in SCALARS or isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)):
            return
        module = getattr(kind, "__module__", "") or ""
        if module.split(".")[0] not in _LIBRARY_PREFIXES and hasattr(value, "__dict__"):
            self.attributes(value, kind.__name__, depth)   # a plain object: a config, a trainer

    # ---- places values are read from -----------------------------------------------------------
    def slot(self, label: str, container, name: str, depth: int) -> None:
        key = (id(container) if not isinstance(container, CellSlot) else id(container.cell), name)
        if key in self._seen_slots:
            return
        self._seen_slots.add(key)
        missing = object()
        value = container.get(name, missing)
        if value is missing:
            return
        self.found.watches.append(Watch(label, container, name, value, value_guard(value), is_mutable(value)))
        self.value(value, depth, label)

    def attributes(self, owner, label: str, depth: int) -> None:
        """Every plain attribute of `owner` (not its parameter, buffer or submodule tables)."""
        if id(owner) in self._seen_objects or depth > MAX_DEPTH:
            return
        self._seen_objects.add(id(owner))
        namespace = vars(owner)
        for name, value in list(namespace.items()):
            if name.startswith("__") or name in _GUARDED_ELSEWHERE:
                continue
            if type(value) in SCALARS or type(value) in (tuple, list, dict) or isinstance(value, Tensor):
                self.slot(f"{label}.{name}", namespace, name, depth)
            elif name[:1] != "_":
                self.value(value, depth + 1)
        for method in vars(type(owner)).values():   # a user class's methods read globals too
            if _is_user_function(method):
                self.function(method, depth + 1)

    def function(self, function, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        owner = getattr(function, "__self__", None)
        target = getattr(function, "__func__", function)
        if id(target) in self._seen_objects:
            return
        self._seen_objects.add(id(target))
        if owner is not None:
            self.value(owner, depth)
        code = getattr(target, "__code__", None)
        if code is None:
            return
        qualified = getattr(target, "__qualname__", getattr(target, "__name__", "function"))
        for name, cell in zip(code.co_freevars, getattr(target, "__closure__", None) or ()):
            self.slot(f"{qualified}: closure variable '{name}'", CellSlot(cell), name, depth)
        namespace = getattr(target, "__globals__", None)
        if namespace is not None:
            for name in global_names(code):
                if name in namespace:
                    self.slot(f"{qualified}: global '{name}'", namespace, name, depth)


def discover(function, args, kwargs) -> Captured:
    """Everything `function(*args, **kwargs)` can read besides its arguments' values."""
    from graphc.nn import Module
    walker = _Walker()
    for value in list(args) + list(kwargs.values()):
        if not isinstance(value, Tensor):
            walker.value(value, 0)
    if isinstance(function, Module):
        walker.value(function, 0)
    elif isinstance(function, (types.FunctionType, types.MethodType)):
        walker.function(function, 0)
    else:
        walker.value(function, 0)   # a callable object: its attributes
        call = getattr(type(function), "__call__", None)
        if call is not None and _is_user_function(call):
            walker.function(call, 1)
    found = walker.found
    found.modules = list(walker._modules.values())
    found.optimizers = list(walker._optimizers.values())
    found.schedulers = list(walker._schedulers.values())
    return found
