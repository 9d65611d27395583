"""The five dtypes graphc knows, and PyTorch's type-promotion rules.

>>> promote_types(int32, float64)
graphc.float64
"""
from __future__ import annotations

import numpy as np

BOOL, INTEGER, FLOATING = 0, 1, 2  # categories, ordered as PyTorch promotes them


class DType:
    """A tensor element type: a name, its NumPy dtype and its promotion category."""

    __slots__ = ("name", "numpy", "category", "itemsize", "c_type")

    def __init__(self, name: str, numpy_dtype, category: int, c_type: str):
        self.name = name
        self.numpy = np.dtype(numpy_dtype)
        self.category = category
        self.itemsize = self.numpy.itemsize
        self.c_type = c_type

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOATING

    def __repr__(self) -> str:
        return f"graphc.{self.name}"

    def __reduce__(self):
        return (by_name, (self.name,))


float32 = DType("float32", np.float32, FLOATING, "float")
float64 = DType("float64", np.float64, FLOATING, "double")
int32 = DType("int32", np.int32, INTEGER, "int32_t")
int64 = DType("int64", np.int64, INTEGER, "int64_t")
bool_ = DType("bool", np.bool_, BOOL, "bool")

ALL = (bool_, int32, int64, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NUMPY = {d.numpy: d for d in ALL}
# aliases PyTorch users write
ALIASES = {"float": float32, "double": float64, "int": int32, "long": int64, "bool": bool_}

_default_float = float32


def by_name(name: str) -> DType:
    return _BY_NAME[name]


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    global _default_float
    if dtype not in (float32, float64):
        raise TypeError(f"only floating-point types are supported as the default type, got {dtype}")
    _default_float = dtype


def from_numpy(numpy_dtype) -> DType:
    numpy_dtype = np.dtype(numpy_dtype)
    if numpy_dtype in _BY_NUMPY:
        return _BY_NUMPY[numpy_dtype]
    if numpy_dtype.kind in "iu":
        return int64
    if numpy_dtype.kind == "f":
        return float64 if numpy_dtype.itemsize > 4 else float32
    raise TypeError(f"can't convert numpy array of type {numpy_dtype}: graphc supports "
                    "float32, float64, int32, int64 and bool")


def as_dtype(value) -> DType:
    """Accept a graphc dtype, a NumPy dtype, a Python type or a name."""
    if isinstance(value, DType):
        return value
    if value is float:
        return _default_float
    if value is int:
        return int64
    if value is bool:
        return bool_
    if isinstance(value, str):
        name = value.removeprefix("graphc.").removeprefix("torch.")
        if name in _BY_NAME:
            return _BY_NAME[name]
        if name in ALIASES:
            return ALIASES[name]
        raise TypeError(f"unknown dtype {value!r}")
    return from_numpy(value)


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype both a and b convert to without losing their category."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return a if a.itemsize >= b.itemsize else b


def scalar_dtype(value) -> DType:
    """The dtype a Python scalar takes on its own: bool, int64 or the default float."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise TypeError(f"unsupported scalar type {type(value).__name__}")


def result_type(operands) -> DType:
    """PyTorch's promotion over a mix of operands.

    Each operand is ``(dtype, tier)`` with tier 2 for a tensor with dimensions, 1 for a 0-d tensor
    and 0 for a Python scalar. Lower tiers only matter when their category is higher than every
    operand of a higher tier: ``int_tensor * 2.5`` is float32, ``float32_tensor * 2.5`` stays
    float32, ``int32_tensor + 1`` stays int32.
    """
    best_per_tier: dict[int, DType] = {}
    for dtype, tier in operands:
        current = best_per_tier.get(tier)
        best_per_tier[tier] = dtype if current is None else promote_types(current, dtype)
    result = None
    for tier in (2, 1, 0):
        candidate = best_per_tier.get(tier)
        if candidate is None:
            continue
        if tier == 0 and candidate.category > BOOL:
            # a Python scalar contributes its category only, at the default width
            candidate = _default_float if candidate.category == FLOATING else int64
        if result is None:
            result = candidate
        elif candidate.category > result.category:
            result = candidate
    return result
