"""nn layers: forward against NumPy float64 references on fresh random inputs, and gradients
(inputs and parameters) against central finite differences in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from nn_testing import check_grads, reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")


def tensor(a, dtype=None):
    return graphc.tensor(np.asarray(a), dtype=dtype)


def assert_close(got, expected, rtol=1e-5, atol=1e-6):
    got = got.detach().numpy() if isinstance(got, graphc.Tensor) else np.asarray(got)
    assert got.shape == np.shape(expected), (got.shape, np.shape(expected))
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=atol)


def params(module, dtype=np.float64):
    return {name: p.detach().numpy().astype(dtype) for name, p in module.named_parameters()}


# ---- NumPy references --------------------------------------------------------------------------
def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, c, h, width = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def pool_out(size, k, s, p, d, ceil):
    out = (size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def np_max_pool(x, k, s, p, d=(1, 1), ceil=False):
    n, c, h, w = x.shape
    oh, ow = pool_out(h, k[0], s[0], p[0], d[0], ceil), pool_out(w, k[1], s[1], p[1], d[1], ceil)
    out = np.full((n, c, oh, ow), -np.inf)
    index = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            for a in range(k[0]):
                for b in range(k[1]):
                    r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1]
                    if 0 <= r < h and 0 <= q < w:
                        value = x[:, :, r, q]
                        better = value > out[:, :, i, j]
                        out[:, :, i, j] = np.where(better, value, out[:, :, i, j])
                        index[:, :, i, j] = np.where(better, r * w + q, index[:, :, i, j])
    return out, index


def np_avg_pool(x, k, s, p, ceil=False, count_include_pad=True, divisor_override=None):
    """PyTorch's CPU kernel: the divisor counts the window clipped to the padded input."""
    n, c, h, w = x.shape
    oh, ow = pool_out(h, k[0], s[0], p[0], 1, ceil), pool_out(w, k[1], s[1], p[1], 1, ceil)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            total = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3))
            divisor = divisor_override or (pool_size if count_include_pad else (h1 - h0) * (w1 - w0))
            out[:, :, i, j] = total / divisor
    return out


