"""The Tensor API's computing ops, built from primitives with PyTorch's promotion and broadcasting.

Each public op builds lazy nodes (explicit casts and expands, then primitives) and tags its final
node with the name PyTorch gives its grad_fn, so `y.grad_fn` prints the same chain.
"""
from __future__ import annotations

import builtins
import collections
import math

from numpy import bool_ as np_bool, ndarray as np_ndarray

from graphc import dtypes
from graphc.autograd.grad_mode import is_grad_enabled
from graphc.dtypes import DType
from graphc.errors import GraphcError, ShapeError, op_error
from graphc.lazy import LazyNode, make_node, python_scalar_node
from graphc.source_location import user_location
from graphc.tensor import Scalar, Tensor

class _ReturnType:
    """PyTorch's `torch.return_types.max(values=..., indices=...)` printing."""

    def __repr__(self):
        fields = ",\n".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
        return f"graphc.return_types.{type(self).__name__}(\n{fields})"


class MaxResult(_ReturnType, collections.namedtuple("max", ["values", "indices"])):
    __slots__ = ()


class MinResult(_ReturnType, collections.namedtuple("min", ["values", "indices"])):
    __slots__ = ()


MaxResult.__name__, MinResult.__name__ = "max", "min"


# ---- public functions: their tensor argument ----------------------------------------------------
def tensor_function(function, name: str | None = None):
    """`function` as a public function (graphc.relu, graphc.nn.functional.relu): PyTorch's
    TypeError when its first argument (input, or condition for where) is not a Tensor, e.g.
    "relu(): argument 'input' (position 1) must be Tensor, not list", instead of an
    AttributeError from inside. Functions written as Tensor methods (first parameter self) also
    take it as input=, as PyTorch's do. Other arguments are not checked (graphc takes numbers where
    PyTorch would want tensors)."""
    import functools
    import inspect
    name = name or function.__name__
    parameters = list(inspect.signature(function).parameters)
    first = parameters[0] if parameters else None
    argument = "input" if first == "self" else first

    @functools.wraps(function)
    def checked(*args, **kwargs):
        if args:
            value, position = args[0], " (position 1)"
        elif argument in kwargs:
            value, position = kwargs[argument], ""
            if first == "self":   # input= for a method's self
                args = (kwargs.pop(argument),)
        else:
            return function(*args, **kwargs)
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}(): argument '{argument}'{position} must be Tensor, not {type(value).__name__}")
        return function(*args, **kwargs)
    return checked


def tensor_functions(namespace: dict, names) -> None:
    """Wrap namespace[name] with `tensor_function` for each name whose function takes a tensor
    first (a parameter named input, self or condition)."""
    import inspect
    for name in names:
        function = namespace[name]
        try:
            parameters = list(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            continue
        if parameters and parameters[0] in ("input", "self", "condition"):
            namespace[name] = tensor_function(function, name)


# ---- node helpers -----------------------------------------------------------------------------
def node(op: str, inputs, where: str, **attrs) -> LazyNode:
    """A primitive node; it requires grad when grad mode is on and any input does."""
    requires_grad = is_grad_enabled() and any(i.requires_grad for i in inputs)
    return make_node(op, inputs, where, requires_grad, **attrs)


def wrap(result: LazyNode, grad_name: str | None = None, inputs=()) -> Tensor:
    """The tensor for a public op's final node, tagged for grad_fn printing."""
    if grad_name is not None and result.requires_grad:
        result.grad_name = grad_name
        result.grad_inputs = tuple(t._node for t in inputs if isinstance(t, Tensor))
    return Tensor._from_node(result)


def cast(value: LazyNode, dtype: DType, where: str) -> LazyNode:
    return value if value.dtype is dtype else node("cast", [value], where, dtype=dtype.name)


def expand(value: LazyNode, shape, where: str) -> LazyNode:
    return value if tuple(value.shape) == tuple(shape) else node("expand", [value], where, shape=tuple(shape))


def reshape(value: LazyNode, shape, where: str) -> LazyNode:
    return value if tuple(value.shape) == tuple(shape) else node("reshape", [value], where, shape=tuple(shape))


def full(value, shape, dtype: DType, where: str) -> LazyNode:
    return expand(python_scalar_node(value, dtype, where), shape, where)


def broadcast_shapes(shapes, op: str = "broadcast", where: str | None = None) -> tuple:
    """NumPy/PyTorch broadcasting of several shapes, with PyTorch's message on a mismatch."""
    rank = builtins.max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-rank, 0):
        sizes = [s[axis] for s in shapes if len(s) >= -axis]
        target = builtins.max(sizes)
        non_one = {s for s in sizes if s != 1}
        if len(non_one) > 1:
            first, second = sorted(non_one)[:2]
            raise op_error(op, f"The size of tensor a ({first}) must match the size of tensor b "
                               f"({second}) at non-singleton dimension {rank + axis}; shapes are "
                               f"{' and '.join(str(list(s)) for s in shapes)}", where, kind=ShapeError)
        result.append(target if not non_one else non_one.pop())
    return tuple(result)


