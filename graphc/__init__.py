"""graphc: PyTorch's API, with a graph compiler as the engine.

    import graphc
    x = graphc.ones(2, 2, requires_grad=True)
    out = ((x + 2) * (x + 2) * 3).mean()
    out.backward()          # x.grad is all 4.5
"""
from graphc import dtypes as _dtypes
from graphc.dtypes import (DType as dtype, bool_ as bool, float32, float64, get_default_dtype, int32,
                           int64, set_default_dtype)
from graphc.size import Size, device
from graphc.tensor import Tensor
from graphc.legacy import BoolTensor, DoubleTensor, FloatTensor, IntTensor, LongTensor
from graphc import tensor_methods as _tensor_methods  # noqa: F401  (attaches the Tensor API)
from graphc.ir import Graph
from graphc import autograd, cuda
from graphc.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from graphc.creation import (Generator, arange, as_tensor, empty, empty_like, eye, from_numpy, full,
                             full_like, initial_seed, linspace, manual_seed, ones, ones_like, rand,
                             rand_like, randint, randint_like, randn, randn_like, randperm, seed, tensor,
                             zeros, zeros_like)
from graphc.tensor_ops import (add, amax, amin, argmax, argmin, bmm, broadcast_shapes, cat, clamp,
                               concat, concatenate, div, dot, eq, floor_divide, ge, gt, le,
                               log_softmax, logical_and, logical_not, logical_or, logical_xor, lt,
                               matmul, max, maximum, mean, min, minimum, mm, mul, ne, pow, prod, relu,
                               remainder, rsqrt, sigmoid, norm, softmax, square, stack, std, sub, sum, var,
                               where)
from graphc.tensor_methods import METHODS as _METHODS

float = float32
double = float64
long = int64
int = int32
half = None  # float16 is not supported

_FUNCTIONAL_METHODS = ("exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "abs", "neg", "negative",
                       "sign", "floor", "reciprocal", "clone", "flatten", "reshape", "permute",
                       "transpose", "squeeze", "unsqueeze", "split", "chunk", "unbind", "narrow",
                       "select", "t", "all", "any", "allclose", "equal", "nonzero", "clip",
                       "subtract", "multiply", "divide", "true_divide", "fmod", "swapaxes",
                       "broadcast_to", "detach")
for _name in _FUNCTIONAL_METHODS:
    globals()[_name] = _METHODS[_name]
del _name
# graphc.relu([t, t]) raises PyTorch's TypeError naming the argument, not an AttributeError
from graphc.tensor_ops import tensor_functions as _tensor_functions  # noqa: E402
_tensor_functions(globals(), ("add", "amax", "amin", "argmax", "argmin", "bmm", "clamp", "div", "dot", "eq",
                              "floor_divide", "ge", "gt", "le", "log_softmax", "logical_and", "logical_not",
                              "logical_or", "logical_xor", "lt", "matmul", "max", "maximum", "mean", "min",
                              "minimum", "mm", "mul", "ne", "pow", "prod", "relu", "remainder", "rsqrt",
                              "sigmoid", "norm", "softmax", "square", "std", "sub", "sum", "var", "where")
                  + _FUNCTIONAL_METHODS)


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input) -> int:
    return input.numel()


def is_floating_point(input) -> bool:
    return input.is_floating_point()


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


__version__ = "0.1.0"

from graphc import nn, optim, utils  # noqa: E402  (they build on the tensor API above)
from graphc import datasets  # noqa: E402
from graphc import transforms  # noqa: E402

from graphc.compile import compile, trace  # noqa: E402
from runtime import get_num_threads, set_num_threads  # noqa: E402
from graphc import dump as _dump  # noqa: E402,F401  (GRAPHC_DUMP=DIR: dump every compiled graph at exit)
from graphc.serialization import load, save  # noqa: E402
