"""PyTorch's legacy constructors: ``graphc.Tensor(...)`` and ``graphc.FloatTensor`` & co.

Old tutorials build tensors with the tensor types themselves::

    w = graphc.Tensor([1.0])        # float32 data (the default dtype)
    h = graphc.Tensor(2, 3)         # a 2x3 tensor of the default dtype, uninitialized (zeros here)
    i = graphc.LongTensor([1, 2])   # int64 data
    isinstance(graphc.ones(2), graphc.FloatTensor)   # True: the types are checked by dtype

The rules are PyTorch's (``torch.Tensor``'s ``new()`` signatures):

* ``()``: an empty tensor, shape (0,);
* ``(*sizes)`` or ``(Size)``: a tensor of that shape; its contents are unspecified (PyTorch's are
  whatever memory held; graphc's are zeros). A plain tuple or list is *data*, not a shape;
* ``(tensor)``: a view of that tensor (same storage; ``AliasBackward0`` if it requires grad);
  ``graphc.Tensor`` accepts any dtype here, the typed constructors only their own;
* ``(data)``: nested sequences or a NumPy array, converted to the constructor's dtype (a NumPy
  array of exactly that dtype is shared, not copied, as PyTorch does); floats become integers by
  truncation toward zero, and a Python value out of the integer type's range is an error;
* the only keyword is ``device``, and it must be the CPU (PyTorch's legacy constructors make CPU
  tensors only).

Errors carry PyTorch's messages, prefixed with the constructor's name and followed by the user's
line, as graphc's other errors are.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from graphc import dtypes
from graphc.errors import op_error
from graphc.size import Size, device as Device
from graphc.source_location import user_location
from graphc.tensor import Tensor, _expose

_SIGNATURES = (" * (*, graphc.device device = None)\n"
               " * (Tensor other)\n"
               " * (tuple of ints size, *, graphc.device device = None)\n"
               " * (object data, *, graphc.device device = None)\n")

# what PyTorch's messages call each dtype (its C++ names)
_CPP_NAMES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long int",
              "bool": "bool"}

_INT_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1)}


# ---- the legacy tensor types ------------------------------------------------------------------
class _LegacyTensorType(type):
    """The metaclass of graphc.FloatTensor & co (PyTorch's ``torch.tensortype``): calling a type
    constructs a plain graphc.Tensor of its dtype on its device type, and ``isinstance`` checks
    the dtype and the device type, so ``isinstance(graphc.ones(2), graphc.FloatTensor)`` is True."""

    def __new__(mcs, name, bases, namespace):
        for base in bases:
            if isinstance(base, _LegacyTensorType):
                raise TypeError(f"type '{base.__module__}.{base.__name__}' is not an acceptable base "
                                f"type")
        return super().__new__(mcs, name, bases, namespace)

    def __call__(cls, *args, **kwargs):
        return construct(cls.dtype, f"{cls.__module__}.{cls.__name__}", args, kwargs, typed=True,
                         device_type="cuda" if cls.is_cuda else "cpu")

    def __instancecheck__(cls, instance) -> bool:
        return (isinstance(instance, Tensor) and instance._storage.dtype is cls.dtype
                and (instance._storage.device.type == "cuda") is cls.is_cuda)

    def __subclasscheck__(cls, subclass) -> bool:
        return subclass is cls


def _legacy_type(name: str, dtype, module: str) -> type:
    where = "CUDA " if module == "graphc.cuda" else ""
    return _LegacyTensorType(name, (), {
        "__module__": module, "__qualname__": name, "dtype": dtype, "is_cuda": module == "graphc.cuda",
        "is_sparse": False,
        "__doc__": f"{module}.{name}(...): PyTorch's legacy constructor of {where}{dtype.name} tensors "
                   f"(see graphc.legacy); isinstance(t, {module}.{name}) checks t's dtype and device."})


_NAMES = (("FloatTensor", dtypes.float32), ("DoubleTensor", dtypes.float64),
          ("IntTensor", dtypes.int32), ("LongTensor", dtypes.int64), ("BoolTensor", dtypes.bool_))
CPU_TYPES = {name: _legacy_type(name, dtype, "graphc") for name, dtype in _NAMES}
CUDA_TYPES = {name: _legacy_type(name, dtype, "graphc.cuda") for name, dtype in _NAMES}
FloatTensor, DoubleTensor, IntTensor, LongTensor, BoolTensor = CPU_TYPES.values()
_BY_KEY = {(t.dtype, t.is_cuda): t for t in (*CPU_TYPES.values(), *CUDA_TYPES.values())}


def type_name(tensor) -> str:
    """``'graphc.FloatTensor'`` (``'graphc.cuda.FloatTensor'`` on a GPU): what ``t.type()`` says."""
    legacy = _BY_KEY[tensor.dtype, tensor.device.type == "cuda"]
    return f"{legacy.__module__}.{legacy.__name__}"


def type_target(value):
    """(dtype, device type or None) that a ``t.type(...)`` argument names, PyTorch's way: a dtype
    (the device stays), a legacy type (graphc.cuda.LongTensor), graphc.Tensor (the default dtype,
    on the CPU), or a legacy type's name (``'graphc.LongTensor'``; ``'torch.LongTensor'`` too,
    for ported code). Anything else is PyTorch's ValueError or TypeError."""
    if isinstance(value, dtypes.DType):
        return value, None
    if isinstance(value, _LegacyTensorType):
        return value.dtype, "cuda" if value.is_cuda else "cpu"
    if value is Tensor:
        return dtypes.get_default_dtype(), "cpu"
    if isinstance(value, str):
        prefix, _, name = value.rpartition(".")
        if prefix in ("graphc", "torch") and name == "Tensor":
            return dtypes.get_default_dtype(), "cpu"
        if prefix in ("graphc", "torch") and name in CPU_TYPES:
            return CPU_TYPES[name].dtype, "cpu"
        if prefix in ("graphc.cuda", "torch.cuda") and name in CUDA_TYPES:
            return CUDA_TYPES[name].dtype, "cuda"
        raise ValueError(f"invalid type: '{value}'")
    if isinstance(value, type):
        raise ValueError(f"invalid type: '{_python_type_name(value)}'")
    raise TypeError("dtype must be a type, str, or dtype object")