def _tier(value) -> tuple:
    if isinstance(value, Tensor):
        return value.dtype, 2 if value.ndim else 1
    return dtypes.scalar_dtype(value), 0


def promote(*values) -> DType:
    return dtypes.result_type([_tier(v) for v in values])


def operand(value, dtype: DType, shape, where: str) -> LazyNode:
    """A tensor or Python scalar as a node of `dtype`, broadcast to `shape`."""
    if isinstance(value, Tensor):
        return expand(cast(value._node, dtype, where), shape, where)
    return full(value, shape, dtype, where)


def check_operand(value, op: str):
    if isinstance(value, Tensor) or isinstance(value, Scalar):
        return value
    if isinstance(value, (list, tuple, np_ndarray)):
        from graphc.creation import tensor
        return tensor(value)
    raise TypeError(f"{op}(): unsupported operand type {type(value).__name__}")


def _shape_of(value) -> tuple:
    return value._shape if isinstance(value, Tensor) else ()


_BOOL_ERRORS = {
    "sub": "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying "
           "to invert a mask, use the `~` or `logical_not()` operator instead.",
    "neg": "Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
           "invert a mask, use the `~` or `logical_not()` operator instead.",
}


def _is_bool(value) -> bool:
    return (value.dtype is dtypes.bool_ if isinstance(value, Tensor)
            else isinstance(value, (bool, np_bool)))


def _check_dtypes(op: str, values, dtype: DType, where: str) -> None:
    """PyTorch's refusals, raised at the op rather than when the value is computed."""
    if op in _BOOL_ERRORS and builtins.any(_is_bool(v) for v in values):
        raise op_error(op, _BOOL_ERRORS[op], where, kind=RuntimeError)
    if op in ("floor_divide", "remainder", "pow") and dtype is dtypes.bool_:
        raise op_error(op, "not implemented for bool tensors", where, kind=RuntimeError)
    if op in ("floor_divide", "remainder") and dtype.category == dtypes.INTEGER:
        divisor = values[1]
        if not isinstance(divisor, Tensor) and divisor == 0:
            raise op_error(op, "ZeroDivisionError: integer division by zero", where,
                           kind=RuntimeError)
    if op == "pow" and dtype.category == dtypes.INTEGER:
        exponent = values[1]
        if not isinstance(exponent, Tensor) and isinstance(exponent, Scalar) and exponent < 0:
            raise op_error(op, "Integers to negative integer powers are not allowed.", where,
                           kind=RuntimeError)


def elementwise(op: str, values, grad_name: str, *, compute_dtype: DType | None = None,
                floating: bool = False) -> Tensor:
    """Apply an elementwise primitive to tensors/scalars with promotion and broadcasting."""
    where = user_location()
    values = [check_operand(v, op) for v in values]
    dtype = compute_dtype or promote(*values)
    _check_dtypes(op, values, dtype, where)
    if floating and not dtype.is_floating_point:
        dtype = dtypes.get_default_dtype()
    shape = broadcast_shapes([_shape_of(v) for v in values], op, where)
    nodes = [operand(v, dtype, shape, where) for v in values]
    return wrap(node(op, nodes, where), grad_name, values)


def unary(op: str, grad_name: str, floating: bool = False):
    def method(self):
        return elementwise(op, [self], grad_name, floating=floating)
    method.__name__ = op
    method.__doc__ = f"Elementwise {op}."
    return method


