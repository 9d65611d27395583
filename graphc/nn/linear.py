"""`Linear` and `Identity`."""
from __future__ import annotations

import math

from graphc import dtypes
from graphc.nn import functional as F, init
from graphc.nn.module import Module, _check_device
from graphc.nn.parameter import Parameter


def _empty(*shape, dtype=None):
    from graphc.creation import empty
    return empty(*shape, dtype=dtype or dtypes.get_default_dtype())


def make_weight_and_bias(layer: Module, weight_shape, bias: bool, device, dtype) -> None:
    """A layer's `weight` of `weight_shape` and (if asked) `bias` of its first dim, initialized by
    the layer's own reset_parameters, made on the CPU and then moved where device= asks."""
    layer.weight = Parameter(_empty(*weight_shape, dtype=dtype))
    if bias:
        layer.bias = Parameter(_empty(weight_shape[0], dtype=dtype))
    else:
        layer.register_parameter("bias", None)
    layer.reset_parameters()
    if device is not None:
        layer.to(device)


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b, with W (out_features, in_features) and PyTorch's default initialization:
    kaiming_uniform_(W, a=sqrt(5)) and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        _check_device(device)
        self.in_features = in_features
        self.out_features = out_features
        make_weight_and_bias(self, (out_features, in_features), bias, device, dtype)

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y = x1^T A x2 + b."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        _check_device(device)
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        make_weight_and_bias(self, (out_features, in1_features, in2_features), bias, device, dtype)

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