# ---- construction -----------------------------------------------------------------------------
def construct(dtype, name: str, args: tuple, kwargs: dict, typed: bool,
              device_type: str = "cpu") -> Tensor:
    """A tensor from PyTorch's legacy constructor arguments (`name` is what errors call it);
    `typed` for graphc.FloatTensor & co (a tensor argument must have their dtype), and
    `device_type` "cuda" for graphc.cuda.FloatTensor & co."""
    if device_type == "cpu":
        return _construct(dtype, name, args, kwargs, typed, device_type)
    result = _construct(dtype, name, args, kwargs, typed, device_type)
    if result.device.type == "cuda":  # Tensor(other): a view of a CUDA tensor
        return result
    from graphc import devices
    target = devices.require(kwargs.get("device") or "cuda", f"create a tensor with {name}")
    return result.to(target)


def _construct(dtype, name: str, args: tuple, kwargs: dict, typed: bool, device_type: str) -> Tensor:
    if not kwargs:
        if not args:
            return _uninitialized((0,), dtype, name)
        if len(args) == 1:
            return _from_one(args[0], dtype, name, typed, device_type)
        return _uninitialized(_sizes(args, name), dtype, name)
    given = kwargs
    kwargs = dict(kwargs)
    device = kwargs.pop("device", None)
    if device is not None:
        if "other" in kwargs or (len(args) == 1 and isinstance(args[0], Tensor) and not kwargs):
            raise _tensor_with_device(name)
        _check_device(device, name, device_type)
    if set(kwargs) - {"size", "data", "other"} or len(kwargs) > 1 or (kwargs and args):
        raise _invalid_combination(args, given, name)
    if "other" in kwargs:
        other = kwargs["other"]
        if not isinstance(other, Tensor):
            raise _invalid_combination(args, given, name)
        return _alias(other, dtype, name, typed, device_type)
    if "size" in kwargs:
        size = kwargs["size"]
        if not isinstance(size, (tuple, list)):
            raise _invalid_combination(args, given, name)
        return _uninitialized(_sizes(tuple(size), name), dtype, name)
    if "data" in kwargs:
        return _from_data(kwargs["data"], dtype, name)
    # device= alone, or with positional arguments
    return _construct(dtype, name, args, {}, typed, device_type)


