"""Elementwise primitives: same-shape operands (the front end makes broadcasting explicit)."""
from __future__ import annotations

import math

import numpy as np

from graphc import dtypes
from graphc.ops.table import ELEMENTWISE, OpDef, register


def _same_shapes(shapes):
    for shape in shapes[1:]:
        if tuple(shape) != tuple(shapes[0]):
            raise ValueError(f"operand shapes differ: {[list(s) for s in shapes]}")
    return tuple(shapes[0])


def _same_dtypes(types):
    for dtype in types[1:]:
        if dtype is not types[0]:
            raise ValueError(f"operand dtypes differ: {[t.name for t in types]}")
    return types[0]


def same_as_input(shapes, types, attrs):
    return _same_shapes(shapes), _same_dtypes(types)


def floating_only(shapes, types, attrs):
    if not types[0].is_floating_point:
        raise ValueError(f"expects a floating-point operand, got {types[0].name}")
    return same_as_input(shapes, types, attrs)


def boolean_result(shapes, types, attrs):
    _same_dtypes(types)
    return _same_shapes(shapes), dtypes.bool_


def boolean_only(shapes, types, attrs):
    for dtype in types:
        if dtype is not dtypes.bool_:
            raise ValueError(f"expects bool operands, got {[t.name for t in types]}")
    return _same_shapes(shapes), dtypes.bool_


def _numpy(function):
    """Wrap a NumPy ufunc so its result has exactly the node's dtype."""
    def evaluate(arrays, attrs, shape, dtype):
        with np.errstate(all="ignore"):
            return np.asarray(function(*arrays), dtype=dtype.numpy).reshape(shape)
    return evaluate


def elementwise(name, infer, function, c, vjp=None, backward_name=None, cuda=None):
    return register(OpDef(name, ELEMENTWISE, infer, _numpy(function), vjp, c, cuda,
                          backward_name or f"{name.capitalize()}Backward0"))


# ---- unary --------------------------------------------------------------------------------
elementwise("neg", same_as_input, np.negative, "(-{0})",
            lambda e, n, g: [e.neg(g)])
elementwise("exp", floating_only, np.exp, "exp({0})",
            lambda e, n, g: [e.mul(g, n.id)])
elementwise("log", floating_only, np.log, "log({0})",
            lambda e, n, g: [e.div(g, n.inputs[0])])
elementwise("sqrt", floating_only, np.sqrt, "sqrt({0})",
            lambda e, n, g: [e.div(g, e.scale(n.id, 2.0))])
elementwise("sin", floating_only, np.sin, "sin({0})",
            lambda e, n, g: [e.mul(g, e.cos(n.inputs[0]))])
elementwise("cos", floating_only, np.cos, "cos({0})",
            lambda e, n, g: [e.neg(e.mul(g, e.sin(n.inputs[0])))])
elementwise("tanh", floating_only, np.tanh, "tanh({0})",
            lambda e, n, g: [e.mul(g, e.sub(e.full_like(1.0, n.id), e.mul(n.id, n.id)))])
elementwise("erf", floating_only, np.vectorize(math.erf, otypes=[np.float64]), "erf({0})",
            lambda e, n, g: [e.mul(g, e.scale(e.exp(e.neg(e.mul(n.inputs[0], n.inputs[0]))),
                                              2.0 / math.sqrt(math.pi)))])
def _abs_vjp(e, n, g):
    # g for x > 0, -g for x < 0, 0 at 0 and at NaN (PyTorch's grad * sgn(x), whose sgn(NaN) is 0)
    x = n.inputs[0]
    zero = e.full_like(0, x)
    return [e.where(e.gt(x, zero), g, e.where(e.lt(x, zero), e.neg(g), e.full_like(0, g)))]


elementwise("abs", same_as_input, np.abs, "GRAPHC_ABS({0})", _abs_vjp)
# NaN for NaN, as NumPy (PyTorch 2.13 gives 0, an open bug: pytorch#41245); x - x would make
# sign(+-Inf) NaN too
elementwise("sign", same_as_input, np.sign, "(({0} > 0) - ({0} < 0) + ({0} != {0} ? {0} : 0))",
            lambda e, n, g: [None])
elementwise("floor", same_as_input, np.floor, "GRAPHC_FLOOR({0})",
            lambda e, n, g: [None])
elementwise("reciprocal", floating_only, np.reciprocal, "(1 / {0})",
            lambda e, n, g: [e.neg(e.mul(g, e.mul(n.id, n.id)))])
elementwise("logical_not", boolean_only, np.logical_not, "(!{0})", backward_name="NotBackward0")


# ---- binary -------------------------------------------------------------------------------
def _pow_vjp(e, n, g):
    base, exponent = n.inputs
    # d/dbase = exponent * base^(exponent-1); d/dexponent = base^exponent * log(base), taken as
    # 0 where base == 0 and exponent >= 0 (PyTorch's convention, which keeps 0**2 differentiable)
    one = e.full_like(1.0, exponent) if e.dtype(exponent).is_floating_point else e.full_like(1, exponent)
    if not e.dtype(base).is_floating_point:
        return [None, None]
    # 0 where the exponent is 0, as PyTorch has it (0 * base^-1 would be NaN at base 0, Inf, NaN)
    d_base = e.where(e.eq(exponent, e.full_like(0.0, exponent)), e.full_like(0.0, g),
                     e.mul(g, e.mul(exponent, e.pow(base, e.sub(exponent, one)))))
    zero_base = e.logical_and(e.eq(base, e.full_like(0.0, base)),
                              e.ge(exponent, e.full_like(0.0, exponent)))
    d_exponent = e.where(zero_base, e.full_like(0.0, g), e.mul(g, e.mul(n.id, e.log(base))))
    return [d_base, d_exponent]