def np_adaptive_avg(x, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


# ---- Linear ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (3,)])
def test_linear_forward(rng, dtype, shape):
    layer = nn.Linear(3, 4).to(getattr(graphc, dtype))
    x = rng.standard_normal(shape)
    p = params(layer)
    expected = x @ p["weight"].T + p["bias"]
    out = layer(tensor(x.astype(dtype)))
    assert out.dtype is getattr(graphc, dtype)
    assert_close(out, expected, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_linear_without_bias_and_grads(rng):
    layer = nn.Linear(4, 2, bias=False)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    check_grads(layer, [rng.standard_normal((3, 4))], rng, module=layer)
    layer = nn.Linear(3, 2)
    check_grads(layer, [rng.standard_normal((2, 5, 3))], rng, module=layer)


def test_linear_default_init_is_pytorchs_kaiming_uniform():
    graphc.manual_seed(0)
    layer = nn.Linear(50, 40)
    bound = 1 / math.sqrt(50)  # kaiming_uniform_(a=sqrt(5)) gives 1/sqrt(fan_in), as does the bias
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # uniform(-a, a) has std a/sqrt(3)
    assert np.abs(w).max() > 0.9 * bound
    graphc.manual_seed(0)
    again = nn.Linear(50, 40)
    np.testing.assert_array_equal(again.weight.detach().numpy(), w)
    assert not np.array_equal(nn.Linear(50, 40).weight.detach().numpy(), w)


# ---- Conv2d ----------------------------------------------------------------------------------
CONV_CASES = [
    dict(cin=3, cout=4, k=(3, 3)),
    dict(cin=2, cout=3, k=(2, 3), stride=2, padding=1),
    dict(cin=4, cout=6, k=(3, 3), padding=(2, 1), dilation=(2, 1), groups=2),
    dict(cin=3, cout=2, k=(3, 3), stride=(1, 2), bias=False),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_forward(rng, case):
    case = dict(case)
    cin, cout, k = case.pop("cin"), case.pop("cout"), case.pop("k")
    layer = nn.Conv2d(cin, cout, k, **case).double()
    x = rng.standard_normal((2, cin, 7, 6))
    p = params(layer)
    expected = np_conv2d(x, p["weight"], p.get("bias"), layer.stride, layer.padding, layer.dilation,
                         layer.groups)
    assert_close(layer(tensor(x)), expected, rtol=1e-10, atol=1e-12)
    # float32 and unbatched (C, H, W) input
    layer32 = layer.float()
    assert_close(layer32(tensor(x[0].astype(np.float32))), expected[0], rtol=1e-4, atol=1e-5)


def test_conv2d_same_padding(rng):
    for k, d in [((3, 3), 1), ((2, 4), 1), ((3, 2), 2)]:
        layer = nn.Conv2d(2, 3, k, padding="same", dilation=d).double()
        x = rng.standard_normal((1, 2, 5, 6))
        out = layer(tensor(x))
        assert out.shape == (1, 3, 5, 6)
        # 'same' pads total d*(k-1), the extra one at the bottom/right
        p = params(layer)
        totals = [d * (kk - 1) for kk in k]
        padded = np.pad(x, ((0, 0), (0, 0), (totals[0] // 2, totals[0] - totals[0] // 2),
                            (totals[1] // 2, totals[1] - totals[1] // 2)))
        assert_close(out, np_conv2d(padded, p["weight"], p["bias"], dilation=(d, d)), rtol=1e-10, atol=1e-12)


def test_conv2d_grads(rng):
    layer = nn.Conv2d(4, 2, 3, stride=2, padding=1, dilation=(1, 2), groups=2)
    check_grads(layer, [rng.standard_normal((2, 4, 5, 6))], rng, module=layer)
    layer = nn.Conv2d(1, 2, (2, 3), padding="same")
    check_grads(layer, [rng.standard_normal((1, 1, 4, 5))], rng, module=layer)


def test_conv2d_default_init_bounds():
    layer = nn.Conv2d(3, 8, 5)
    bound = 1 / math.sqrt(3 * 5 * 5)
    assert np.abs(layer.weight.detach().numpy()).max() <= bound
    assert np.abs(layer.bias.detach().numpy()).max() <= bound


def test_conv2d_errors_name_the_op_and_line(rng):
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(graphc.errors.ShapeError, match=r"conv2d: Given groups=1, weight of size \[4, 3, 3, 3\], "
                                                        r"expected input\[1, 2, 5, 5\] to have 3 channels") as info:
        layer(graphc.zeros(1, 2, 5, 5))
    assert "test_nn_layers.py" in str(info.value)
    with pytest.raises(TypeError, match=r"conv2d: Input type \(float64\) and weight type \(float32\)"):
        layer(graphc.zeros(1, 3, 5, 5, dtype=graphc.float64))
    with pytest.raises(graphc.errors.ShapeError, match="Kernel size can't be greater than actual input size"):
        layer(graphc.zeros(1, 3, 2, 2))


# ---- pooling ---------------------------------------------------------------------------------
POOL_CASES = [
    dict(k=(2, 2), s=(2, 2), p=(0, 0)),
    dict(k=(3, 3), s=(2, 2), p=(1, 1)),
    dict(k=(3, 2), s=(1, 2), p=(1, 0)),
    dict(k=(2, 2), s=(2, 2), p=(0, 0), ceil=True),
    dict(k=(3, 3), s=(2, 2), p=(1, 1), ceil=True),
]


@pytest.mark.parametrize("case", POOL_CASES + [dict(k=(2, 3), s=(2, 1), p=(1, 1), d=(2, 1), ceil=True)], ids=str)
def test_max_pool2d(rng, case):
    k, s, p, d, ceil = case["k"], case["s"], case["p"], case.get("d", (1, 1)), case.get("ceil", False)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil)
    expected, index = np_max_pool(x, k, s, p, d, ceil)
    assert_close(layer(tensor(x)), expected, rtol=0, atol=0)
    values, indices = F.max_pool2d(tensor(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), index)
    assert_close(F.max_pool2d(tensor(x[0]), k, s, p, d, ceil_mode=ceil), expected[0], rtol=0, atol=0)
    check_grads(lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil), [x[:1, :1]], rng)


def test_max_pool2d_gradient_goes_to_the_first_maximum():
    x = graphc.tensor([[[[1.0, 3.0], [3.0, 0.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[0.0, 1.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("case", POOL_CASES + [dict(k=(3, 3), s=(2, 2), p=(1, 1), ceil=True, exclude=True),
                                               dict(k=(3, 3), s=(2, 2), p=(1, 1), exclude=True),
                                               dict(k=(2, 2), s=(1, 1), p=(1, 1), divisor=3)], ids=str)
def test_avg_pool2d(rng, case):
    k, s, p, ceil = case["k"], case["s"], case["p"], case.get("ceil", False)
    include, divisor = not case.get("exclude", False), case.get("divisor")
    x = rng.standard_normal((2, 3, 7, 6))
    layer = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include, divisor_override=divisor)
    expected = np_avg_pool(x, k, s, p, ceil, include, divisor)
    assert_close(layer(tensor(x)), expected, rtol=1e-12, atol=1e-12)
    check_grads(layer, [x[:1, :1]], rng)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (7, 3), (4, 5), (None, 2)])
def test_adaptive_avg_pool2d(rng, size):
    x = rng.standard_normal((2, 3, 7, 6))
    out = nn.AdaptiveAvgPool2d(size)(tensor(x))
    oh, ow = (7 if size[0] is None else size[0]), size[1]
    assert_close(out, np_adaptive_avg(x, oh, ow), rtol=1e-12, atol=1e-12)
    check_grads(lambda t: F.adaptive_avg_pool2d(t, size), [x[:1, :1]], rng)


def test_pool_errors():
    with pytest.raises(ValueError, match="pad should be at most half of effective kernel size"):
        F.max_pool2d(graphc.zeros(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(graphc.errors.ShapeError, match="Output size is too small"):
        F.avg_pool2d(graphc.zeros(1, 1, 2, 2), 3)


# ---- normalization ---------------------------------------------------------------------------
def np_batch_norm_train(x, weight, bias, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * weight.reshape(shape) + bias.reshape(shape), mean, x.var(axis=axes, ddof=1)


@pytest.mark.parametrize("kind,shape", [("1d", (6, 4)), ("1d", (3, 4, 5)), ("2d", (3, 4, 3, 2))])
def test_batch_norm_statistics_and_modes(rng, kind, shape):
    layer = (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(4, momentum=0.3).double()
    with graphc.no_grad():
        layer.weight.copy_(tensor(rng.uniform(0.5, 2, 4)))
        layer.bias.copy_(tensor(rng.standard_normal(4)))
    running_mean, running_var = np.zeros(4), np.ones(4)
    p = params(layer)
    for _ in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        expected, mean, unbiased = np_batch_norm_train(x, p["weight"], p["bias"], 1e-5)
        assert_close(layer(tensor(x)), expected, rtol=1e-10, atol=1e-10)
        running_mean = 0.7 * running_mean + 0.3 * mean
        running_var = 0.7 * running_var + 0.3 * unbiased
    assert_close(layer.running_mean, running_mean, rtol=1e-12)
    assert_close(layer.running_var, running_var, rtol=1e-12)
    assert layer.num_batches_tracked.item() == 3 and layer.num_batches_tracked.dtype is graphc.int64
    layer.eval()
    x = rng.standard_normal(shape)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    expected = ((x - running_mean.reshape(bshape)) / np.sqrt(running_var.reshape(bshape) + 1e-5)
                * p["weight"].reshape(bshape) + p["bias"].reshape(bshape))
    assert_close(layer(tensor(x)), expected, rtol=1e-10, atol=1e-10)
    assert layer.num_batches_tracked.item() == 3


def test_batch_norm_cumulative_average_and_no_tracking(rng):
    layer = nn.BatchNorm1d(3, momentum=None).double()
    batches = [rng.standard_normal((5, 3)) for _ in range(3)]
    for x in batches:
        layer(tensor(x))
    assert_close(layer.running_mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-12)
    untracked = nn.BatchNorm1d(3, track_running_stats=False, affine=False)
    assert untracked.running_mean is None and list(untracked.parameters()) == []
    x = rng.standard_normal((4, 3))
    assert_close(untracked.eval()(tensor(x)), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-5)


def test_batch_norm_grads(rng):
    layer = nn.BatchNorm2d(3)
    with graphc.no_grad():
        layer.weight.copy_(tensor(rng.uniform(0.5, 2, 3).astype(np.float32)))
    check_grads(layer, [rng.standard_normal((2, 3, 2, 2))], rng, module=layer)
    layer = nn.BatchNorm1d(2).eval()
    check_grads(layer, [rng.standard_normal((3, 2))], rng, module=layer)


def test_batch_norm_errors():
    with pytest.raises(graphc.errors.ShapeError, match=r"BatchNorm2d: expected 4D input \(got 2D input\)"):
        nn.BatchNorm2d(3)(graphc.zeros(2, 3))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(graphc.zeros(1, 3))


@pytest.mark.parametrize("normalized", [(4,), (3, 4)])
def test_layer_norm(rng, normalized):
    layer = nn.LayerNorm(normalized).double()
    with graphc.no_grad():
        layer.weight.copy_(tensor(rng.standard_normal(normalized)))
        layer.bias.copy_(tensor(rng.standard_normal(normalized)))
    x = rng.standard_normal((2, 3, 4)) * 3
    axes = tuple(range(3 - len(normalized), 3))
    p = params(layer)
    expected = ((x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
                * p["weight"] + p["bias"])
    assert_close(layer(tensor(x)), expected, rtol=1e-10, atol=1e-10)
    check_grads(layer, [x[:1]], rng, module=layer)
    with pytest.raises(graphc.errors.ShapeError, match=r"expected input with shape \[\*, 5\]"):
        nn.LayerNorm(5)(graphc.zeros(2, 4))


# ---- dropout ---------------------------------------------------------------------------------
def test_dropout_train_and_eval(rng):
    layer = nn.Dropout(0.25)
    x = rng.uniform(1, 2, (200, 50))
    graphc.manual_seed(3)
    out = layer(tensor(x)).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-6)
    graphc.manual_seed(3)
    np.testing.assert_array_equal(layer(tensor(x)).numpy(), out)  # the same seed gives the same mask
    assert not np.array_equal(layer(tensor(x)).numpy(), out)       # the stream moves on
    layer.eval()
    assert_close(layer(tensor(x)), x, rtol=0, atol=0)
    assert_close(nn.Dropout(1.0)(tensor(x)), np.zeros_like(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_grads(rng):
    layer = nn.Dropout(0.5)
    check_grads(layer, [rng.standard_normal((4, 5))], rng, seed=11)


# ---- embedding -------------------------------------------------------------------------------
def test_embedding(rng):
    layer = nn.Embedding(10, 3, padding_idx=1).double()
    weight = layer.weight.detach().numpy()
    np.testing.assert_array_equal(weight[1], 0)
    index = rng.integers(0, 10, (2, 4))
    index[0, 0] = 1
    out = layer(graphc.tensor(index))
    assert_close(out, weight[index], rtol=0, atol=0)
    weights = rng.standard_normal((2, 4, 3))
    (out * tensor(weights)).sum().backward()
    expected = np.zeros((10, 3))
    np.add.at(expected, index, weights)
    expected[1] = 0  # the padding row gets no gradient
    assert_close(layer.weight.grad, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(IndexError, match="embedding: index 10 is out of range for an embedding with 10 rows"):
        layer(graphc.tensor([3, 10]))
    with pytest.raises(TypeError, match="embedding: .*indices"):
        layer(graphc.tensor([1.0]))


# ---- activations -----------------------------------------------------------------------------
def np_erf(x):
    return np.vectorize(math.erf)(x)


ACTIVATIONS = {
    "ReLU": (nn.ReLU(), lambda x: np.maximum(x, 0)),
    "LeakyReLU": (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "Sigmoid": (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "Tanh": (nn.Tanh(), np.tanh),
    "GELU": (nn.GELU(), lambda x: 0.5 * x * (1 + np_erf(x / math.sqrt(2)))),
    "GELU-tanh": (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "Softmax": (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    "LogSoftmax": (nn.LogSoftmax(dim=-1), lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
    "ELU": (nn.ELU(), lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    "SiLU": (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    "Softplus": (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    "Hardtanh": (nn.Hardtanh(), lambda x: np.clip(x, -1, 1)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(rng, name):
    module, reference = ACTIVATIONS[name]
    x = rng.standard_normal((3, 4)) * 3
    assert_close(module(tensor(x)), reference(x), rtol=1e-12, atol=1e-12)
    assert_close(module(tensor(x.astype(np.float32))), reference(x), rtol=1e-5, atol=1e-6)
    # keep finite differences away from the kinks at 0 and +-1
    x = np.where((np.abs(x) < 1e-3) | (np.abs(np.abs(x) - 1) < 1e-3), 0.5, x)
    check_grads(module, [x], rng)


def test_activation_grad_fn_names(rng):
    x = graphc.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    names = {"ReLU": "ReluBackward0", "LeakyReLU": "LeakyReluBackward0", "Sigmoid": "SigmoidBackward0",
             "Tanh": "TanhBackward0", "GELU": "GeluBackward0", "Softmax": "SoftmaxBackward0",
             "LogSoftmax": "LogSoftmaxBackward0"}
    for name, expected in names.items():
        assert ACTIVATIONS[name][0](x).grad_fn.name() == expected
    assert nn.Linear(3, 2).double()(x).grad_fn.name() == "AddmmBackward0"
    assert nn.Conv2d(1, 1, 1).double()(x.view(1, 1, 2, 3)).grad_fn.name() == "ConvolutionBackward0"
    assert F.max_pool2d(x.view(1, 1, 2, 3), 2).grad_fn.name() == "MaxPool2DWithIndicesBackward0"
    assert F.batch_norm(x, None, None, training=True).grad_fn.name() == "NativeBatchNormBackward0"
    assert F.layer_norm(x, (3,)).grad_fn.name() == "NativeLayerNormBackward0"


def test_inplace_relu_and_flatten(rng):
    x = rng.standard_normal((2, 3, 2))
    t = tensor(x)
    out = nn.ReLU(inplace=True)(t)
    assert out is t
    assert_close(t, np.maximum(x, 0), rtol=0, atol=0)
    assert nn.Flatten()(tensor(x)).shape == (2, 6)
    assert nn.Flatten(0, 1)(tensor(x)).shape == (6, 2)
    assert nn.Unflatten(1, (3, 1))(tensor(x)).shape == (2, 3, 1, 2)
    t = tensor(x)
    assert nn.Identity(54, unused=True)(t) is t


def test_functional_forms(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    assert_close(F.relu(tensor(x)), np.maximum(x, 0), rtol=0, atol=0)
    assert_close(F.pad(tensor(x), (1, 2)), np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 2))), rtol=0, atol=0)
    assert_close(F.pad(tensor(x), (1, 0, 0, 2), value=3.0),
                 np.pad(x, ((0, 0), (0, 0), (0, 2), (1, 0)), constant_values=3.0), rtol=0, atol=0)
    assert_close(F.pad(tensor(x), (1, 1, 2, 0), mode="reflect"),
                 np.pad(x, ((0, 0), (0, 0), (2, 0), (1, 1)), mode="reflect"), rtol=0, atol=0)
    assert_close(F.pad(tensor(x), (2, 1), mode="replicate"),
                 np.pad(x, ((0, 0), (0, 0), (0, 0), (2, 1)), mode="edge"), rtol=0, atol=0)
    labels = rng.integers(0, 5, 6)
    hot = F.one_hot(graphc.tensor(labels), 5)
    assert hot.dtype is graphc.int64
    np.testing.assert_array_equal(hot.numpy(), np.eye(5, dtype=np.int64)[labels])
    assert F.one_hot(graphc.tensor([0, 3])).shape == (2, 4)
    with pytest.raises(IndexError, match="one_hot: Class values must be smaller than num_classes"):
        F.one_hot(graphc.tensor([0, 5]), 3)
    w, b = rng.standard_normal((2, 4)), rng.standard_normal(2)
    assert_close(F.linear(tensor(x), tensor(w), tensor(b)), x @ w.T + b, rtol=1e-12)
    assert_close(F.conv2d(tensor(x), tensor(w.reshape(2, 1, 2, 2).repeat(3, 1)), padding=1),
                 np_conv2d(x, w.reshape(2, 1, 2, 2).repeat(3, 1), padding=(1, 1)), rtol=1e-12)
    assert_close(F.softmax(tensor(x), dim=1), np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-12)
    assert_close(F.sigmoid(tensor(x)), 1 / (1 + np.exp(-x)), rtol=1e-12)
    assert_close(F.tanh(tensor(x)), np.tanh(x), rtol=1e-12)
    assert_close(F.dropout(tensor(x), 0.5, training=False), x, rtol=0, atol=0)
    emb = rng.standard_normal((5, 2))
    assert_close(F.embedding(graphc.tensor(labels), tensor(emb)), emb[labels], rtol=0, atol=0)