def _from_one(arg, dtype, name: str, typed: bool, device_type: str) -> Tensor:
    if isinstance(arg, Tensor):
        return _alias(arg, dtype, name, typed, device_type)
    if isinstance(arg, Size):
        return _uninitialized(_sizes(tuple(arg), name, strict_first=False), dtype, name)
    if _is_int(arg):
        return _uninitialized(_sizes((arg,), name), dtype, name)
    return _from_data(arg, dtype, name)


def _alias(other: Tensor, dtype, name: str, typed: bool, device_type: str) -> Tensor:
    """``Tensor(other)``: a view of the whole of `other` (PyTorch's ``other.alias()``)."""
    if typed and (other.dtype is not dtype or other.device.type != device_type):
        def options(dtype_, device_):
            return (f"TensorOptions(dtype={_CPP_NAMES[dtype_.name]}, device={device_}, layout=Strided, "
                    f"requires_grad=false (default), pinned_memory=false (default), "
                    f"memory_format=(nullopt))")
        expected = options(dtype, "cpu" if device_type == "cpu" else "cuda:0")
        raise op_error(name, f"expected {expected} (got {options(other.dtype, other.device)})",
                       user_location(), hint=f"convert the tensor first: t.to(graphc.{dtype.name})"
                       + ("" if device_type == "cpu" else ".cuda()"), kind=TypeError)
    from graphc.views import alias
    return alias(other, "AliasBackward0")


def _uninitialized(shape: tuple, dtype, name: str) -> Tensor:
    """A tensor of `shape` whose contents PyTorch leaves unspecified (graphc: zeros)."""
    if math.prod(shape) * dtype.itemsize >= 2 ** 63:
        raise op_error(name, f"Storage size calculation overflowed with sizes={list(shape)}",
                       user_location(), kind=RuntimeError)
    return Tensor._adopt(np.zeros(shape, dtype=dtype.numpy))


# ---- sizes ------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    """An int PyTorch accepts as a size: a Python or NumPy integer (not a bool)."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) or (
        isinstance(value, Tensor) and value.ndim == 0 and value.dtype.category == dtypes.INTEGER)


def _sizes(args: tuple, name: str, strict_first: bool = True) -> tuple:
    """The shape from ``Tensor(2, 3)``-style arguments, with PyTorch's messages."""
    first = args[0] if args else None
    if args and strict_first and not _is_int(first):
        raise _invalid_combination(args, {}, name)
    shape = []
    for position, value in enumerate(args):
        if not (_is_int(value) or isinstance(value, (bool, np.bool_))):
            raise op_error(name, f"new(): argument 'size' failed to unpack the object at pos "
                                 f"{position + 1} with error \"type must be tuple of ints,but got "
                                 f"{_python_type_name(type(value))}\"", user_location(), kind=TypeError)
        shape.append(int(value))
    for size in shape:
        if size < 0:
            raise op_error(name, f"Trying to create tensor with negative dimension {size}: {shape}",
                           user_location(), kind=RuntimeError)
    return tuple(shape)


# ---- data -------------------------------------------------------------------------------------
def _is_sequence(value) -> bool:
    """Python's sequence protocol as PyTorch tests it (PySequence_Check): indexable, not a mapping."""
    if isinstance(value, (dict, np.generic, numbers.Number)):
        return False
    kind = type(value)
    return hasattr(kind, "__getitem__") and hasattr(kind, "__len__")


def _from_data(data, dtype, name: str) -> Tensor:
    if isinstance(data, (str, bytes)):
        raise op_error(name, f"new(): invalid data type '{type(data).__name__}'", user_location(),
                       kind=TypeError)
    if isinstance(data, np.ndarray):
        return _from_ndarray(data, dtype, name)
    if isinstance(data, Tensor) or not _is_sequence(data):
        raise op_error(name, f"new(): data must be a sequence (got {_python_type_name(type(data))})",
                       user_location(), kind=TypeError)
    return Tensor._adopt(_checked_cast(_sequence_values(data, name), dtype, name))


