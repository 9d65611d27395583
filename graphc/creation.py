"""Tensor creation: `tensor`, `from_numpy`, `zeros`, `arange`, `rand`... and `manual_seed`."""
from __future__ import annotations

import math

import numpy as np

from graphc import capture
from graphc import dtypes, philox
from graphc.autograd.grad_mode import is_grad_enabled
from graphc.lazy import LazyNode, make_node
from graphc.size import CPU, device as Device
from graphc.source_location import user_location
from graphc.tensor import Scalar, Tensor


def _shape(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    shape = tuple(int(a) for a in args)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(shape)}")
    return shape


def _device(device, default=None) -> Device:
    """The device a creation function was asked for (checked; ``cuda`` becomes ``cuda:0``)."""
    if device is None:
        return default or CPU
    from graphc import devices
    return devices.require(device, f"create a tensor on {Device(device)}")


def _leaf(array: np.ndarray, device: Device) -> Tensor:
    """A leaf tensor holding a copy of `array` (cast to a graphc dtype) on `device`."""
    result = Tensor._from_array(array)
    if device.type == "cpu":
        return result
    from graphc import devices
    values = result._storage.array.reshape(result._shape)
    return Tensor._on_device(devices.from_host(values, device), device)


def _finish(result: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        result.requires_grad_(True)
    return result


def _nested_values(data):
    """Nested lists/tuples that may hold tensors -> a NumPy array."""
    if isinstance(data, Tensor):
        return np.array(data._value())
    if isinstance(data, (list, tuple)):
        if not data:
            return np.array([], dtype=np.float32)
        items = [_nested_values(d) for d in data]
        if any(item.shape != items[0].shape for item in items):
            raise ValueError(f"tensor(): ragged nested sequences: the items have shapes "
                             f"{[list(i.shape) for i in items]}; every item must have the same shape")
        return np.array(items)
    return np.array(data)


def _element_dtype(data):
    """PyTorch's inference for nested data: the promotion of every element's own dtype (Python
    floats the default float, ints int64; tensors and NumPy values keep theirs); None if empty."""
    if isinstance(data, Tensor):
        return data.dtype
    if isinstance(data, (np.ndarray, np.generic)):
        return dtypes.from_numpy(data.dtype)
    if isinstance(data, (list, tuple)):
        result = None
        for item in data:
            dtype = _element_dtype(item)
            if dtype is not None:
                result = dtype if result is None else dtypes.promote_types(result, dtype)
        return result
    if isinstance(data, (bool, int, float)):
        return dtypes.scalar_dtype(data)
    raise TypeError(f"Could not infer dtype of {type(data).__name__}")


def _infer_dtype(data, array: np.ndarray):
    if isinstance(data, np.ndarray) or (isinstance(data, np.generic)):
        return dtypes.from_numpy(array.dtype)
    if isinstance(data, (list, tuple)):
        inferred = _element_dtype(data)
        if inferred is not None:
            return inferred
    kind = array.dtype.kind
    if kind == "b":
        return dtypes.bool_
    if kind in "iu":
        return dtypes.int64
    if kind == "f":
        return dtypes.get_default_dtype()
    raise TypeError(f"Could not infer dtype of {type(data).__name__}")


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, scalars, NumPy arrays, tensors)."""
    if type(data) is np.ndarray and device is None:
        # the common case in a training loop (a batch from NumPy): one copy, straight into storage
        target = dtypes.as_dtype(dtype) if dtype is not None else dtypes.from_numpy(data.dtype)
        return _finish(Tensor._adopt(np.array(data, dtype=target.numpy, order="C")), requires_grad)
    if isinstance(data, Tensor):
        device = _device(device, data.device)
        array = np.array(data._value())
        inferred = data.dtype
    else:
        device = _device(device)
        array = _nested_values(data)
        inferred = _infer_dtype(data, array)
    target = dtypes.as_dtype(dtype) if dtype is not None else inferred
    return _finish(_leaf(np.array(array, dtype=target.numpy), device), requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like `tensor`, but shares memory with a NumPy array (or returns a tensor) when it can."""
    target = dtypes.as_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=target)
    if isinstance(data, np.ndarray) and (target is None or target.numpy == data.dtype) and (
            device is None or Device(device).type == "cpu"):
        try:
            return from_numpy(data)
        except (TypeError, ValueError):
            pass
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory: writes through either are seen by the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    if array.dtype not in {d.numpy for d in dtypes.ALL}:
        raise TypeError(f"can't convert np.ndarray of type {array.dtype}. The only supported types "
                        "are: float64, float32, int64, int32, and bool.")
    result = Tensor._from_array(array, share=True)
    from graphc.tensor import _expose
    _expose(result._storage)    # NumPy code may write it: ops reading it compute at once
    return result


def _filled(shape, value, dtype, requires_grad, device=None) -> Tensor:
    device = _device(device)
    array = np.full(shape, value, dtype=dtype.numpy)
    return _finish(_leaf(array, device), requires_grad)