def _extremum_vjp(loses):
    """maximum/minimum, as PyTorch: an operand gets the gradient unless it loses (a < b for
    maximum), halved on ties; where either is NaN neither loses, so both get it."""
    def vjp(e, n, g):
        a, b = n.inputs
        half = e.scale(g, 0.5)
        zero = e.full_like(0.0, g)
        tie = e.eq(a, b)
        return [e.where(tie, half, e.where(getattr(e, loses)(a, b), zero, g)),
                e.where(tie, half, e.where(getattr(e, loses)(b, a), zero, g))]
    return vjp


elementwise("add", same_as_input, np.add, "({0} + {1})",
            lambda e, n, g: [g, g])
elementwise("sub", same_as_input, np.subtract, "({0} - {1})",
            lambda e, n, g: [g, e.neg(g)])
elementwise("mul", same_as_input, np.multiply, "({0} * {1})",
            lambda e, n, g: [e.mul(g, n.inputs[1]), e.mul(g, n.inputs[0])])
elementwise("div", same_as_input, np.divide, "({0} / {1})",
            lambda e, n, g: [e.div(g, n.inputs[1]), e.neg(e.div(e.mul(g, n.id), n.inputs[1]))])
def _power(base, exponent):
    """np.power, except integers to negative powers give what C and PyTorch give (1, -1 or 0)."""
    if base.dtype.kind in "iu" and exponent.dtype.kind in "iu" and (exponent < 0).any():
        negative = exponent < 0
        small = np.where(base == 1, 1, np.where(base == -1, np.where(exponent % 2 == 0, 1, -1), 0))
        return np.where(negative, small, np.power(base, np.where(negative, 0, exponent)))
    return np.power(base, exponent)


elementwise("pow", same_as_input, _power, "GRAPHC_POW({0}, {1})", _pow_vjp)
elementwise("maximum", same_as_input, np.maximum, "GRAPHC_MAX({0}, {1})", _extremum_vjp("lt"))
elementwise("minimum", same_as_input, np.minimum, "GRAPHC_MIN({0}, {1})", _extremum_vjp("gt"))
elementwise("floor_divide", same_as_input, np.floor_divide, "GRAPHC_FLOORDIV({0}, {1})",
            lambda e, n, g: [None, None], backward_name="FloorDivideBackward0")
def _remainder(a, b):
    """Python's remainder (the divisor's sign) as PyTorch and the preludes compute it: fmod, then
    the divisor added when the signs differ. A zero result keeps fmod's sign (np.remainder takes
    the divisor's: remainder(0., -inf) is 0. in PyTorch, -0. in NumPy)."""
    if a.dtype.kind != "f":
        return np.remainder(a, b)
    mod = np.fmod(a, b)
    return np.where((mod != 0) & ((b < 0) != (mod < 0)), mod + b, mod)


elementwise("remainder", same_as_input, _remainder, "GRAPHC_MOD({0}, {1})",
            lambda e, n, g: [g, e.neg(e.mul(g, e.floor_divide(*n.inputs)))],
            backward_name="RemainderBackward0")

for _name, _function, _symbol in (("eq", np.equal, "=="), ("ne", np.not_equal, "!="),
                                  ("lt", np.less, "<"), ("le", np.less_equal, "<="),
                                  ("gt", np.greater, ">"), ("ge", np.greater_equal, ">=")):
    elementwise(_name, boolean_result, _function, f"({{0}} {_symbol} {{1}})")

elementwise("logical_and", boolean_only, np.logical_and, "({0} && {1})")
elementwise("logical_or", boolean_only, np.logical_or, "({0} || {1})")
elementwise("logical_xor", boolean_only, np.logical_xor, "({0} != {1})")


# ---- where and cast -----------------------------------------------------------------------
def _where_infer(shapes, types, attrs):
    if types[0] is not dtypes.bool_:
        raise ValueError(f"condition must be bool, got {types[0].name}")
    return _same_shapes(shapes), _same_dtypes(types[1:])


def _where_vjp(e, n, g):
    condition = n.inputs[0]
    zero = e.full_like(0.0, g)
    return [None, e.where(condition, g, zero), e.where(condition, zero, g)]


elementwise("where", _where_infer, np.where, "({0} ? {1} : {2})", _where_vjp)


def _cast_infer(shapes, types, attrs):
    return tuple(shapes[0]), dtypes.by_name(attrs["dtype"])


def _cast_vjp(e, n, g):
    source = e.dtype(n.inputs[0])
    if not source.is_floating_point:
        return [None]
    return [e.cast(g, dtype=source.name)]


register(OpDef("cast", ELEMENTWISE, _cast_infer,
               lambda arrays, attrs, shape, dtype: arrays[0].astype(dtype.numpy),
               _cast_vjp, "(({ctype}){0})", backward_name="ToCopyBackward0"))