def _from_ndarray(array: np.ndarray, dtype, name: str) -> Tensor:
    """A NumPy array converted to `dtype` (not range-checked, as in PyTorch); an array of exactly
    that dtype is shared (writes through either are seen by the other), as PyTorch does."""
    if array.dtype.kind not in "biuf":
        raise op_error(name, f"can't convert np.ndarray of type numpy.{array.dtype.type.__name__}. "
                             f"The only supported types are: float64, float32, float16, int64, int32, "
                             f"int16, int8, uint64, uint32, uint16, uint8, and bool.", user_location(),
                       kind=TypeError)
    if any(stride < 0 for stride in array.strides):
        raise op_error(name, "At least one stride in the given numpy array is negative, and tensors "
                             "with negative strides are not currently supported. (You can probably work "
                             "around this by making a copy of your array  with array.copy().) ",
                       user_location(), kind=ValueError)
    if (array.dtype == dtype.numpy and array.flags.writeable
            and not any(stride % array.itemsize for stride in array.strides)):
        result = Tensor._from_array(array, share=True)
        _expose(result._storage)  # NumPy code may write it: ops reading it compute at once
        return result
    with np.errstate(over="ignore", invalid="ignore"):
        return Tensor._adopt(np.array(array, dtype=dtype.numpy, order="C"))


def _sequence_values(data, name: str) -> np.ndarray:
    """Nested sequences -> an array of their values in its natural NumPy dtype; ragged or
    non-numeric data raises PyTorch's errors."""
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is not None and array.dtype.kind in "biuf":
        return array
    # the slow walk: find what is wrong (PyTorch's message), or convert what NumPy could not
    sizes = _data_sizes(data, name)
    values: list = []
    _store(data, 0, sizes, values, name)
    if not values:
        return np.zeros(sizes, dtype=np.float32)
    return _python_values_array(values, sizes)


def _data_sizes(data, name: str) -> list:
    """The shape of nested data, read down its first elements (PyTorch's compute_sizes)."""
    sizes = []
    item = data
    while True:
        if isinstance(item, (Tensor, np.ndarray)):
            sizes.extend(item.shape)
            return sizes
        if isinstance(item, (str, bytes)):
            raise op_error(name, f"too many dimensions '{type(item).__name__}'", user_location(),
                           kind=ValueError)
        if not _is_sequence(item):
            return sizes
        sizes.append(len(item))
        if not len(item):
            return sizes
        item = item[0]


def _store(item, dim: int, sizes: list, values: list, name: str) -> None:
    """Append the scalars of `item` (the data at depth `dim`) to `values`, checking its shape."""
    if dim == len(sizes):
        values.append(_scalar(item, name))
        return
    if isinstance(item, (Tensor, np.ndarray)):
        shape = tuple(item.shape)
        for depth, (expected, got) in enumerate(zip(sizes[dim:], shape)):
            if expected != got:
                raise _length_error(expected, dim + depth, got, name)
        if len(shape) != len(sizes) - dim:
            raise op_error(name, "not a sequence", user_location(), kind=TypeError)
        values.extend(np.asarray(item._value() if isinstance(item, Tensor) else item).reshape(-1).tolist())
        return
    if isinstance(item, (str, bytes)) or not _is_sequence(item):
        raise op_error(name, "not a sequence", user_location(), kind=TypeError)
    if len(item) != sizes[dim]:
        raise _length_error(sizes[dim], dim, len(item), name)
    for element in item:
        _store(element, dim + 1, sizes, values, name)


def _scalar(item, name: str):
    if isinstance(item, (bool, np.bool_)):
        return bool(item)
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, (float, np.floating)):
        return float(item)
    if isinstance(item, (Tensor, np.ndarray)):
        if math.prod(item.shape) != 1:
            raise op_error(name, "only one element tensors can be converted to Python scalars",
                           user_location(), kind=ValueError)
        return item.item()
    raise op_error(name, f"must be real number, not {_python_type_name(type(item))}", user_location(),
                   kind=TypeError)