def _default_for(value) -> dtypes.DType:
    return dtypes.scalar_dtype(value)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(_shape(size), 0, dtypes.as_dtype(dtype or dtypes.get_default_dtype()), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(_shape(size), 1, dtypes.as_dtype(dtype or dtypes.get_default_dtype()), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    target = dtypes.as_dtype(dtype) if dtype is not None else _default_for(fill_value)
    return _filled(_shape((size,)), fill_value, target, requires_grad, device)


def zeros_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(input._shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return ones(input._shape, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(input._shape, fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    values = [start, end, step]
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    floating = any(isinstance(v, float) or isinstance(v, Tensor) and v.is_floating_point() for v in values)
    target = dtypes.as_dtype(dtype) if dtype is not None else (
        dtypes.get_default_dtype() if floating else dtypes.int64)
    start, end, step = (float(v) if floating else int(v) for v in values)
    count = max(math.ceil((end - start) / step), 0)
    array = (start + np.arange(count, dtype=np.float64 if floating else np.int64) * step)
    return _finish(_leaf(array.astype(target.numpy), _device(device)), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    target = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    return _finish(_leaf(np.linspace(start, end, int(steps)).astype(target.numpy), _device(device)),
                   requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    target = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    return _finish(_leaf(np.eye(n, m if m is not None else n, dtype=target.numpy), _device(device)),
                   requires_grad)


# ---- random numbers: counter-based, computed inside the graph ----------------------------------
class Generator:
    """Seed and counter of graphc's Philox stream; each random op consumes `numel` counters."""

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0
        return self

    def initial_seed(self) -> int:
        return self.seed

    def next_key(self, count: int, device: Device = CPU) -> Tensor:
        """[seed, offset] for a random op of `count` elements, on the device its kernel runs on."""
        key = _leaf(np.array([self.seed, self.offset], dtype=np.int64), device)
        self.offset += max(count, 1)
        return key

    def get_state(self):
        return Tensor._from_array(np.array([self.seed, self.offset], dtype=np.int64))

    def set_state(self, state):
        self.seed, self.offset = (int(v) for v in np.asarray(state._value()))


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed graphc's random numbers: the same seed gives the same values on every backend."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    import random
    value = random.getrandbits(63)
    default_generator.manual_seed(value)
    return value


def initial_seed() -> int:
    return default_generator.initial_seed()


def _uniform_nodes(shape, lanes, generator, where, device: Device = CPU):
    """Philox uniforms computed where the tensor lives: the key's device is the node's, so the
    same seed gives the same bits on every device."""
    context = capture.active()
    generator = generator or default_generator
    count = math.prod(shape)
    key = (context.random_key(generator, count, device) if context is not None
           else generator.next_key(count, device))
    return [make_node("rand", [key._node], where, False, shape=shape, lane=lane) for lane in lanes]


def _random_tensor(value: LazyNode, dtype, requires_grad) -> Tensor:
    from graphc import tensor_ops
    where = value.where
    if dtype is not None and not dtypes.as_dtype(dtype).is_floating_point:
        from graphc.errors import op_error
        raise op_error("rand", f"random floats can't be made as {dtypes.as_dtype(dtype)}: use a "
                               f"floating-point dtype, or randint for integers", where, kind=TypeError)
    if dtype is not None and dtypes.as_dtype(dtype) is not value.dtype:
        value = tensor_ops.cast(value, dtypes.as_dtype(dtype), where)
    return _finish(Tensor._from_node(value), requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform on [0, 1)."""
    device = _device(device)
    where = user_location()
    [value] = _uniform_nodes(_shape(size), (0,), generator, where, device)
    return _random_tensor(value, dtype or dtypes.get_default_dtype(), requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal, by Box-Muller over two Philox lanes of the same counters."""
    device = _device(device)
    where = user_location()
    shape = _shape(size)
    # in float64, then rounded: float32 log/cos differ by an ulp between libms (NumPy and the
    # generated C), float64 ones round to the same float32, so a seed gives the same values on
    # every backend (and float64 randn keeps more of the uniforms' bits)
    first, second = (make_node("cast", [u], where, False, dtype="float64")
                     for u in _uniform_nodes(shape, (0, 1), generator, where, device))

    def constant(value):
        from graphc.tensor_ops import full
        return full(value, shape, dtypes.float64, where)

    def apply(op, *inputs):
        return make_node(op, inputs, where, False)
    # 1 - u lies in (0, 1], so the log is finite
    radius = apply("sqrt", apply("mul", constant(-2.0), apply("log", apply("sub", constant(1.0), first))))
    angle = apply("mul", constant(2 * math.pi), second)
    return _random_tensor(apply("mul", radius, apply("cos", angle)), dtype or dtypes.get_default_dtype(),
                          requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    uniform = rand(*_shape((size,)), generator=generator, dtype=dtypes.float64, device=device)
    values = (uniform * (high - low)).floor() + low
    return values.to(dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64)


def rand_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return rand(input._shape, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def randn_like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
    return randn(input._shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None, device=None) -> Tensor:
    return randint(low, high, input._shape, dtype=dtype or input.dtype, device=device or input.device)


def randperm(n, *, generator=None, dtype=None, device=None) -> Tensor:
    device = _device(device)
    if capture.active() is None:
        # the same Philox uniforms `rand(n)` computes, drawn on the host: a sampler's permutation
        # per epoch costs no native call of its own
        seed, offset = (int(v) for v in (generator or default_generator).next_key(n)._value())
        keys = philox.uniform(seed, offset, n, 0).astype(np.float64)
    else:
        keys = np.asarray(rand(n, generator=generator, dtype=dtypes.float64, device=device)._value())
    order = np.argsort(keys, kind="stable")
    return _leaf(order.astype((dtypes.as_dtype(dtype) if dtype else dtypes.int64).numpy), device)
