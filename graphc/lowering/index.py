"""Index arithmetic for lowering: int64 C expressions with constants folded as they are built."""
from __future__ import annotations

import math

from codegen.kernel_ir import Const, Expr, Op, Var


def const(value: int) -> Const:
    return Const(str(int(value)))


def value_of(expr: Expr):
    """The integer a constant expression holds, else None."""
    if isinstance(expr, Const):
        try:
            return int(expr.text)
        except ValueError:
            return None
    return None


def add(a: Expr, b: Expr) -> Expr:
    x, y = value_of(a), value_of(b)
    if x is not None and y is not None:
        return const(x + y)
    if x == 0:
        return b
    if y == 0:
        return a
    return Op("({0} + {1})", (a, b))


def sub(a: Expr, b: Expr) -> Expr:
    y = value_of(b)
    if y is not None:
        return add(a, const(-y))
    return Op("({0} - {1})", (a, b))


def mul(a: Expr, factor: int) -> Expr:
    x = value_of(a)
    if x is not None:
        return const(x * factor)
    if factor == 0:
        return const(0)
    if factor == 1:
        return a
    return Op("{0} * %d" % factor, (a,)) if isinstance(a, Var) else Op("({0}) * %d" % factor, (a,))


def floordiv(a: Expr, divisor: int) -> Expr:
    x = value_of(a)
    if x is not None:
        return const(x // divisor)
    return a if divisor == 1 else Op("({0} / %d)" % divisor, (a,))


def mod(a: Expr, divisor: int) -> Expr:
    x = value_of(a)
    if x is not None:
        return const(x % divisor)
    return const(0) if divisor == 1 else Op("({0} %% %d)" % divisor, (a,))


def clamp(a: Expr, size: int) -> Expr:
    """min(max(a, 0), size - 1): an always-valid index for a load whose result may be masked off."""
    x = value_of(a)
    if x is not None:
        return const(min(max(x, 0), max(size - 1, 0)))
    return Op("({0} < 0 ? 0 : ({0} > %d ? %d : {0}))" % (size - 1, size - 1), (a,))


def checked(a: Expr, size: int, node_id: int) -> Expr:
    """A gather/scatter index that must lie in [0, size): clamped so the access stays in bounds, and
    the first one outside is recorded (node id, index) for the runtime to raise an IndexError."""
    x = value_of(a)
    if x is not None and 0 <= x < size:
        return const(x)
    return Op("graphc_checked_index({0}, %d, %d)" % (size, node_id), (a,))


def linear(index, shape) -> Expr:
    """Row-major offset of a multi-index."""
    result, stride = const(0), 1
    for position, size in reversed(list(zip(index, shape))):
        if size != 1:
            result = add(result, mul(position, stride))
        stride *= size
    return result


def in_range(a: Expr, size: int) -> Expr:
    return Op("((uint64_t)({0}) < %d)" % size, (a,))


def reshape_index(index, out_shape, in_shape) -> list:
    """Input index of a reshape: dims are grouped where the sizes' products meet, so a reshape
    that only splits or merges dims costs one multiply-add and a div/mod per dim."""
    if math.prod(out_shape) == 0:
        return [const(0)] * len(in_shape)
    out_dims = [d for d, s in enumerate(out_shape) if s != 1]
    in_dims = [d for d, s in enumerate(in_shape) if s != 1]
    result = [const(0)] * len(in_shape)
    i = j = 0
    while i < len(out_dims) or j < len(in_dims):
        out_group, in_group = [out_dims[i]], [in_dims[j]]
        out_size, in_size = out_shape[out_dims[i]], in_shape[in_dims[j]]
        i, j = i + 1, j + 1
        while out_size != in_size:
            if out_size < in_size:
                out_group.append(out_dims[i])
                out_size *= out_shape[out_dims[i]]
                i += 1
            else:
                in_group.append(in_dims[j])
                in_size *= in_shape[in_dims[j]]
                j += 1
        flat = linear([index[d] for d in out_group], [out_shape[d] for d in out_group])
        stride = in_size
        for position, d in enumerate(in_group):
            stride //= in_shape[d]
            value = floordiv(flat, stride)
            if position > 0:
                value = mod(value, in_shape[d])
            result[d] = value
    return result


def numel(shape) -> int:
    return math.prod(shape)
