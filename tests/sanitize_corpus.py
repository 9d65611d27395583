"""A corpus of every kernel kind the C backend generates, for running under ASan and UBSan.

Run by tests/test_sanitize.py in a child process started with the ASan runtime preloaded and
GRAPHC_SANITIZE=1 (Python itself is not built with ASan, so a sanitized library only loads into a
process that has the runtime from its start). Each case builds several ops into one graph (a
sanitized compile costs seconds), at odd sizes (1, 7, 129) and on non-contiguous inputs, runs it
compiled and on the reference interpreter, and compares. A memory error or undefined behaviour
stops the process with a sanitizer report; a wrong number raises. The last line printed is
``corpus ok: N cases, M compared arrays``.

    LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        GRAPHC_SANITIZE=1 python tests/sanitize_corpus.py
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc  # noqa: E402
import graphc.nn.functional as F  # noqa: E402
from graphc import backend, interpreter, nn, optim  # noqa: E402
from graphc.backends.c import CompiledGraph  # noqa: E402
from graphc.schedule import build_graph  # noqa: E402
from models import train_step  # noqa: E402

RNG = np.random.default_rng(int(os.environ.get("GRAPHC_TEST_SEED", "0")))
CASES: list = []
COMPARED = [0]


def case(function):
    CASES.append(function)
    return function


def leaf(*shape, grad=False, dtype=np.float32):
    """A fresh random tensor (requires_grad when asked)."""
    return graphc.tensor(RNG.standard_normal(shape).astype(dtype), requires_grad=grad)


def strided(*shape, grad=False):
    """A non-contiguous tensor: every other column of a wider array, transposed."""
    wide = RNG.standard_normal((shape[-1], *shape[:-1][::-1], 2)).astype(np.float32)
    base = graphc.from_numpy(wide)[..., 0]  # a view with a step of 2 elements
    dims = list(range(base.ndim))[::-1]
    view = base.permute(*dims)
    if grad:
        view = view.detach().requires_grad_(True)  # still the strided storage underneath
    return view


def compare(name: str, outputs: list, wrt: list = (), *, rtol=2e-4) -> None:
    """Compile the graph of `outputs` (plus gradients of their sum w.r.t. `wrt`) and compare it
    with the reference interpreter on the same bindings."""
    nodes = [t._node for t in outputs]
    if wrt:
        loss = sum((t.float() * leaf(*t.shape)).sum() for t in outputs if t.is_floating_point())
        grads = graphc.autograd.grad(loss, list(wrt), allow_unused=True)
        nodes += [g._node for g in grads if g is not None]
    gathered = build_graph(nodes)
    started = time.perf_counter()
    got = CompiledGraph(gathered.graph)(gathered.bindings)
    seconds = time.perf_counter() - started
    want = interpreter.evaluate(gathered.graph, gathered.bindings)
    for index, (a, b) in enumerate(zip(got, want)):
        b = np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (name, index, a.shape, b.shape, a.dtype, b.dtype)
        if b.dtype.kind in "fc":
            scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"{name} output {index}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{name} output {index}")
        COMPARED[0] += 1
    print(f"  {name}: {len(got)} arrays, {seconds:.2f} s", flush=True)


@case
def pointwise_broadcasting():
    outs, wrt = [], []
    for n in (1, 7, 129):
        a, b, c = leaf(n, 1, 3, grad=True), strided(5, n), leaf(3, grad=True)
        wrt += [a, c]
        y = ((a * 2.0 - b.t().sum(1, keepdim=True).unsqueeze(-1)).tanh() * c).exp().sqrt()
        z = graphc.where(y > 1.1, y.sigmoid(), (-y).abs() + c.reciprocal() * 0.01)
        outs += [y, z, (a.abs() + 1).log() * a.sign(), graphc.maximum(a, c) - graphc.minimum(a, c)]
    compare("pointwise chains with broadcasting", outs, wrt)


@case
def views():
    outs, wrt = [], []
    for n in (1, 7, 129):
        x = leaf(3, n, 4, grad=True)
        t = strided(4, n)
        wrt.append(x)
        outs += [
            x.permute(2, 0, 1) * 1.5,
            x[:, ::2, 1:] + 1.0,
            x[1:, :, ::3] * 2.0,
            x[:, :1].expand(3, 5, 4) - 0.5,
            x.reshape(n, 12) * 3.0,
            F.pad(x, (1, 2, 0, 1)) + 0.25,
            graphc.cat([x, x * 2.0, t.t().unsqueeze(0).expand(3, n, 4)], dim=0) - 1.0,
            graphc.cat([x[:, :, :1], x], dim=2).sum(),
            t.t().contiguous() + t.t(),
        ]
    compare("views: permute, strided slice, expand, reshape, pad, cat", outs, wrt)


@case
def gather_and_scatter():
    outs, wrt = [], []
    for n in (1, 7, 129):
        weight = leaf(n + 3, 5, grad=True)
        table = leaf(6, n, grad=True)
        wrt += [weight, table]
        index = graphc.tensor(RNG.integers(0, n + 3, size=(4, n)))
        outs.append(F.embedding(index, weight) * 2.0)  # backward: scatter_add with repeats
        rows = graphc.tensor(RNG.integers(0, 6, size=(n,)))
        outs.append(table[rows] + 1.0)  # advanced indexing: gather
        labels = graphc.tensor(RNG.integers(0, n, size=(6,)))
        outs.append(F.cross_entropy(table, labels))  # gather inside a loss
    compare("gather, index, scatter_add", outs, wrt)


@case
def reductions():
    outs, wrt = [], []
    for n in (1, 7, 129):
        x = leaf(3, n, 5, grad=True)
        s = strided(n, 3)
        wrt.append(x)
        for axis in (0, 1, 2, None):
            for keep in (False, True):
                if axis is None:
                    outs += [x.sum(), x.amax(), (x * 0.1 + 1).prod()]
                    break
                outs += [x.sum(axis, keepdim=keep), x.amax(axis, keepdim=keep),
                         (x * 0.1 + 1).prod(axis, keepdim=keep)]
        outs += [s.sum(0), s.amax(1, keepdim=True), x.mean((0, 2)), x.var(1)]
    compare("reductions sum/max/prod over each axis", outs, wrt)


@case
def softmaxes():
    outs, wrt = [], []
    for n in (1, 7, 129):
        x = leaf(4, n, grad=True)
        s = strided(n, 4)
        wrt.append(x)
        outs += [F.softmax(x, dim=1), F.log_softmax(x, dim=0), F.softmax(s, dim=0), x.log_softmax(-1) * 2.0]
    compare("softmax and log_softmax", outs, wrt)


@case
def matmuls():
    outs, wrt = [], []
    for n in (1, 7, 129):
        a, b, bias = leaf(n, 6, grad=True), leaf(6, 5, grad=True), leaf(5, grad=True)
        wrt += [a, b, bias]
        outs.append((a @ b + bias).relu())  # epilogue
        outs.append(strided(5, n).t() @ strided(5, 3) * 0.5)  # non-contiguous operands
        outs.append(a.t().t() @ b.t().t())
        batch_a, batch_b = leaf(3, n, 4, grad=True), leaf(3, 4, 2, grad=True)
        wrt += [batch_a, batch_b]
        outs.append(graphc.bmm(batch_a, batch_b).tanh())
        outs.append(batch_a.transpose(1, 2).transpose(1, 2) @ batch_b + 1.0)
        outs.append(batch_b.transpose(1, 2) @ batch_a.transpose(1, 2))  # transposed operands
    compare("matmul: 2-D, batched, transposed, epilogue", outs, wrt)


@case
def convolutions():
    outs, wrt = [], []
    for n, stride, padding in ((1, 1, 0), (7, 2, 1), (9, 3, 2)):
        x = leaf(2, 3, n + 2, n + 4, grad=True)
        w, b = leaf(4, 3, 3, 3, grad=True), leaf(4, grad=True)
        wrt += [x, w, b]  # backward: the input gradient (col2im) and the weight gradient
        outs.append(F.conv2d(x, w, b, stride=stride, padding=padding).relu())
    x = strided(5, 6).reshape(1, 1, 5, 6)
    outs.append(F.conv2d(x, leaf(2, 1, 2, 2), stride=1, padding=1))
    compare("conv2d forward and both backward kernels", outs, wrt)


@case
def pooling():
    outs, wrt = [], []
    for n in (1, 7, 13):
        x = leaf(2, 3, n + 1, n + 2, grad=True)
        wrt.append(x)
        outs.append(F.max_pool2d(x, 2, stride=2) if n > 1 else F.max_pool2d(x, 2, stride=1))
        outs.append(F.avg_pool2d(x, 2, stride=1, padding=1))
        if n > 1:
            outs.append(F.max_pool2d(x, 3, stride=2, padding=1))
    compare("max/avg pooling forward and backward", outs, wrt)


@case
def random_and_casts():
    outs, wrt = [], []
    graphc.manual_seed(1234)
    for n in (1, 7, 129):
        x = leaf(3, n, grad=True)
        wrt.append(x)
        outs.append(F.dropout(x, p=0.3, training=True))
        outs.append(graphc.rand(n, 3) + x.t())
        outs += [x.double() * 3.0, (x * 4).int().float() + 0.5, (x > 0).long() + 1, x.to(graphc.float64).sum(0)]
        outs.append((x * 100).long() // 7)
    compare("rand, dropout, casts", outs, wrt)


@case
def arena_redzones():
    """Temporaries sit between poisoned gaps: the byte after each one is unaddressable for ASan."""
    import ctypes
    x = leaf(7, 129)
    y = (x.exp().sum(1, keepdim=True) * x).softmax(0) @ leaf(129, 3)  # several temporaries
    gathered = build_graph([y._node])
    program = CompiledGraph(gathered.graph)
    assert program.program.artifact.metadata.get("sanitize"), "the program was not built sanitized"
    memory = program.layout.memory
    assert memory.offsets and memory.poison, "a sanitized memory plan has temporaries and redzones"
    is_poisoned = ctypes.CDLL(None).__asan_address_is_poisoned
    is_poisoned.argtypes, is_poisoned.restype = [ctypes.c_void_p], ctypes.c_int
    base = program.arena.ctypes.data
    for offset, size in memory.poison:
        assert is_poisoned(base + offset) and is_poisoned(base + offset + size - 1), (offset, size)
    for key, offset in memory.offsets.items():
        assert not is_poisoned(base + offset), key
    np.testing.assert_allclose(program(gathered.bindings)[0],
                               interpreter.evaluate(gathered.graph, gathered.bindings)[0], rtol=2e-4, atol=2e-4)
    COMPARED[0] += 1
    # the marks go with the program: NumPy hands small freed buffers out again without malloc, and a
    # mark left behind would fault an innocent array later (ASan aborts the process on the sum)
    small = leaf(3)
    tiny = build_graph([((small.exp() * 2).sum() + small.amax())._node])
    program = CompiledGraph(tiny.graph)
    arena_bytes, arena_address = program._arena_owner.nbytes, program._arena_owner.ctypes.data
    assert arena_bytes < 1024 and program.layout.memory.poison, "NumPy caches buffers under 1 KiB"
    del program
    reused = [np.ones(arena_bytes, dtype=np.uint8) for _ in range(64)]
    assert any(a.ctypes.data == arena_address for a in reused), "NumPy did not hand the buffer out again"
    assert all(int(a.sum()) == arena_bytes for a in reused)
    print(f"  arena redzones: {len(memory.offsets)} temporaries, {len(memory.poison)} poisoned ranges", flush=True)


def _train(model_factory, batch, steps, compiled):
    """Train a fresh model for `steps` steps; compiled through graphc.compile, or lazily on the
    reference interpreter. Returns the losses and the final parameters."""
    graphc.manual_seed(7)
    model = model_factory()
    step = train_step(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    run = graphc.compile(step) if compiled else step
    previous = backend.get_default()
    backend.set_default("c" if compiled else "numpy")
    try:
        losses = [float(run(*batch).item()) for _ in range(steps)]
    finally:
        backend.set_default(previous)
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def _compare_training(name, model_factory, batch, steps=3):
    started = time.perf_counter()
    losses, params = _train(model_factory, batch, steps, compiled=True)
    seconds = time.perf_counter() - started
    want_losses, want_params = _train(model_factory, batch, steps, compiled=False)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-4, err_msg=f"{name} losses")
    assert losses[-1] < losses[0], (name, losses)
    for index, (a, b) in enumerate(zip(params, want_params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=f"{name} parameter {index}")
        COMPARED[0] += 1
    print(f"  {name}: {steps} steps, {len(params)} parameters, {seconds:.2f} s", flush=True)


@case
def mlp_train_step():
    x = graphc.tensor(RNG.standard_normal((7, 13)).astype(np.float32))
    y = graphc.tensor(RNG.integers(0, 5, size=(7,)))
    _compare_training("MLP train step (graphc.compile)",
                      lambda: nn.Sequential(nn.Linear(13, 129), nn.ReLU(), nn.Linear(129, 5)), (x, y))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, padding=2)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


@case
def lenet_train_step():
    x = graphc.tensor(RNG.standard_normal((3, 1, 13, 13)).astype(np.float32))
    y = graphc.tensor(RNG.integers(0, 10, size=(3,)))
    _compare_training("LeNet train step (graphc.compile)", LeNet, (x, y))


def main() -> int:
    backend.set_default("c", compile_after=0)
    wanted = sys.argv[1:]
    started = time.perf_counter()
    for function in CASES:
        if not wanted or function.__name__ in wanted:
            function()
    print(f"corpus ok: {len(CASES) if not wanted else len(wanted)} cases, {COMPARED[0]} compared arrays, "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
