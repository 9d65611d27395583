"""A corpus of graphs covering every kernel kind the lowering produces, for the CUDA backend's
checks: elementwise, broadcast, views, reductions, row kernels, matmul, convolution, pooling,
gather/scatter_add, random numbers, casts and integer ops, and whole train steps.

Each entry builds a `Graph` (traced, not run). Entries named `grad:...` are the forward graph with
the gradient of its scalar result with respect to every floating input added as outputs, so the
backward kernels (col2im, scatter_add, pooling's backward) are in the corpus too.
"""
from __future__ import annotations

import graphc
from graphc import nn, optim
from graphc.passes.autodiff import backward_graph
from models import LeNet, train_step

F = nn.functional


def _forward(function, *shapes, dtype=graphc.float32):
    tensors = [graphc.randn(*shape, dtype=dtype) for shape in shapes]
    return graphc.trace(function, *tensors)


def _with_grads(function, *shapes, dtype=graphc.float32):
    graph = _forward(function, *shapes, dtype=dtype)
    full, _ = backward_graph(graph, graph.outputs[0])
    return full


def _integer_ops(a, b):
    i = (a * 10).to(graphc.int64)
    j = (b * 10).to(graphc.int64).abs() + 1
    k = (i // j) + (i % j) * 3 - (i * j).sum(1, keepdim=True)
    small = i.to(graphc.int32)
    flags = (i > j) & ~(i == 0) | (small < 2)
    return k.max(1).values.to(graphc.float32).sum() + flags.to(graphc.float32).mean() + \
        graphc.where(flags, a, b).floor().sum() + (a.abs() ** 2.5).sum() + (i ** 2).sum().to(graphc.float32)


def _float64_ops(a, b):
    return ((a.double().exp() - b.double().sin()).tanh() * a.double().sigmoid()).sum().float()


def _views(a, b):
    t = a.reshape(4, 3, 8).permute(2, 0, 1)[1:7:2, :, 1:]
    u = graphc.cat([t, t * 2], dim=2)
    v = F.pad(b, (1, 2, 0, 1), value=0.5)
    return u.sum() + v.sum() + a.t()[3:5].sum()


def _gather_scatter(a, b):
    """Advanced indexing and max(dim) gather; their gradients scatter_add (repeated rows add up)."""
    rows = a[graphc.tensor([0, 2, 2, 3])]
    values, _ = b.max(1)
    return (rows * rows).sum() + (values * values).sum()


def _dropout_rand(a, b):
    return F.dropout(a, 0.3, training=True).sum() + (graphc.rand(5, 7) * b[:5, :7]).sum()


def mlp_train_step():
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
    step = train_step(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    return graphc.trace(step, graphc.randn(16, 20), graphc.randint(0, 5, (16,)))


def lenet_train_step():
    graphc.manual_seed(0)
    model = LeNet()
    step = train_step(model, optim.Adam(model.parameters(), lr=0.01))
    return graphc.trace(step, graphc.randn(4, 1, 32, 32), graphc.randint(0, 10, (4,)))


# name -> a function building the graph
CORPUS = {
    "elementwise": lambda: _forward(lambda a, b: (a * 2 + b).exp() / (1 + b.abs()).sqrt() - a.tanh(),
                                    (6, 8), (6, 8)),
    "broadcast": lambda: _forward(lambda a, b: a + b[0] * a.mean(), (6, 8), (1, 8)),
    "views": lambda: _forward(_views, (12, 8), (5, 6)),
    "reduce_each_axis": lambda: _forward(
        lambda a: a.sum(0).sum() + a.amax(1).sum() + a.sum(2, keepdim=True).mean() + a.prod(2).sum(),
        (5, 40, 7)),
    "reduce_all": lambda: _forward(lambda a: a.sum() + a.amax() + a.mean(), (50, 60)),
    "reduce_keepdim_multi_axis": lambda: _forward(lambda a: a - a.mean((1, 2), keepdim=True), (3, 9, 11)),
    "softmax": lambda: _forward(lambda a: a.softmax(-1) + a.log_softmax(0), (16, 300)),
    "softmax_small_rows": lambda: _forward(lambda a: a.softmax(1), (32, 6)),
    "matmul_epilogue": lambda: _forward(lambda a, w, b: F.relu(a @ w + b), (8, 24), (24, 16), (16,)),
    "matmul_batched_transposed": lambda: _forward(
        lambda a, b: (a @ b.transpose(1, 2)).sum(0).sum() + (a.transpose(1, 2)[0] @ a[1]).sum(), (3, 7, 5), (3, 9, 5)),
    "matmul_float64": lambda: _forward(lambda a, b: a @ b, (5, 6), (6, 3), dtype=graphc.float64),
    "matmul_int": lambda: _forward(lambda a, b: (a * 4).long() @ (b * 4).long(), (5, 6), (6, 3)),
    "float64_ops": lambda: _forward(_float64_ops, (7, 9), (7, 9)),
    "grad:conv2d": lambda: _with_grads(
        lambda x, w: F.conv2d(x, w, padding=1, stride=2).tanh().sum(), (2, 3, 9, 9), (4, 3, 3, 3)),
    "grad:conv2d_groups_dilation": lambda: _with_grads(
        lambda x, w: (F.conv2d(x, w, padding=2, dilation=2, groups=2) ** 2).sum(), (2, 4, 8, 8), (6, 2, 3, 3)),
    "grad:max_pool2d": lambda: _with_grads(lambda x: (F.max_pool2d(x, 2) ** 2).sum(), (2, 3, 8, 8)),
    "grad:max_pool2d_overlap": lambda: _with_grads(
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1).sum(), (2, 2, 9, 9)),
    "grad:avg_pool2d": lambda: _with_grads(lambda x: (F.avg_pool2d(x, 3, stride=2) ** 2).sum(), (2, 3, 9, 9)),
    "grad:gather_scatter_add": lambda: _with_grads(_gather_scatter, (4, 6), (4, 6)),
    "grad:cross_entropy": lambda: _with_grads(
        lambda a: F.cross_entropy(a, graphc.tensor([0, 3, 1, 2, 4])), (5, 5)),
    "dropout_rand": lambda: _forward(_dropout_rand, (9, 10), (9, 10)),
    "casts_and_integer_ops": lambda: _forward(_integer_ops, (6, 5), (6, 5)),
    "mlp_train_step": mlp_train_step,
    "lenet_train_step": lenet_train_step,
}
