"""grad_fn objects: what `y.grad_fn` and `next_functions` show, read off the lazy graph."""
from __future__ import annotations

from graphc.ops import table


class GradFn:
    """The backward function of a non-leaf tensor, named as PyTorch names it (MulBackward0...).

    ``GradFn(node)`` makes an instance of the subclass with that name, as PyTorch has one class per
    backward function: ``type(y.grad_fn).__name__``, ``y.grad_fn.name()`` and ``repr(y.grad_fn)``
    agree, and every one is an instance of GradFn."""

    def __new__(cls, node):
        if cls is GradFn:
            cls = _class_named(_name_of(node))
        return object.__new__(cls)

    def __init__(self, node):
        self._node = node

    def name(self) -> str:
        return _name_of(self._node)

    @property
    def next_functions(self) -> tuple:
        node = self._node
        inputs = node.grad_inputs if node.grad_inputs is not None else node.inputs
        return tuple((grad_fn_of(i), 0) for i in inputs)

    @property
    def metadata(self) -> dict:
        return {"op": self._node.op, "where": self._node.where}

    def __call__(self, *grads):
        raise NotImplementedError("graphc derives backward graphs symbolically; call backward()")

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self._node))}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, GradFn) and other._node is self._node

    def __hash__(self) -> int:
        return id(self._node)


def _name_of(node) -> str:
    return node.grad_name or table.get(node.op).backward_name or f"{node.op}Backward"


_classes: dict = {}


def _class_named(name: str) -> type:
    """The GradFn subclass called `name` (made the first time it is asked for)."""
    found = _classes.get(name)
    if found is None:  # setdefault: threads racing to make it all get the one stored
        found = _classes.setdefault(name, type(name, (GradFn,), {
            "__module__": __name__, "__qualname__": name, "__slots__": (),
            "__doc__": f"The backward function graphc records for an op whose PyTorch grad_fn is {name}."}))
    return found


class AccumulateGrad:
    """Where a leaf's gradient lands: `variable` is the leaf tensor."""

    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {hex(id(self.variable))}>"


def grad_fn_of(node):
    """GradFn, AccumulateGrad or None for a lazy node."""
    if not node.requires_grad:
        return None
    if node.leaf is not None:
        tensor = node.leaf()
        return AccumulateGrad(tensor) if tensor is not None else None
    if node.op == "input":
        return None
    return GradFn(node)