# ---- arithmetic ------------------------------------------------------------------------------
def add(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return elementwise("add", [input, other], "AddBackward0")


def sub(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return elementwise("sub", [input, other], "SubBackward0")


def mul(input, other):
    return elementwise("mul", [input, other], "MulBackward0")


def div(input, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        quotient = div(input, other)
        result = where(quotient < 0, -(-quotient).floor(), quotient.floor())
        return result.to(promote(check_operand(input, "div"), check_operand(other, "div")))
    return elementwise("div", [input, other], "DivBackward0", floating=True)


def fmod(input, other):
    """C's remainder: it takes the dividend's sign (`remainder` takes the divisor's)."""
    result = remainder(input, other)
    if not isinstance(input, Tensor):
        raise TypeError("fmod(): the first argument must be a tensor")
    differs = logical_and(result != 0, (result < 0) != (input < 0))
    return where(differs, result - other, result)


def floor_divide(input, other):
    return elementwise("floor_divide", [input, other], "FloorDivideBackward0")


def remainder(input, other):
    return elementwise("remainder", [input, other], "RemainderBackward0")


def pow(input, exponent):
    name = "PowBackward1" if isinstance(exponent, Tensor) and isinstance(input, Tensor) else "PowBackward0"
    return elementwise("pow", [input, exponent], name)


def maximum(input, other):
    return elementwise("maximum", [input, other], "MaximumBackward0")


def minimum(input, other):
    return elementwise("minimum", [input, other], "MinimumBackward0")


def _comparison(op):
    def compare(input, other):
        if not isinstance(other, (Tensor, list, tuple) + Scalar):
            return NotImplemented
        values = [check_operand(input, op), check_operand(other, op)]
        where = user_location()
        dtype = promote(*values)
        shape = broadcast_shapes([_shape_of(v) for v in values], op, where)
        return wrap(node(op, [operand(v, dtype, shape, where) for v in values], where))
    compare.__name__ = op
    return compare


eq, ne, lt, le, gt, ge = (_comparison(name) for name in ("eq", "ne", "lt", "le", "gt", "ge"))


def _logical(op):
    def apply(input, other=None):
        values = [input] if other is None else [input, other]
        values = [check_operand(v, op) for v in values]
        where = user_location()
        shape = broadcast_shapes([_shape_of(v) for v in values], op, where)
        nodes = [operand(v, dtypes.bool_, shape, where) for v in values]
        return wrap(node(op, nodes, where))
    apply.__name__ = op
    return apply


logical_and, logical_or, logical_xor, logical_not = (
    _logical(name) for name in ("logical_and", "logical_or", "logical_xor", "logical_not"))


def _bitwise(op):
    def apply(input, other=None):
        values = [v for v in (input, other) if v is not None]
        if any(promote(check_operand(v, op)) is not dtypes.bool_ for v in values):
            raise TypeError(f"graphc supports {op.replace('logical', 'bitwise')} on bool tensors only")
        return globals()[op](*values)
    return apply


def where(condition, input=None, other=None):
    """``where(cond, a, b)``: a where cond is True, else b (broadcast and promoted)."""
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    where_ = user_location()
    values = [check_operand(input, "where"), check_operand(other, "where")]
    if condition.dtype is not dtypes.bool_:
        raise op_error("where", f"expected condition to be a bool tensor, got {condition.dtype}", where_,
                       kind=TypeError)
    dtype = promote(*values)
    shape = broadcast_shapes([condition._shape] + [_shape_of(v) for v in values], "where", where_)
    nodes = [expand(condition._node, shape, where_)] + [operand(v, dtype, shape, where_) for v in values]
    return wrap(node("where", nodes, where_), "WhereBackward0", values)


def clamp(input, min=None, max=None):
    """min(max(x, min), max) as PyTorch has it: NaN where x or a bound is NaN, x itself (its sign
    of zero) where it lies within the bounds, and the gradient passed where min <= x <= max only
    (never at NaN)."""
    if min is None and max is None:
        raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
    where_ = user_location()
    dtype = promote(*[v for v in (input, min, max) if v is not None])
    shape = broadcast_shapes([input._shape] + [_shape_of(v) for v in (min, max) if v is not None],
                             "clamp", where_)
    value = operand(input, dtype, shape, where_)
    # where(min <= x <= max, x, maximum/minimum of a detached x and the bounds): the second branch
    # gives NaN-propagating values outside, the first x's gradient inside only
    inside, bounded = None, node_detached(value)
    for bound, compare, extremum in ((min, "ge", "maximum"), (max, "le", "minimum")):
        if bound is None:
            continue
        limit = operand(bound, dtype, shape, where_)
        test = node(compare, [value, limit], where_)
        inside = test if inside is None else node("logical_and", [inside, test], where_)
        bounded = node(extremum, [bounded, limit], where_)
    return wrap(node("where", [inside, value, bounded], where_), "ClampBackward1", [input])


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """clamp's value (x itself on a tie with a bound, as PyTorch's scalar clamp), with the
    gradient passed strictly inside the bounds and at NaN, as PyTorch's hardtanh_backward
    ((x <= min || x >= max) ? 0 : grad)."""
    where_ = user_location()
    dtype = promote(input, min_val, max_val)
    value = operand(input, dtype, input._shape, where_)
    low = operand(min_val, dtype, input._shape, where_)
    high = operand(max_val, dtype, input._shape, where_)
    outside = node("logical_or", [node("le", [value, low], where_), node("ge", [value, high], where_)], where_)
    bounded = node("where", [node("lt", [value, low], where_), low,
                             node("where", [node("gt", [value, high], where_), high, node_detached(value)], where_)],
                   where_)
    return wrap(node("where", [outside, bounded, value], where_), "HardtanhBackward0", [input])


def relu(input):
    """where(x <= 0, 0, x): NaN passes (NaN <= 0 is False; `x > 0 ? x : 0` made it 0), and so does
    the gradient where x > 0 or x is NaN, as PyTorch's threshold_backward (result <= 0 ? 0 : grad).
    relu(-0.) is +0. (PyTorch's is -0.): keeping the sign takes three more nodes, and the mask
    and select alone fuse into the matmul before them."""
    where_ = user_location()
    if input.dtype is dtypes.bool_:
        raise op_error("relu", "Boolean inputs not supported for relu", where_, kind=RuntimeError)
    value = input._node
    zero = full(0, value.shape, value.dtype, where_)
    return wrap(node("where", [node("le", [value, zero], where_), zero, value], where_),
                "ReluBackward0", [input])


def sigmoid(input):
    """1 / (1 + exp(-x)) computed without overflow: exp(-|x|) never exceeds 1."""
    where_ = user_location()
    value = _floating(input, where_)
    positive = node("ge", [value, full(0.0, value.shape, value.dtype, where_)], where_)
    # exp(-|x|) written with where, not abs: abs's gradient at 0 is 0, which made sigmoid'(0) 0
    small = node("exp", [node("where", [positive, node("neg", [value], where_), value], where_)], where_)
    one = full(1.0, value.shape, value.dtype, where_)
    numerator = node("where", [positive, one, small], where_)
    return wrap(node("div", [numerator, node("add", [one, small], where_)], where_),
                "SigmoidBackward0", [input])


def _floating(tensor, where_) -> LazyNode:
    value = tensor._node
    return value if value.dtype.is_floating_point else cast(value, dtypes.get_default_dtype(), where_)


def rsqrt(input):
    where_ = user_location()
    return wrap(node("reciprocal", [node("sqrt", [_floating(input, where_)], where_)], where_),
                "RsqrtBackward0", [input])


def square(input):
    if input.dtype is dtypes.bool_:  # PyTorch: square is pow(x, 2), so bool promotes to int64
        input = input.to(dtypes.int64)
    return mul(input, input)


def sign(input):
    if input.dtype is dtypes.bool_:  # sign(True) is True
        where_ = user_location()
        return wrap(node("reshape", [input._node], where_, shape=input._shape), "SignBackward0", [input])
    return elementwise("sign", [input], "SignBackward0")


def log_softmax(input, dim):
    where_ = user_location()
    value = _floating(input, where_)
    axis = normalize_dim(dim, len(value.shape), "log_softmax")
    kept = tuple(1 if i == axis else s for i, s in enumerate(value.shape))
    peak = reshape(node("max", [node_detached(value)], where_, axes=(axis,), keepdims=True), kept, where_)
    shifted = node("sub", [value, expand(peak, value.shape, where_)], where_)
    total = node("sum", [node("exp", [shifted], where_)], where_, axes=(axis,), keepdims=True)
    result = node("sub", [shifted, expand(node("log", [total], where_), value.shape, where_)], where_)
    return wrap(result, "LogSoftmaxBackward0", [input])


def softmax(input, dim):
    where_ = user_location()
    value = _floating(input, where_)
    axis = normalize_dim(dim, len(value.shape), "softmax")
    peak = node("max", [node_detached(value)], where_, axes=(axis,), keepdims=True)
    exps = node("exp", [node("sub", [value, expand(peak, value.shape, where_)], where_)], where_)
    total = node("sum", [exps], where_, axes=(axis,), keepdims=True)
    # one reciprocal per row and a multiply per element (a division per element is several times
    # slower; PyTorch's CPU softmax scales by the reciprocal too)
    scale = node("reciprocal", [total], where_)
    return wrap(node("mul", [exps, expand(scale, value.shape, where_)], where_),
                "SoftmaxBackward0", [input])


def node_detached(value: LazyNode) -> LazyNode:
    """The same value with no gradient path (the max shift of softmax needs none)."""
    if not value.requires_grad:
        return value
    return make_node("reshape", [value], value.where, False, shape=tuple(value.shape))


# ---- reductions ------------------------------------------------------------------------------
def normalize_dim(dim: int, ndim: int, op: str = "op") -> int:
    bound = builtins.max(ndim, 1)
    if not -bound <= dim < bound:
        raise op_error(op, f"Dimension out of range (expected to be in range of "
                           f"[{-bound}, {bound - 1}], but got {dim})", user_location(), kind=IndexError)
    return dim % bound


def normalize_dims(dim, ndim: int, op: str, empty_is_all: bool = True) -> tuple:
    """Sorted axes for `dim` (None, an int or a sequence); an empty sequence means every dim, as in
    PyTorch's sum/mean/var/amax (all/any pass empty_is_all=False: there it reduces nothing)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims and empty_is_all:
        return tuple(range(ndim))
    if ndim == 0:
        for d in dims:
            normalize_dim(d, 0, op)
        return ()
    axes = tuple(sorted({normalize_dim(d, ndim, op) for d in dims}))
    if len(axes) != len(dims):
        raise RuntimeError(f"{op}: dim appears multiple times in the list of dims")
    return axes


def _reduce(op, value: LazyNode, axes, keepdim, where_) -> LazyNode:
    return node(op, [value], where_, axes=axes, keepdims=bool(keepdim))


def sum(input, dim=None, keepdim=False, *, dtype=None):
    where_ = user_location()
    value = input._node
    target = dtypes.as_dtype(dtype) if dtype is not None else (
        value.dtype if value.dtype.is_floating_point else dtypes.int64)
    axes = normalize_dims(dim, input.ndim, "sum")
    result = _reduce("sum", cast(value, target, where_), axes, keepdim, where_)
    return wrap(result, "SumBackward0" if dim is None else "SumBackward1", [input])


def mean(input, dim=None, keepdim=False, *, dtype=None):
    where_ = user_location()
    value = input._node
    if dtype is not None:
        value = cast(value, dtypes.as_dtype(dtype), where_)
    if not value.dtype.is_floating_point:
        raise op_error("mean", f"could not infer output dtype. Input dtype must be a floating point "
                               f"dtype, got {value.dtype}", where_, kind=RuntimeError)
    axes = normalize_dims(dim, input.ndim, "mean")
    count = math.prod(input._shape[a] for a in axes)
    total = _reduce("sum", value, axes, keepdim, where_)
    # divided by the count, as PyTorch does (a product with a rounded 1/count adds up to an ulp)
    divisor = full(float(count), total.shape, value.dtype, where_)
    return wrap(node("div", [total, divisor], where_), "MeanBackward0" if dim is None else "MeanBackward1",
                [input])


def prod(input, dim=None, keepdim=False, *, dtype=None):
    where_ = user_location()
    value = input._node
    target = dtypes.as_dtype(dtype) if dtype is not None else (
        value.dtype if value.dtype.is_floating_point else dtypes.int64)
    axes = normalize_dims(dim, input.ndim, "prod") if dim is not None else tuple(range(input.ndim))
    return wrap(_reduce("prod", cast(value, target, where_), axes, keepdim, where_),
                "ProdBackward0" if dim is None else "ProdBackward1", [input])


def amax(input, dim=(), keepdim=False):
    return _amax(input, dim, keepdim, True, "amax")


def amin(input, dim=(), keepdim=False):
    return _amax(input, dim, keepdim, False, "amin")


def _amax(input, dim, keepdim, largest: bool, op: str, nan_gradient: str = "nan_everywhere"):
    """amax (or amin, as -amax(-x)); `nan_gradient` picks the max primitive's vjp at NaN."""
    where_ = user_location()
    axes = normalize_dims(dim if dim != () else None, input.ndim, op)
    _check_nonempty(input, axes, op, where_)
    value = input._node if largest else _negate(input._node, where_)
    attrs = {} if nan_gradient == "nan_everywhere" else {"nan_gradient": nan_gradient}
    result = node("max", [value], where_, axes=axes, keepdims=bool(keepdim), **attrs)
    grad_name = {"amax": "AmaxBackward0", "amin": "AminBackward0"}.get(op)
    return wrap(result if largest else _negate(result, where_), grad_name, [input])


def _negate(value: LazyNode, where_) -> LazyNode:
    if value.dtype is dtypes.bool_:
        return node("logical_not", [value], where_)
    return node("neg", [value], where_)


def _check_nonempty(input, axes, op, where_):
    if input.numel() == 0 and (not axes or builtins.any(input._shape[a] == 0 for a in axes)):
        raise op_error(op, "Expected reduction dim to be specified for input.numel() == 0, or the "
                           "reduced dims to be non-empty", where_, kind=IndexError)


def _arg_extremum(input, dim, keepdim, op, negate):
    where_ = user_location()
    value = input._node
    if dim is None:
        value = reshape(value, (input.numel(),), where_)
        axis, shape = 0, (input.numel(),)
    else:
        axis = normalize_dim(dim, input.ndim, op)
        shape = input._shape
    if len(shape) == 0:
        value = reshape(value, (1,), where_)
        shape, axis = (1,), 0
    _check_nonempty(input, (axis,) if dim is not None and input.ndim else (), op, where_)
    if negate:
        value = _negate(value, where_)
    value = node_detached(value)
    peak = expand(node("max", [value], where_, axes=(axis,), keepdims=True), shape, where_)
    is_peak = node("eq", [value, peak], where_)
    # NaN counts as the extremum, as in PyTorch
    if value.dtype.is_floating_point:
        is_peak = node("logical_or", [is_peak, node("ne", [value, value], where_)], where_)
    size = shape[axis]
    index = node("iota", [], where_, shape=tuple(shape), axis=axis, dtype="int64")
    # the first index wins: take the max of (size - index) over the peak positions
    reversed_index = node("sub", [full(size, shape, dtypes.int64, where_), index], where_)
    candidates = node("where", [is_peak, reversed_index, full(0, shape, dtypes.int64, where_)], where_)
    best = node("max", [candidates], where_, axes=(axis,), keepdims=bool(keepdim and dim is not None))
    result = node("sub", [full(size, best.shape, dtypes.int64, where_), best], where_)
    if dim is None and keepdim:
        result = reshape(result, (1,) * input.ndim, where_)
    elif dim is not None and input.ndim == 0:
        result = reshape(result, (), where_)
    return Tensor._from_node(result)


def argmax(input, dim=None, keepdim=False):
    return _arg_extremum(input, dim, keepdim, "argmax", negate=False)


def argmin(input, dim=None, keepdim=False):
    return _arg_extremum(input, dim, keepdim, "argmin", negate=True)


def _values_at(input, indices, dim, keepdim, grad_name):
    """Gather input at argmax/argmin indices: the gradient goes to that element only (PyTorch)."""
    where_ = user_location()
    axis = normalize_dim(dim, input.ndim, "max")
    kept = indices._node if keepdim else reshape(indices._node, tuple(
        1 if i == axis else s for i, s in enumerate(input._shape)), where_)
    values = node("gather", [input._node, kept], where_, axis=axis)
    if not keepdim:
        values = reshape(values, indices._shape, where_)
    return wrap(values, grad_name, [input])


def _extremum(input, dim, keepdim, largest: bool):
    """max/min: elementwise against a tensor, over everything, or over `dim` as (values, indices)
    with the gradient going to the returned index (PyTorch's max(dim))."""
    name, result = ("Max", MaxResult) if largest else ("Min", MinResult)
    if isinstance(dim, Tensor):
        return (maximum if largest else minimum)(input, dim)
    if dim is None:
        # PyTorch's max()/min() send a NaN result's gradient to the NaN elements (amax: NaN everywhere)
        return wrap_name(_amax(input, (), False, largest, "amax" if largest else "amin", "nan_elements"),
                         f"{name}Backward1")
    arg = argmax if largest else argmin
    if input.ndim == 0:
        return result(input.clone(), arg(input, dim, keepdim))
    indices = arg(input, dim, keepdim=keepdim)
    return result(_values_at(input, indices, dim, keepdim, f"{name}Backward0"), indices)


def max(input, dim=None, keepdim=False):
    return _extremum(input, dim, keepdim, largest=True)


def min(input, dim=None, keepdim=False):
    return _extremum(input, dim, keepdim, largest=False)


def wrap_name(tensor: Tensor, grad_name: str) -> Tensor:
    if tensor._lazy is not None and tensor._lazy.requires_grad:
        tensor._lazy.grad_name = grad_name
    return tensor


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector norms over `dim` (all elements by default): p = 2 ('fro'), 1, inf, or any number."""
    value = input.to(dtype) if dtype is not None else input
    if p in ("fro", 2, 2.0):
        result = (value * value).sum(dim, keepdim).sqrt()
    elif p in (float("inf"), "inf"):
        result = value.abs().amax(dim if dim is not None else (), keepdim)
    elif p == 1:
        result = value.abs().sum(dim, keepdim)
    else:
        result = (value.abs() ** p).sum(dim, keepdim) ** (1.0 / p)
    return wrap_name(result, "NormBackward1" if dim is not None else "NormBackward0")


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    where_ = user_location()
    value = _floating(input, where_)
    axes = normalize_dims(dim, input.ndim, "var")
    count = math.prod(input._shape[a] for a in axes)
    total = node("sum", [value], where_, axes=axes, keepdims=True)
    centre = node("div", [total, full(float(count), total.shape, value.dtype, where_)], where_)
    deviation = node("sub", [value, expand(centre, value.shape, where_)], where_)
    squares = node("sum", [node("mul", [deviation, deviation], where_)], where_, axes=axes,
                   keepdims=bool(keepdim))
    divisor = builtins.max(count - correction, 0)
    # 0 / 0 is NaN: the variance of too few elements, as PyTorch gives it
    return wrap(node("div", [squares, full(float(divisor), squares.shape, value.dtype, where_)], where_),
                "VarBackward0", [input])


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    variance = var(input, dim, unbiased, keepdim, correction=correction)
    where_ = user_location()
    return wrap(node("sqrt", [variance._node], where_), "StdBackward0", [input])


# ---- contraction -----------------------------------------------------------------------------
def matmul(input, other):
    """PyTorch's matmul: vectors promoted to matrices, batch dims broadcast."""
    where_ = user_location()
    if not isinstance(other, Tensor) or not isinstance(input, Tensor):
        raise TypeError("matmul: both operands must be tensors")
    if input.ndim == 0 or other.ndim == 0:
        raise op_error("matmul", "both arguments to matmul need to be at least 1D, but they are "
                                 f"{input.ndim}D and {other.ndim}D", where_, kind=ShapeError)
    if input.dtype is not other.dtype:
        raise op_error("matmul", f"expected both operands to have the same dtype, but got "
                                 f"{input.dtype} and {other.dtype}", where_, kind=TypeError)
    a, b = input._node, other._node
    a_shape = (1,) + input._shape if input.ndim == 1 else input._shape
    b_shape = other._shape + (1,) if other.ndim == 1 else other._shape
    if a_shape[-1] != b_shape[-2]:
        raise op_error("matmul", f"mat1 and mat2 shapes cannot be multiplied "
                                 f"({'x'.join(map(str, a_shape[-2:]))} and "
                                 f"{'x'.join(map(str, b_shape[-2:]))}); operand shapes are "
                                 f"{list(input._shape)} and {list(other._shape)}", where_, kind=ShapeError)
    try:
        batch = broadcast_shapes([a_shape[:-2], b_shape[:-2]], "matmul", where_)
    except ShapeError:
        raise op_error("matmul", f"batch dimensions {list(a_shape[:-2])} and {list(b_shape[:-2])} "
                                 f"cannot be broadcast; operand shapes are {list(input._shape)} and "
                                 f"{list(other._shape)}", where_, kind=ShapeError) from None
    a = expand(reshape(a, a_shape, where_), batch + a_shape[-2:], where_)
    b = expand(reshape(b, b_shape, where_), batch + b_shape[-2:], where_)
    result = node("matmul", [a, b], where_)
    out_shape = batch + ((a_shape[-2],) if input.ndim > 1 else ()) + ((b_shape[-1],) if other.ndim > 1 else ())
    name = {(1, 1): "DotBackward0", (2, 1): "MvBackward0", (2, 2): "MmBackward0"}.get(
        (input.ndim, other.ndim), "BmmBackward0" if input.ndim == other.ndim == 3 else "MatmulBackward0")
    return wrap(reshape(result, out_shape, where_), name, [input, other])


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise op_error("mm", f"expected 2-D tensors, got {input.ndim}-D and {mat2.ndim}-D; shapes "
                             f"are {list(input._shape)} and {list(mat2._shape)}", user_location(),
                       kind=ShapeError)
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise op_error("bmm", f"expected 3-D tensors, got {input.ndim}-D and {mat2.ndim}-D; shapes "
                              f"are {list(input._shape)} and {list(mat2._shape)}", user_location(),
                       kind=ShapeError)
    if input._shape[0] != mat2._shape[0]:
        raise op_error("bmm", f"batch sizes differ: {input._shape[0]} and {mat2._shape[0]}; shapes "
                              f"are {list(input._shape)} and {list(mat2._shape)}", user_location(),
                       kind=ShapeError)
    return matmul(input, mat2)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError("1D tensors expected, but got "
                           f"{input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


# ---- joining ---------------------------------------------------------------------------------
def cat(tensors, dim=0):
    where_ = user_location()
    tensors = list(tensors)
    if not tensors:
        raise op_error("cat", "expected a non-empty list of Tensors", where_, kind=ValueError)
    # PyTorch skips 1-d empty tensors in cat
    kept = [t for t in tensors if not (t.ndim == 1 and t._shape[0] == 0)] or tensors[:1]
    dtype = dtypes.result_type([(t.dtype, 2) for t in tensors])
    reference = kept[0]
    axis = normalize_dim(dim, reference.ndim, "cat")
    for number, t in enumerate(kept):
        if t.ndim != reference.ndim:
            raise op_error("cat", f"Tensors must have same number of dimensions: got "
                                  f"{reference.ndim} and {t.ndim}", where_, kind=ShapeError)
        for d in range(t.ndim):
            if d != axis and t._shape[d] != reference._shape[d]:
                raise op_error("cat", f"Sizes of tensors must match except in dimension {axis}. "
                                      f"Expected size {reference._shape[d]} but got size "
                                      f"{t._shape[d]} for tensor number {number} in the list; shapes "
                                      f"are {[list(x._shape) for x in kept]}", where_, kind=ShapeError)
    if len(kept) == 1:
        return wrap(node("reshape", [cast(kept[0]._node, dtype, where_)], where_,
                         shape=kept[0]._shape), "CatBackward0", tensors)
    return wrap(node("cat", [cast(t._node, dtype, where_) for t in kept], where_, axis=axis),
                "CatBackward0", tensors)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack expects a non-empty TensorList")
    first = tensors[0]._shape
    for number, t in enumerate(tensors):
        if t._shape != first:
            raise op_error("stack", f"stack expects each tensor to be equal size, but got "
                                    f"{list(first)} at entry 0 and {list(t._shape)} at entry {number}",
                           user_location(), kind=ShapeError)
    axis = normalize_dim(dim, len(first) + 1, "stack")
    result = cat([t.unsqueeze(axis) for t in tensors], axis)
    return wrap_name(result, "StackBackward0")
