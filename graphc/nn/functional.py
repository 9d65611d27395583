"""`graphc.nn.functional`: layers, activations and losses as functions (``import ... as F``).

Everything here is composed from graphc tensor ops (and the conv2d / slice / pad / gather
primitives), so forward, backward and optimizer step can be traced into one graph. Composite
results are tagged with the grad_fn name PyTorch gives them (``NllLossBackward0``...).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from graphc import dtypes, tensor_ops
from graphc.autograd.grad_mode import no_grad
from graphc.errors import ShapeError, op_error
from graphc.source_location import user_location
from graphc.tensor import Tensor
from graphc.tensor_ops import node, wrap, wrap_name


# ---- helpers ----------------------------------------------------------------------------------
def _pair(value, name="argument") -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return (int(value[0]),) * 2
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value}")
        return tuple(int(v) for v in value)
    return (int(value), int(value))


def _from_node(value) -> Tensor:
    return Tensor._from_node(value)


def _check_tensor(value, op: str, name: str = "input") -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}(): argument '{name}' must be a graphc.Tensor, not {type(value).__name__}")


def _check_float(value: Tensor, op: str, where: str, name: str = "input") -> None:
    if not value.dtype.is_floating_point:
        raise op_error(op, f"expected a floating-point {name}, got {value.dtype.name}", where, kind=TypeError)


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='"
                  f"{'mean' if size_average and reduce else 'sum' if reduce else 'none'}' instead.",
                  stacklevel=3)
    if size_average and reduce:
        return "mean"
    return "sum" if reduce else "none"


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def _tagged(tensor: Tensor, name: str) -> Tensor:
    return wrap_name(tensor, name)


def _write_inplace(input: Tensor, result: Tensor) -> Tensor:
    """`inplace=True` activations: write result into input, as PyTorch does.

    graphc cannot yet record a write into a *view* that autograd tracks; there the result is
    returned out of place (the values and gradients are the same; only the aliasing differs).
    """
    from graphc.autograd.grad_mode import is_grad_enabled
    from graphc.inplace import _owns_storage
    tracked = is_grad_enabled() and (input.requires_grad or result.requires_grad)
    if tracked and not input.is_leaf and not _owns_storage(input):
        return result
    return input.copy_(result)


# ---- linear and convolution ------------------------------------------------------------------
def linear(input, weight, bias=None):
    """y = x W^T + b."""
    _check_tensor(input, "linear")
    out = input.matmul(weight.t())
    if bias is not None:
        out = out + bias
    if input.ndim == 2:
        return _tagged(out, "AddmmBackward0" if bias is not None else "MmBackward0")
    if input.ndim > 2:
        return _tagged(out, "ViewBackward0" if bias is not None else "UnsafeViewBackward0")
    return out


def bilinear(input1, input2, weight, bias=None):
    """y_k = x1^T A_k x2 + b_k."""
    out = (input1.unsqueeze(-2).unsqueeze(-2) @ weight @ input2.unsqueeze(-2).unsqueeze(-1).unsqueeze(-4))
    out = out.squeeze(-1).squeeze(-1)
    return out + bias if bias is not None else out


def _conv_padding(padding, kernel, dilation, stride, where):
    """Symmetric (ph, pw) for the primitive, and extra (right, bottom) padding for 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise op_error("conv2d", "padding='same' is not supported for strided convolutions", where,
                               kind=ValueError)
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return tuple(t // 2 for t in totals), tuple(t - t // 2 * 2 for t in totals)
        raise ValueError(f"Invalid padding string '{padding}', should be one of ('valid', 'same')")
    return _pair(padding, "padding"), (0, 0)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (cross-correlation, as in PyTorch) of (N, C, H, W) or (C, H, W) input."""
    where = user_location()
    _check_tensor(input, "conv2d")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if input.ndim not in (3, 4):
        raise op_error("conv2d", f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input "
                                 f"of size: {list(input.shape)}", where, kind=ShapeError)
    if weight.ndim != 4:
        raise op_error("conv2d", f"expected a 4D weight (out_channels, in_channels/groups, kH, kW), got "
                                 f"size {list(weight.shape)}", where, kind=ShapeError)
    if input.dtype is not weight.dtype:
        raise op_error("conv2d", f"Input type ({input.dtype.name}) and weight type ({weight.dtype.name}) "
                                 "should be the same", where, hint="convert one of them with .to(dtype)",
                       kind=TypeError)
    _check_float(input, "conv2d", where)
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    channels = input.shape[1]
    if weight.shape[0] % groups or channels != weight.shape[1] * groups:
        raise op_error("conv2d", f"Given groups={groups}, weight of size {list(weight.shape)}, expected "
                                 f"input{list(input.shape)} to have {weight.shape[1] * groups} channels, but "
                                 f"got {channels} channels instead", where, kind=ShapeError)
    kernel = tuple(weight.shape[2:])
    pads, extra = _conv_padding(padding, kernel, dilation, stride, where)
    x = input
    if any(extra):
        x = pad(x, (0, extra[1], 0, extra[0]))
    height, width = x.shape[2] + 2 * pads[0], x.shape[3] + 2 * pads[1]
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if span[0] > height or span[1] > width:
        raise op_error("conv2d", f"Calculated padded input size per channel: ({height} x {width}). Kernel "
                                 f"size: ({span[0]} x {span[1]}). Kernel size can't be greater than actual "
                                 "input size", where, kind=ShapeError)
    out = wrap(node("conv2d", [x._node, weight._node], where, stride=stride, padding=pads,
                    dilation=dilation, groups=int(groups)), "ConvolutionBackward0", [x, weight])
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise op_error("conv2d", f"expected bias of shape [{weight.shape[0]}], got {list(bias.shape)}",
                           where, kind=ShapeError)
        out = _tagged(out + bias.view(1, -1, 1, 1), "ConvolutionBackward0")
    return out.squeeze(0) if unbatched else out


# ---- pooling ----------------------------------------------------------------------------------
def _pool_output_size(size, kernel, stride, padding, dilation, ceil_mode) -> int:
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span + ((stride - 1) if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode, where):
    if input.ndim not in (3, 4):
        raise op_error(op, f"Expected 3D or 4D (batch mode) tensor for input, got size {list(input.shape)}",
                       where, kind=ShapeError)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else _pair(stride, "stride")
    padding, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise op_error(op, f"kernel_size {kernel}, stride {stride} and dilation {dilation} must be positive",
                       where, kind=ValueError)
    for p, k, d in zip(padding, kernel, dilation):
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise op_error(op, f"pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={d}", where, kind=ValueError)
    size = input.shape[-2:]
    out = tuple(_pool_output_size(n, k, s, p, d, ceil_mode)
                for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))
    if out[0] < 1 or out[1] < 1:
        raise op_error(op, f"Given input size: ({input.shape[-3]}x{size[0]}x{size[1]}). Calculated output "
                           f"size: ({input.shape[-3]}x{out[0]}x{out[1]}). Output size is too small", where,
                       kind=ShapeError)
    return kernel, stride, padding, dilation, out


def _pool_taps(x: Tensor, kernel, stride, padding, dilation, out, pad_value, where):
    """Pad x (N, C, H, W) with pad_value, then one strided slice per kernel tap (i, j)."""
    n, c, h, w = x.shape
    needed = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(out, stride, dilation, kernel)]
    extra = [max(0, need - (size + 2 * p)) for need, size, p in zip(needed, (h, w), padding)]
    value = x._node
    if any(padding) or any(extra):
        value = node("pad", [value], where, pads=((0, 0), (0, 0), (padding[0], padding[0] + extra[0]),
                                                  (padding[1], padding[1] + extra[1])), value=pad_value)
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0], j * dilation[1]
            tap = node("slice", [value], where, starts=(0, 0, top, left),
                       stops=(n, c, top + stride[0] * (out[0] - 1) + 1, left + stride[1] * (out[1] - 1) + 1),
                       steps=(1, 1, stride[0], stride[1]))
            taps.append(_from_node(tap))
    return taps


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window: the gradient goes to the first maximum, as in PyTorch."""
    where = user_location()
    _check_tensor(input, "max_pool2d")
    kernel, stride, padding, dilation, out = _pool_geometry("max_pool2d", input, kernel_size, stride,
                                                            padding, dilation, ceil_mode, where)
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if not return_indices and _tiles(x, kernel, stride, padding, dilation):
        values = _max_over_tiles(x, kernel)
        return values.squeeze(0) if unbatched else values
    fill = -math.inf if x.dtype.is_floating_point else int(np.iinfo(x.dtype.numpy).min)
    taps = _pool_taps(x, kernel, stride, padding, dilation, out, fill, where)
    if len(taps) == 1:
        values, which = taps[0], None
        values = _tagged(values.clone(), "MaxPool2DWithIndicesBackward0")
    else:
        stacked = tensor_ops.stack(taps, -1)
        values, which = stacked.max(-1)
        values = _tagged(values, "MaxPool2DWithIndicesBackward0")
    if unbatched:
        values = values.squeeze(0)
    if not return_indices:
        return values
    from graphc.creation import arange, zeros
    if which is None:
        which = zeros(values.shape if not unbatched else (1,) + tuple(values.shape), dtype=dtypes.int64,
                      device=x.device)
    rows = arange(out[0], device=x.device).view(-1, 1) * stride[0] - padding[0] + (which // kernel[1]) * dilation[0]
    cols = arange(out[1], device=x.device).view(1, -1) * stride[1] - padding[1] + (which % kernel[1]) * dilation[1]
    indices = rows * x.shape[3] + cols
    return values, (indices.squeeze(0) if unbatched else indices)


def _tiles(x, kernel, stride, padding, dilation) -> bool:
    """Windows that tile the input exactly (kernel == stride, no padding or dilation)."""
    return (tuple(kernel) == tuple(stride) and not any(padding) and tuple(dilation) == (1, 1)
            and x.shape[2] % kernel[0] == 0 and x.shape[3] % kernel[1] == 0)


def _max_over_tiles(x, kernel):
    """Max pooling when windows tile the input: the windows are a reshape/permute view, the first
    maximum of each is found without gradient, and the value is selected with `where`, so the
    backward pass is one elementwise kernel (the gradient goes to the first maximum, as PyTorch)."""
    n, c, h, w = x.shape
    kh, kw = kernel
    windows = x.reshape(n, c, h // kh, kh, w // kw, kw).permute(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, c, h // kh, w // kw, kh * kw)
    with no_grad():
        first = windows.argmax(-1, keepdim=True)
    from graphc.creation import arange
    chosen = arange(kh * kw, device=x.device) == first
    values = tensor_ops.where(chosen, windows, 0).sum(-1)
    return _tagged(values, "MaxPool2DWithIndicesBackward0")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over each window (zero padding; the divisor follows PyTorch's rules)."""
    where = user_location()
    _check_tensor(input, "avg_pool2d")
    kernel, stride, padding, dilation, out = _pool_geometry("avg_pool2d", input, kernel_size, stride,
                                                            padding, 1, ceil_mode, where)
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    _check_float(x, "avg_pool2d", where)
    taps = _pool_taps(x, kernel, stride, padding, dilation, out, 0.0, where)
    total = taps[0]
    for tap in taps[1:]:
        total = total + tap
    h, w = x.shape[2:]
    needed = [(o - 1) * s + k for o, s, k in zip(out, stride, kernel)]
    clipped = any(need > size + 2 * p for need, size, p in zip(needed, (h, w), padding))
    if divisor_override is not None:
        result = total / divisor_override
    elif not clipped and (count_include_pad or not any(padding)):
        result = total / (kernel[0] * kernel[1])
    else:
        # count the positions each window covers (input, plus the padding if it counts)
        from graphc.creation import ones
        counts = ones(1, 1, h, w, dtype=x.dtype, device=x.device)
        if count_include_pad:
            counts = pad(counts, (padding[1], padding[1], padding[0], padding[0]), value=1.0)
            inner = (0, 0)
        else:
            inner = padding
        count_taps = _pool_taps(counts, kernel, stride, inner, (1, 1), out, 0.0, where)
        divisor = count_taps[0]
        for tap in count_taps[1:]:
            divisor = divisor + tap
        result = total / divisor
    result = _tagged(result, "AvgPool2DBackward0")
    return result.squeeze(0) if unbatched else result


def _adaptive_matrix(size: int, out: int, dtype, device=None) -> Tensor:
    from graphc.creation import tensor
    rows = []
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
    return tensor(rows, dtype=dtype, device=device)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size (windows as in PyTorch: floor/ceil bounds)."""
    where = user_location()
    _check_tensor(input, "adaptive_avg_pool2d")
    if input.ndim not in (3, 4):
        raise op_error("adaptive_avg_pool2d", f"Expected 3D or 4D tensor, but got {list(input.shape)}", where,
                       kind=ShapeError)
    _check_float(input, "adaptive_avg_pool2d", where)
    h, w = input.shape[-2:]
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = (h if sizes[0] is None else int(sizes[0])), (w if sizes[1] is None else int(sizes[1]))
    if (oh, ow) == (1, 1):
        return input.mean((-2, -1), keepdim=True)
    if h % oh == 0 and w % ow == 0:
        result = avg_pool2d(input, (h // oh, w // ow))
    else:
        rows = _adaptive_matrix(h, oh, input.dtype, input.device)
        cols = _adaptive_matrix(w, ow, input.dtype, input.device)
        result = rows.matmul(input.matmul(cols.t()))
    return _tagged(result, "AdaptiveAvgPool2DBackward0")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max pooling to a fixed output size (for sizes that divide the input evenly)."""
    h, w = input.shape[-2:]
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = (h if sizes[0] is None else int(sizes[0])), (w if sizes[1] is None else int(sizes[1]))
    if h % oh or w % ow:
        raise op_error("adaptive_max_pool2d", f"graphc supports output sizes that divide the input; got "
                                              f"input {h}x{w}, output {oh}x{ow}", user_location(),
                       kind=NotImplementedError)
    return max_pool2d(input, (h // oh, w // ow), return_indices=return_indices)


# ---- activations ------------------------------------------------------------------------------
def relu(input, inplace=False):
    result = tensor_ops.relu(input)
    return _write_inplace(input, result) if inplace else result


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    result = tensor_ops.where(input > 0, input, input * negative_slope)
    result = _tagged(result, "LeakyReluBackward0")
    return _write_inplace(input, result) if inplace else result


def elu(input, alpha=1.0, inplace=False):
    """alpha (exp(x) - 1) for x < 0, alpha x at +-0 (its sign; the gradient alpha, as PyTorch's),
    x above 0 and at NaN (the gradient passes there, as PyTorch's elu_backward). exp reads
    min(x, 0) through a where, so large x never overflow into the unused branch's gradient."""
    negative = input < 0
    exp_input = tensor_ops.where(negative, input, 0.0)
    below = tensor_ops.where(negative, (exp_input.exp() - 1) * alpha, input * alpha)
    result = tensor_ops.where(input <= 0, below, input)
    result = _tagged(result, "EluBackward0")
    return _write_inplace(input, result) if inplace else result


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    result = tensor_ops.hardtanh(input, min_val, max_val)
    return _write_inplace(input, result) if inplace else result


def sigmoid(input):
    return tensor_ops.sigmoid(input)


def tanh(input):
    return input.tanh()


def silu(input, inplace=False):
    result = _tagged(input * tensor_ops.sigmoid(input), "SiluBackward0")
    return _write_inplace(input, result) if inplace else result


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear above threshold; computed without overflow."""
    scaled = input * beta
    stable = (tensor_ops.maximum(scaled, 0.0) + (-scaled.abs()).exp().add(1.0).log()) / beta
    return _tagged(tensor_ops.where(scaled > threshold, input, stable), "SoftplusBackward0")


def logsigmoid(input):
    return _tagged(-softplus(-input), "LogSigmoidBackward0")


def gelu(input, approximate="none"):
    """x * Phi(x) (exact, with erf) or its tanh approximation."""
    if approximate == "none":
        result = input * 0.5 * ((input * (1.0 / math.sqrt(2.0))).erf() + 1.0)
    elif approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2.0 / math.pi)
        result = input * 0.5 * (inner.tanh() + 1.0)
    else:
        raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return _tagged(result, "GeluBackward0")


def _softmax_dim(ndim: int) -> int:
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to "
                  "include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    return tensor_ops.softmax(input, dim)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    return softmax(-input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    return tensor_ops.log_softmax(input, dim)


# ---- normalization ----------------------------------------------------------------------------
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalize over every dim but the channel dim (dim 1).

    In training, batch statistics are used (biased variance) and running_mean/running_var, if
    given, are updated in place: ``running = (1 - momentum) * running + momentum * batch``, with
    the unbiased variance, as PyTorch does.
    """
    where = user_location()
    _check_tensor(input, "batch_norm")
    if input.ndim < 2:
        raise op_error("batch_norm", f"expected at least 2D input (got {input.ndim}D input)", where,
                       kind=ShapeError)
    channels = input.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is not None and value.numel() != channels:
            raise op_error("batch_norm", f"{name} should contain {channels} elements not {value.numel()}",
                           where, kind=ShapeError)
    axes = (0,) + tuple(range(2, input.ndim))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    count = input.numel() // max(channels, 1)
    if training:
        if count <= 1:
            raise op_error("batch_norm", f"Expected more than 1 value per channel when training, got input "
                                         f"size {input.shape}", where, kind=ValueError)
        mean = input.mean(axes)
        var = input.var(axes, unbiased=False)
        if running_mean is not None or running_var is not None:
            with no_grad():
                if running_mean is not None:
                    running_mean.copy_(mean.detach() * momentum + running_mean * (1 - momentum))
                if running_var is not None:
                    unbiased = var.detach() * (count / (count - 1))
                    running_var.copy_(unbiased * momentum + running_var * (1 - momentum))
    else:
        if running_mean is None or running_var is None:
            raise op_error("batch_norm", "running_mean and running_var must be given when not training",
                           where, kind=ValueError)
        mean, var = running_mean, running_var
    out = (input - mean.view(shape)) * (var.view(shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return _tagged(out, "NativeBatchNormBackward0")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the last len(normalized_shape) dims (biased variance)."""
    where = user_location()
    _check_tensor(input, "layer_norm")
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != normalized_shape or input.ndim < k:
        raise op_error("layer_norm", f"Given normalized_shape={list(normalized_shape)}, expected input with "
                                     f"shape [*, {', '.join(map(str, normalized_shape))}], but got input of "
                                     f"size{list(input.shape)}", where, kind=ShapeError)
    axes = tuple(range(input.ndim - k, input.ndim))
    mean = input.mean(axes, keepdim=True)
    var = input.var(axes, unbiased=False, keepdim=True)
    out = (input - mean) * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return _tagged(out, "NativeLayerNormBackward0")


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along dim."""
    norm = (input.abs() ** p).sum(dim, keepdim=True) ** (1.0 / p)
    return input / tensor_ops.clamp(norm, min=eps)


# ---- dropout and embedding --------------------------------------------------------------------
def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p (graphc's counter-based rand) and scale by 1/(1-p)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    from graphc.creation import rand
    if p == 1.0:
        scale = input * 0.0
    else:
        keep = rand(input.shape, dtype=dtypes.float32, device=input.device) < (1.0 - p)
        scale = keep.to(input.dtype) * (1.0 / (1.0 - p))
    return _write_inplace(input, input * scale) if inplace else input * scale


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of weight picked by the integer tensor input."""
    where = user_location()
    _check_tensor(input, "embedding")
    if input.dtype not in (dtypes.int64, dtypes.int32):
        raise op_error("embedding", "Expected tensor for argument #1 'indices' to have one of the following "
                                    f"scalar types: Long, Int; but got {input.dtype.name} instead", where,
                       hint="convert the indices with .long()", kind=TypeError)
    if max_norm is not None or scale_grad_by_freq:
        raise NotImplementedError("embedding: max_norm and scale_grad_by_freq are not supported")
    rows = weight.shape[0]
    if input._storage.is_realized and input.numel():
        values = np.asarray(input._value())
        if values.min() < 0 or values.max() >= rows:
            bad = values[(values < 0) | (values >= rows)].flat[0]
            raise op_error("embedding", f"index {bad} is out of range for an embedding with {rows} rows",
                           where, kind=IndexError)
    out = weight[input]
    if padding_idx is not None:
        padding_idx = padding_idx + rows if padding_idx < 0 else padding_idx
        out = tensor_ops.where((input == padding_idx).unsqueeze(-1), out.detach(), out)
    return _tagged(out, "EmbeddingBackward0")


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape (*tensor.shape, num_classes) with 1 at each index."""
    where = user_location()
    if tensor.dtype is not dtypes.int64:
        raise op_error("one_hot", "one_hot is only applicable to index tensor of type LongTensor.", where,
                       kind=TypeError)
    realized = tensor._storage.is_realized
    if num_classes == -1:
        num_classes = int(tensor.max().item()) + 1 if tensor.numel() else 0
    elif realized and tensor.numel():
        values = np.asarray(tensor._value())
        if values.min() < 0:
            raise op_error("one_hot", "Class values must be non-negative.", where, kind=IndexError)
        if values.max() >= num_classes:
            raise op_error("one_hot", "Class values must be smaller than num_classes.", where, kind=IndexError)
    from graphc.creation import arange
    return (tensor.unsqueeze(-1) == arange(num_classes, device=tensor.device)).long()


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad)//2 dims: pad = (left, right, top, bottom, ...), from the last dim.

    Negative amounts crop. Modes: 'constant', 'reflect', 'replicate', 'circular'.
    """
    where = user_location()
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise op_error("pad", f"Padding length must be divisible by 2 and at most twice the number of "
                              f"dims ({input.ndim}), got {len(pad)}", where, kind=ValueError)
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode == "constant":
        result = input
        if any(lo < 0 or hi < 0 for lo, hi in widths):
            index = tuple(slice(max(-lo, 0), size - max(-hi, 0)) for (lo, hi), size in zip(widths, input.shape))
            result = result[index]
            widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        if not any(lo or hi for lo, hi in widths):
            return result if result is not input else input.clone()
        fill = 0.0 if value is None else value
        return wrap(node("pad", [result._node], where, pads=tuple(widths), value=fill),
                    "ConstantPadNdBackward0", [input])
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported")
    from graphc.creation import tensor
    result = input
    for axis, (lo, hi) in enumerate(widths):
        if not lo and not hi:
            continue
        size = input.shape[axis]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise op_error("pad", f"Padding size should be less than the corresponding input dimension, "
                                  f"but got: padding ({lo}, {hi}) at dimension {axis} of input "
                                  f"{list(input.shape)}", where, kind=ValueError)
        positions = []
        for i in range(-lo, size + hi):
            if mode == "replicate":
                positions.append(min(max(i, 0), size - 1))
            elif mode == "circular":
                positions.append(i % size)
            else:
                period = 2 * (size - 1)
                j = abs(i) % period if period else 0
                positions.append(j if j < size else period - j)
        index = (slice(None),) * axis + (tensor(positions, dtype=dtypes.int64),)
        result = result[index]
    return _tagged(result, {"reflect": "ReflectionPad2DBackward0", "replicate": "ReplicationPad2DBackward0",
                            "circular": "IndexBackward0"}[mode])


# ---- losses -----------------------------------------------------------------------------------
def _check_same_size(op, input, target, where):
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_same_size("mse_loss", input, target, where)
    diff = input - target
    loss = diff * diff
    if weight is not None:
        loss = loss * weight
    return _tagged(_reduce(loss, reduction), "MseLossBackward0")


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_same_size("l1_loss", input, target, where)
    loss = (input - target).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    diff = (input - target).abs()
    if beta == 0.0:
        loss = diff
    else:
        loss = tensor_ops.where(diff < beta, diff * diff * (0.5 / beta), diff - 0.5 * beta)
    return _tagged(_reduce(loss, reduction), "SmoothL1LossBackward0")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    _check_reduction(reduction)
    diff = (input - target).abs()
    loss = tensor_ops.where(diff < delta, diff * diff * 0.5, (diff - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _tagged(_reduce(loss, reduction), "HuberLossBackward0")


def _class_target(op, input, target, where, ignore_index=None):
    """Validate class-index targets: dtype, shape, and (when known) range."""
    _check_tensor(target, op, "target")
    if target.dtype.category != dtypes.INTEGER:
        raise op_error(op, f"expected target to hold class indices (an int64 tensor), but got a "
                           f"{target.dtype.name} tensor of shape {list(target.shape)}", where,
                       hint="labels must be integers: pass target.long(); class probabilities must "
                            f"have the input's shape {list(input.shape)}", kind=TypeError)
    if input.ndim == 1:
        expected = ()
    else:
        expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        shapes = f"input shape {list(input.shape)}, target shape {list(target.shape)}"
        if input.ndim >= 2 and target.ndim >= 1 and target.shape[0] != input.shape[0]:
            message = (f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                       f"({target.shape[0]}); {shapes}")
        else:
            message = f"expected class-index target of shape {list(expected)}; {shapes}"
        hint = None
        if tuple(target.shape) == tuple(input.shape):   # integer one-hot labels
            hint = ("one-hot labels? pass the class indices, target.argmax(dim=1), or class probabilities "
                    "as a floating-point tensor, target.float()")
        raise op_error(op, message, where, hint=hint, kind=ShapeError)
    classes = input.shape[0 if input.ndim == 1 else 1]
    if target._storage.is_realized and target.numel():
        values = np.asarray(target._value())
        if ignore_index is not None:
            values = values[values != ignore_index]
        if values.size and (values.min() < 0 or values.max() >= classes):
            bad = values[(values < 0) | (values >= classes)].flat[0]
            raise op_error(op, f"Target {bad} is out of bounds: the input has {classes} classes "
                               f"(valid targets are 0..{classes - 1})", where, kind=IndexError)
    return classes


def _nll(op, input, target, weight, ignore_index, reduction, where):
    """Negative log-likelihood of log-probabilities `input` at class indices `target`."""
    classes = _class_target(op, input, target, where, ignore_index)
    _check_float(input, op, where)
    if weight is not None and tuple(weight.shape) != (classes,):
        raise op_error(op, f"weight tensor should be defined either for all {classes} classes or no "
                           f"classes but got weight tensor of shape: {list(weight.shape)}", where,
                       kind=ShapeError)
    unbatched = input.ndim == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    checked = target._storage.is_realized  # then _class_target has checked every label
    target = target.long()
    valid = target != ignore_index
    if checked:
        safe = tensor_ops.where(valid, target, 0)
    else:
        # labels computed in the graph: keep the gather in bounds, and make a bad label's loss NaN
        inside = (target >= 0).logical_and(target < classes)
        safe = tensor_ops.where(valid.logical_and(inside), target, 0)
    picked = _from_node(node("gather", [input._node, safe.unsqueeze(1)._node], where, axis=1)).squeeze(1)
    if not checked:
        picked = tensor_ops.where(valid.logical_and(inside.logical_not()), math.nan, picked)
    scale = valid.to(input.dtype)
    if weight is not None:
        scale = scale * weight.to(input.dtype)[safe]
    loss = -picked * scale
    if reduction == "none":
        result = loss.squeeze(0) if unbatched else loss
    elif reduction == "sum":
        result = loss.sum()
    else:
        result = loss.sum() / scale.sum()
    return _tagged(result, "NllLossBackward0"), valid, safe


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood: input holds log-probabilities (N, C) or (N, C, d1, ...)."""
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_tensor(input, "nll_loss")
    return _nll("nll_loss", input, target, weight, ignore_index, reduction, where)[0]


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """log_softmax over the class dim (1), then the negative log-likelihood of the target.

    target: class indices (int64, shape (N,) or (N, d1, ...)) or class probabilities (float,
    the input's shape).
    """
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_tensor(input, "cross_entropy")
    _check_tensor(target, "cross_entropy", "target")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    _check_float(input, "cross_entropy", where)
    class_dim = 0 if input.ndim == 1 else 1
    classes = input.shape[class_dim]
    logp = tensor_ops.log_softmax(input, class_dim)
    if target.dtype.is_floating_point and tuple(target.shape) == tuple(input.shape):
        # class probabilities
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        terms = logp * target
        if weight is not None:
            terms = terms * weight.view((classes,) + (1,) * (input.ndim - class_dim - 1))
        loss = -terms.sum(class_dim)
        if reduction == "mean":
            return loss.sum() / (input.numel() // classes) if input.ndim > 1 else loss
        return _reduce(loss, reduction)
    nll, valid, safe = _nll("cross_entropy", logp, target, weight, ignore_index, reduction, where)
    if label_smoothing <= 0:
        return nll
    if input.ndim == 1:
        logp_b, valid_b, safe_b = logp.unsqueeze(0), valid, safe
    else:
        logp_b, valid_b, safe_b = logp, valid, safe
    if weight is not None:
        weighted = logp_b * weight.to(logp.dtype).view((classes,) + (1,) * (logp_b.ndim - 2))
    else:
        weighted = logp_b
    smooth = -weighted.sum(1) * valid_b.to(logp.dtype)
    if reduction == "none":
        smooth = smooth.squeeze(0) if input.ndim == 1 else smooth
    elif reduction == "sum":
        smooth = smooth.sum()
    else:
        denominator = weight.to(logp.dtype)[safe_b] * valid_b.to(logp.dtype) if weight is not None \
            else valid_b.to(logp.dtype)
        smooth = smooth.sum() / denominator.sum()
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 as in PyTorch."""
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise op_error("binary_cross_entropy", f"Using a target size ({target.shape}) that is different to "
                                               f"the input size ({input.shape}) is deprecated. Please ensure "
                                               "they have the same size.", where, kind=ShapeError)
    _check_float(input, "binary_cross_entropy", where)
    if not target.dtype.is_floating_point:
        raise op_error("binary_cross_entropy", f"expected a floating-point target, got {target.dtype.name}",
                       where, hint="convert the labels with target.float()", kind=TypeError)
    log_x = tensor_ops.clamp(input.log(), min=-100.0)
    log_1mx = tensor_ops.clamp((1.0 - input).log(), min=-100.0)
    loss = -(target * log_x + (1.0 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _tagged(_reduce(loss, reduction), "BinaryCrossEntropyBackward0")


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """sigmoid + binary cross entropy in one stable formula:
    (1 - t) x + (1 + (pos_weight - 1) t) (max(-x, 0) + log(1 + exp(-|x|)))."""
    where = user_location()
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise op_error("binary_cross_entropy_with_logits", f"Target size ({target.shape}) must be the same "
                                                           f"as input size ({input.shape})", where,
                       kind=ShapeError)
    _check_float(input, "binary_cross_entropy_with_logits", where)
    if not target.dtype.is_floating_point:
        raise op_error("binary_cross_entropy_with_logits", f"expected a floating-point target, got "
                                                           f"{target.dtype.name}", where,
                       hint="convert the labels with target.float()", kind=TypeError)
    softplus_neg = tensor_ops.maximum(-input, 0.0) + (-input.abs()).exp().add(1.0).log()
    if pos_weight is not None:
        loss = (1.0 - target) * input + ((pos_weight - 1.0) * target + 1.0) * softplus_neg
    else:
        loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * weight
    return _tagged(_reduce(loss, reduction), "BinaryCrossEntropyWithLogitsBackward0")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Pointwise target * (log target - input); input holds log-probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        safe = tensor_ops.where(target > 0, target, 1.0)
        loss = tensor_ops.where(target > 0, target * (safe.log() - input), 0.0)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    _check_reduction(reduction)
    return _reduce(loss, reduction)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    dot = (x1 * x2).sum(dim)
    n1 = (x1 * x1).sum(dim).sqrt()
    n2 = (x2 * x2).sum(dim).sqrt()
    return dot / tensor_ops.clamp(n1 * n2, min=eps)


__all__ = [name for name in dir() if not name.startswith("_") and name not in (
    "annotations", "math", "warnings", "np", "dtypes", "tensor_ops", "no_grad", "ShapeError", "op_error",
    "user_location", "Tensor", "node", "wrap", "wrap_name")]


# F.relu([t]) raises PyTorch's TypeError naming the argument (every public function here that
# takes a tensor first)
tensor_ops.tensor_functions(globals(), [name for name, value in list(globals().items())
                                        if not name.startswith("_") and callable(value)
                                        and getattr(value, "__module__", None) == __name__])