def _python_values_array(values: list, sizes: list) -> np.ndarray:
    """Python scalars NumPy would not hold as numbers (ints past int64): an int64, float64 or
    object array, to be range-checked by `_checked_cast`."""
    if any(isinstance(v, float) for v in values):
        kind = np.float64
    elif any(isinstance(v, int) and not isinstance(v, bool) for v in values):
        kind = np.int64 if all(_INT_RANGES["int64"][0] <= v <= _INT_RANGES["int64"][1]
                               for v in values) else object
    else:
        kind = np.bool_
    return np.array(values, dtype=kind).reshape(sizes)


def _checked_cast(array: np.ndarray, dtype, name: str) -> np.ndarray:
    """Python data (as an array) converted to `dtype` as PyTorch converts it: floats truncate
    toward zero into integers, but NaN, infinities and values outside the integer type's range
    are errors; anything nonzero is True; floats overflow to infinity."""
    if array.dtype == object:  # Python ints beyond int64
        if dtype.category == dtypes.BOOL:
            return np.array([bool(v) for v in array.reshape(-1)], dtype=np.bool_).reshape(array.shape)
        if dtype.category == dtypes.FLOATING:
            try:
                floats = [float(v) for v in array.reshape(-1)]
            except OverflowError as error:
                raise op_error(name, str(error), user_location(), kind=OverflowError) from None
            return np.array(floats, dtype=dtype.numpy).reshape(array.shape)
        raise op_error(name, "Overflow when unpacking long long", user_location(), kind=ValueError)
    if dtype.category == dtypes.INTEGER:
        low, high = _INT_RANGES[dtype.name]
        if array.dtype.kind == "u" and array.size and array.max() > _INT_RANGES["int64"][1]:
            raise op_error(name, "Overflow when unpacking long long", user_location(), kind=ValueError)
        if array.dtype.kind == "f":
            bad = ~np.isfinite(array) | (array < float(low)) | (array > float(high))
        elif array.dtype.kind in "iu" and dtype is not dtypes.int64:
            bad = (array < low) | (array > high)
        else:
            bad = None
        if bad is not None and bad.any():
            raise op_error(name, f"value cannot be converted to type {dtype.name} without overflow",
                           user_location(), kind=RuntimeError)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(array, dtype=dtype.numpy, order="C")


# ---- errors -----------------------------------------------------------------------------------
def _python_type_name(kind: type) -> str:
    """A type as CPython's C code names it: ``float``, ``numpy.float64``, ``Tensor``."""
    module = getattr(kind, "__module__", "builtins")
    if module == "numpy":
        return f"numpy.{kind.__name__}"
    return kind.__name__


def _argument_name(value) -> str:
    """How PyTorch's argument parser shows an argument's type in 'got (...)'."""
    if isinstance(value, Size):
        return "graphc.Size"
    if isinstance(value, dtypes.DType):
        return "graphc.dtype"
    if isinstance(value, Device):
        return "graphc.device"
    if isinstance(value, Tensor):
        return "Tensor"
    return _python_type_name(type(value))


def _invalid_combination(args, kwargs, name: str) -> TypeError:
    got = [_argument_name(a) for a in args] + [f"{k}={_argument_name(v)}" for k, v in kwargs.items()]
    shown = ", ".join(got) + (", " if kwargs and not args else "")
    return op_error(name, f"new() received an invalid combination of arguments - got ({shown}), but "
                          f"expected one of:\n{_SIGNATURES}", user_location(), kind=TypeError)


def _length_error(expected: int, dim: int, got: int, name: str) -> ValueError:
    return op_error(name, f"expected sequence of length {expected} at dim {dim} (got {got})",
                    user_location(), kind=ValueError)


def _tensor_with_device(name: str) -> RuntimeError:
    return op_error(name, "Legacy tensor constructor of the form graphc.Tensor(tensor, device=device) is "
                          "not supported.  Use graphc.tensor(...) or graphc.as_tensor(...) instead.",
                    user_location(), kind=RuntimeError)


def _check_device(device, name: str, device_type: str) -> None:
    kind = Device(device).type
    if kind != device_type:
        raise op_error(name, f"legacy constructor expects device type: {device_type} but device type: "
                             f"{kind} was passed", user_location(),
                       hint="make the tensor with graphc.tensor(data, device=...) or "
                            "graphc.empty(*sizes, device=...)", kind=RuntimeError)
