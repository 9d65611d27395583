"""The op table: every primitive op defined once.

An entry holds the op's category, its shape/dtype rule, its NumPy reference implementation, its
vjp rule (written with primitive ops, so gradients of gradients work) and, for elementwise ops,
the C expression the code generator substitutes operands into. Passes ask an entry's category,
never a list of names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ELEMENTWISE = "elementwise"
REDUCE = "reduce"
MOVEMENT = "movement"
CONTRACTION = "contraction"
SOURCE = "source"
CATEGORIES = (ELEMENTWISE, REDUCE, MOVEMENT, CONTRACTION, SOURCE)


@dataclass(frozen=True)
class OpDef:
    """One primitive op.

    infer(input_shapes, input_dtypes, attrs) -> (shape, dtype); raises ValueError on bad operands.
    evaluate(arrays, attrs, shape, dtype) -> numpy array of exactly that shape and dtype.
    vjp(emitter, node, grad) -> one gradient handle (or None for zero) per input.
    c: for elementwise ops, a C expression with {0}, {1}... for the operands.
    """

    name: str
    category: str
    infer: Callable
    evaluate: Callable
    vjp: Callable | None = None
    c: str | None = None
    cuda: str | None = None
    backward_name: str | None = None

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"op {self.name}: unknown category {self.category!r}")


OPS: dict[str, OpDef] = {}


def register(entry: OpDef) -> OpDef:
    if entry.name in OPS:
        raise ValueError(f"op {entry.name} is defined twice")
    OPS[entry.name] = entry
    return entry


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; the op table has {sorted(OPS)}") from None


def is_category(op: str, category: str) -> bool:
    return get(op).category == category
