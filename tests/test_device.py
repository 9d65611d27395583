"""The device API: `graphc.device`, `device=` on creation functions, `.to/.cuda/.cpu`, `Module.to`,
`graphc.cuda.*`, errors across devices and without CUDA.

The tests take one GPU through the `counted_cuda` fixture, which counts every host<->device copy
and every graph run. Under GRAPHC_DEVICE_TESTS=1 on a machine with a GPU it is the real one (CuPy
arrays, graphs compiled by the CUDA backend). Elsewhere it is a test double behind the one seam,
`graphc.devices.cuda_arrays`: NumPy memory, graphs compiled by the C backend. Everything above
that seam (storages on a device, one graph per device, transfers, compile) is the product code a
GPU runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import types

import numpy as np
import pytest

import graphc
import runtime
from graphc import devices, nn, optim
from graphc.backends.c import CompiledGraph
from graphc.compile.tracer import TraceError

THIS_FILE = "test_device.py"


# ---- the test double ---------------------------------------------------------------------------
class _Counts(dict):
    def __getattr__(self, name):
        return self[name]


@pytest.fixture
def counted_cuda(monkeypatch):
    """One GPU with every copy and graph run counted: the real one through CuPy when the suite runs
    on a GPU (GRAPHC_DEVICE_TESTS=1), else the double: NumPy memory, graphs compiled by the C
    backend."""
    counts = _Counts(to_device=0, to_host=0, compiled=0, runs=0)
    real = _real_gpu()
    base_graph = real.compiled_graph() if real is not None else CompiledGraph

    class CountingCompiledGraph(base_graph):
        def __init__(self, graph, aliases=None, replay=False):
            if real is not None:
                super().__init__(graph, aliases, replay=replay)
            else:   # the C backend has nothing to replay: every call runs the native program
                super().__init__(graph, aliases)
            counts["compiled"] += 1

        def __call__(self, bindings, out=None):
            counts["runs"] += 1
            return super().__call__(bindings, out)

    def to_device(array):   # like cupy.asarray of a NumPy array: always a new copy
        counts["to_device"] += 1
        return real.from_host(array) if real is not None else np.array(array, order="C")

    def to_host(array):     # like cupy.asnumpy
        counts["to_host"] += 1
        return real.to_host(array) if real is not None else np.array(array, order="C")

    if real is not None:
        counts["name"] = real.device_name(0)
        record = dataclasses.replace(real, compiled_graph=lambda: CountingCompiledGraph,
                                     from_host=to_device, to_host=to_host)
    else:
        counts["name"] = "graphc test double"
        record = devices.DeviceArrays("cuda", np, np.ndarray, lambda: CountingCompiledGraph, to_device, to_host,
                                      lambda: 1, lambda index: "graphc test double",
                                      lambda index: None, lambda index: contextlib.nullcontext())
    monkeypatch.setattr(devices, "cuda_arrays", lambda: record)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "_programs", {})
    return counts


def _real_gpu():
    """CuPy's record when the suite runs on a GPU (GRAPHC_DEVICE_TESTS=1 and one is usable)."""
    from conftest import DEVICE_TESTS
    if not DEVICE_TESTS or not runtime.cuda_available():
        return None
    return devices._load_cupy_arrays()


@pytest.fixture
def no_cupy(monkeypatch, c_backend):
    """A machine where `import cupy` fails, whatever this one has."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    devices._load_cupy_arrays.cache_clear()
    runtime.cuda_available.cache_clear()
    yield
    devices._load_cupy_arrays.cache_clear()
    runtime.cuda_available.cache_clear()


def _fake_cupy(monkeypatch, device_count):
    """A stand-in CuPy whose runtime reports `device_count` GPUs (or raises it, if an exception)."""
    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count
    module = types.SimpleNamespace(__version__="13.0.0",
                                   cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
                                       getDeviceCount=get_device_count)))
    monkeypatch.setitem(sys.modules, "cupy", module)
    devices._load_cupy_arrays.cache_clear()


@pytest.fixture
def clean_cupy_cache(c_backend):
    yield
    devices._load_cupy_arrays.cache_clear()
    runtime.cuda_available.cache_clear()


def _array(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- device objects -----------------------------------------------------------------------------
def test_device_objects_parse_print_and_compare():
    cuda0 = graphc.device("cuda:0")
    assert repr(cuda0) == "device(type='cuda', index=0)" and str(cuda0) == "cuda:0"
    assert graphc.device(type="cuda", index=1) == graphc.device("cuda", 1) == graphc.device("cuda:1")
    assert graphc.device(2) == graphc.device("cuda:2")          # a bare int is a CUDA device
    assert repr(graphc.device("cuda")) == "device(type='cuda')" and graphc.device("cuda").index is None
    assert graphc.device("cuda") == cuda0 and cuda0 != graphc.device("cuda:1") and cuda0 != "cpu"
    assert len({graphc.device("cpu"), graphc.device("cpu"), cuda0, graphc.device("cuda")}) == 2
    assert graphc.device(graphc.device("cuda:3")).index == 3
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda device type at start of device string: gpu"):
        graphc.device("gpu")
    with pytest.raises(RuntimeError, match="Invalid device string: 'cuda:x'"):
        graphc.device("cuda:x")
    with pytest.raises(RuntimeError, match="must not include an index"):
        graphc.device("cuda:0", 1)


def test_cpu_tensor_device_and_conversions(rng):
    a = _array(rng, 3, 4)
    x = graphc.tensor(a, device="cpu")
    assert x.device == graphc.device("cpu") and not x.is_cuda and x.is_cpu and x.get_device() == -1
    assert x.to("cpu") is x and x.cpu() is x and x.to(x) is x and x.to(graphc.float32) is x
    double = x.to("cpu", graphc.float64)
    assert double.dtype is graphc.float64
    np.testing.assert_array_equal(double.numpy(), a.astype(np.float64))
    other = graphc.zeros(1, dtype=graphc.int64)
    np.testing.assert_array_equal(x.to(other).numpy(), a.astype(np.int64))
    copied = x.to("cpu", copy=True)
    assert copied is not x
    copied.add_(1.0)
    np.testing.assert_array_equal(x.numpy(), a)    # the copy is independent
    np.testing.assert_allclose(copied.numpy(), a + 1, rtol=1e-6)


def test_creation_functions_take_device_cpu(rng):
    a = _array(rng, 2, 3)
    made = [graphc.tensor(a, device="cpu"), graphc.zeros(2, 3, device="cpu"), graphc.ones(2, device="cpu"),
            graphc.full((2,), 1.5, device=graphc.device("cpu")), graphc.arange(4, device="cpu"),
            graphc.rand(3, device="cpu"), graphc.randn(3, device="cpu"), graphc.eye(2, device="cpu"),
            graphc.zeros_like(graphc.tensor(a)), graphc.randint(0, 4, (3,), device="cpu")]
    assert all(t.device == "cpu" for t in made)


# ---- without CUDA: clear errors ------------------------------------------------------------------
def _cuda_requests():
    x = graphc.tensor([1.0, 2.0])
    return [("create a tensor on cuda", lambda: graphc.zeros(2, device="cuda")),
            ("create a tensor on cuda:0", lambda: graphc.randn(2, device="cuda:0")),
            ("move a tensor to cuda", lambda: x.to("cuda")),
            ("move a tensor to cuda", lambda: x.cuda()),
            ("move a module to cuda", lambda: nn.Linear(2, 2).cuda()),
            ("create a module on cuda", lambda: nn.Linear(2, 2, device="cuda"))]


def test_without_cupy_is_available_false_and_requests_say_install_cupy(no_cupy):
    assert graphc.cuda.is_available() is False and graphc.cuda.device_count() == 0
    for action, request in _cuda_requests():
        with pytest.raises(devices.CudaUnavailable) as caught:
            request()
        message = str(caught.value)
        assert message.startswith(f"cannot {action}: CUDA is not available: CuPy is not installed"), message
        assert "pip install graphc[cuda]" in message
    with pytest.raises(devices.CudaUnavailable, match="CuPy is not installed"):
        graphc.cuda.synchronize()
    # and everything on the CPU still works
    assert (graphc.ones(3) * 2).sum().item() == 6.0


def test_cupy_without_driver_reports_cupys_reason(monkeypatch, clean_cupy_cache):
    class CUDARuntimeError(RuntimeError):
        pass
    _fake_cupy(monkeypatch, CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    for action, request in _cuda_requests():
        with pytest.raises(devices.CudaUnavailable) as caught:
            request()
        assert str(caught.value) == (
            f"cannot {action}: CUDA is not available: CuPy 13.0.0 is installed but cannot reach a CUDA "
            "driver and GPU: CUDARuntimeError: cudaErrorNoDevice: no CUDA-capable device is detected")


def test_cupy_seeing_no_gpu(monkeypatch, clean_cupy_cache):
    _fake_cupy(monkeypatch, 0)
    with pytest.raises(devices.CudaUnavailable, match="CuPy 13.0.0 is installed but sees no CUDA GPU"):
        graphc.ones(2, device="cuda")


def test_gpu_without_nvrtc_names_the_missing_compiler(monkeypatch, clean_cupy_cache):
    _fake_cupy(monkeypatch, 1)

    def no_compiler(**options):
        raise runtime.ToolchainMissing("No CUDA compiler: neither NVRTC nor nvcc was found",
                                       "Install NVRTC with `pip install nvidia-cuda-nvrtc-cu12`")
    monkeypatch.setattr(runtime, "find_cuda_compiler", no_compiler)
    with pytest.raises(devices.CudaUnavailable) as caught:
        graphc.tensor([1.0]).cuda()
    assert str(caught.value) == (
        "cannot move a tensor to cuda: CUDA is not available: a GPU is visible but graphc cannot "
        "compile CUDA code: No CUDA compiler: neither NVRTC nor nvcc was found.\n"
        "HINT: Install NVRTC with `pip install nvidia-cuda-nvrtc-cu12`")


# ---- the double: graphc.cuda and transfers ------------------------------------------------------
def test_cuda_module_functions(counted_cuda):
    assert graphc.cuda.is_available() and graphc.cuda.device_count() == 1
    assert graphc.cuda.current_device() == 0
    assert graphc.cuda.get_device_name() == graphc.cuda.get_device_name(0) == counted_cuda.name
    graphc.cuda.synchronize()
    with pytest.raises(devices.CudaUnavailable, match=r"invalid device ordinal \(cuda:3; 1 CUDA device visible\)"):
        graphc.zeros(2, device="cuda:3")


def test_transfers_copy_values_both_ways(counted_cuda, rng):
    a = _array(rng, 3, 5)
    x = graphc.tensor(a)
    on_gpu = x.cuda()
    assert on_gpu.device == graphc.device("cuda:0") and on_gpu.is_cuda and on_gpu.get_device() == 0
    assert str(on_gpu.device) == "cuda:0" and on_gpu.dtype is graphc.float32 and on_gpu.shape == (3, 5)
    assert counted_cuda.to_device == 1
    assert on_gpu.to("cuda") is on_gpu and on_gpu.cuda() is on_gpu and on_gpu.to(on_gpu) is on_gpu
    back = on_gpu.cpu()
    assert back.device == "cpu" and counted_cuda.to_host == 1
    np.testing.assert_array_equal(back.numpy(), a)
    # copies are independent of their source, both ways
    x.add_(1.0)
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), a)
    on_gpu.mul_(2.0)
    np.testing.assert_array_equal(back.numpy(), a)
    np.testing.assert_allclose(on_gpu.cpu().numpy(), a * 2, rtol=1e-6)
    # a non-contiguous view moves its own values
    t = graphc.tensor(a).t()[1:, ::2]
    np.testing.assert_array_equal(t.to("cuda").cpu().numpy(), a.T[1:, ::2])
    # device and dtype together; another tensor's device and dtype; copy=True
    both = x.to("cuda", graphc.float64)
    assert both.device == "cuda:0" and both.dtype is graphc.float64
    np.testing.assert_array_equal(both.cpu().numpy(), (a + 1).astype(np.float64))
    like = graphc.tensor(a).to(graphc.zeros(1, dtype=graphc.int64, device="cuda"))
    assert like.device == "cuda:0" and like.dtype is graphc.int64
    same = on_gpu.to("cuda", copy=True)
    assert same is not on_gpu and same.device == "cuda:0"
    same.zero_()
    np.testing.assert_allclose(on_gpu.cpu().numpy(), a * 2, rtol=1e-6)


def test_reading_gpu_values(counted_cuda, rng):
    a = _array(rng, 2, 3)
    x = graphc.tensor(a, device="cuda")
    with pytest.raises(TypeError) as caught:
        x.numpy()
    assert str(caught.value) == ("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
                                 "copy the tensor to host memory first.")
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        np.asarray(x)
    assert x.tolist() == a.tolist()
    assert x[1, 2].item() == float(a[1, 2])
    text = repr(x)
    assert text.endswith("device='cuda:0')") and text == repr(graphc.tensor(a))[:-1] + ", device='cuda:0')"


def test_creation_functions_on_cuda(counted_cuda, rng):
    a = _array(rng, 3, 2)
    cases = [(graphc.tensor(a, device="cuda"), a),
             (graphc.zeros(2, 3, device="cuda"), np.zeros((2, 3), np.float32)),
             (graphc.ones(4, dtype=graphc.float64, device="cuda"), np.ones(4)),
             (graphc.full((2, 2), 2.5, device="cuda"), np.full((2, 2), 2.5, np.float32)),
             (graphc.arange(1, 7, 2, device="cuda"), np.arange(1, 7, 2)),
             (graphc.linspace(0, 1, 5, device="cuda"), np.linspace(0, 1, 5).astype(np.float32)),
             (graphc.eye(3, device="cuda"), np.eye(3, dtype=np.float32)),
             (graphc.empty(2, device="cuda"), np.zeros(2, np.float32))]
    source = graphc.tensor(a, device="cuda")
    cases += [(graphc.zeros_like(source), np.zeros_like(a)), (graphc.ones_like(source), np.ones_like(a)),
              (graphc.full_like(source, 7.0), np.full_like(a, 7.0)), (graphc.tensor(source), a)]
    for made, expected in cases:
        assert made.device == "cuda:0", made
        np.testing.assert_array_equal(made.cpu().numpy(), expected)
    w = graphc.ones(3, device="cuda", requires_grad=True)
    assert w.is_leaf and w.requires_grad and w.device == "cuda:0"
    assert graphc.rand_like(source).device == graphc.randn_like(source).device == "cuda:0"
    assert graphc.zeros_like(source, device="cpu").device == "cpu"


def test_random_numbers_on_cuda_match_the_cpu_bits(counted_cuda):
    seed = int(np.random.default_rng().integers(1 << 30))
    results = {}
    for device in ("cpu", "cuda"):
        graphc.manual_seed(seed)
        values = [graphc.rand(7, 3, device=device), graphc.randn(5, device=device, dtype=graphc.float64),
                  graphc.randint(0, 10, (6,), device=device), graphc.randperm(8, device=device)]
        assert all(v.device == device for v in values)
        results[device] = [v.cpu().numpy() for v in values]
    for on_cpu, on_gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_array_equal(on_cpu, on_gpu)
    assert counted_cuda.runs > 0      # the GPU's uniforms were computed by its own graphs


# ---- computing on the (fake) GPU ----------------------------------------------------------------
def test_ops_on_cuda_match_numpy(counted_cuda, rng):
    a, b, c = _array(rng, 4, 6), _array(rng, 6, 3), _array(rng, 4, 1)
    x, w, s = (graphc.tensor(v, device="cuda") for v in (a, b, c))
    runs = counted_cuda.runs
    results = {
        "chain": ((x * 2 + s).tanh() - x.exp() / 3, np.tanh(a * 2.0 + c) - np.exp(a.astype(np.float64)) / 3),
        "matmul": (x @ w, a.astype(np.float64) @ b),
        "softmax": (x.softmax(-1), np.exp(a - a.max(-1, keepdims=True)) / np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True)),
        "sum": (x.sum(0), a.astype(np.float64).sum(0)),
        "mean_keepdim": (x.mean(1, keepdim=True), a.astype(np.float64).mean(1, keepdims=True)),
        "max": (x.amax(1), a.max(1)),
        "view": (x.t()[2:, 1:3].reshape(-1), a.T[2:, 1:3].reshape(-1)),
        "index_list": (x[[0, 3, 1]], a[[0, 3, 1]]),
        "index_cpu_tensor": (x[graphc.tensor([2, 0])], a[[2, 0]]),
        "mask": (x[x > 0], a[a > 0]),
        "compare": ((x > s).float(), (a > c).astype(np.float32)),
    }
    for name, (result, expected) in results.items():
        assert result.device == "cuda:0", name
        np.testing.assert_allclose(result.cpu().numpy(), expected, rtol=1e-5, atol=1e-5, err_msg=name)
    assert counted_cuda.runs > runs
    assert devices.stats["compiled"] + devices.stats["replayed"] > 0


def test_scalars_and_zero_dim_cpu_tensors_mix_with_cuda(counted_cuda, rng):
    a = _array(rng, 3, 3)
    x = graphc.tensor(a, device="cuda")
    scale = graphc.tensor(float(rng.uniform(1, 2)))                    # 0-dim, on the CPU
    result = x * scale + 2.5 - graphc.tensor(a.sum()) / 9
    assert result.device == "cuda:0"
    np.testing.assert_allclose(result.cpu().numpy(),
                               a.astype(np.float64) * scale.item() + 2.5 - a.astype(np.float64).sum() / 9,
                               rtol=1e-5, atol=1e-5)


def test_mixing_devices_raises_naming_op_devices_and_line(counted_cuda, rng):
    x = graphc.tensor(_array(rng, 2, 3), device="cuda")
    y = graphc.tensor(_array(rng, 2, 3))
    m = graphc.tensor(_array(rng, 3, 2))
    line = sys._getframe().f_lineno + 2
    with pytest.raises(RuntimeError) as caught:
        x + y
    message = str(caught.value)
    assert message.startswith("add: Expected all tensors to be on the same device, but found at least two "
                              "devices, cuda:0 and cpu!")
    assert f"{THIS_FILE}:{line}" in message and "HINT: move one of them with .to(device)" in message
    with pytest.raises(RuntimeError, match=r"matmul: Expected all tensors to be on the same device, but "
                                           r"found at least two devices, cpu and cuda:0!"):
        m.t() @ x.t()
    with pytest.raises(RuntimeError, match="found at least two devices, cuda:0 and cpu"):
        nn.functional.linear(x, m.t())
    with pytest.raises(RuntimeError, match="found at least two devices, cuda:0 and cpu"):
        graphc.cat([x, y])


def test_gradients_live_on_the_parameters_device(counted_cuda, rng):
    a, b = _array(rng, 5, 4), _array(rng, 4)
    x = graphc.tensor(a, device="cuda")
    w = graphc.tensor(b, device="cuda", requires_grad=True)
    loss = ((x @ w).tanh() ** 2).mean()
    loss.backward()
    assert w.grad.device == "cuda:0" and loss.device == "cuda:0"
    hidden = np.tanh(a.astype(np.float64) @ b)
    expected = (a.T.astype(np.float64) @ (2 * hidden * (1 - hidden ** 2))) / 5
    np.testing.assert_allclose(w.grad.cpu().numpy(), expected, rtol=1e-4, atol=1e-6)
    # a gradient made of constants only (d sum(v)/dv = 1) still belongs on the GPU
    v = graphc.tensor(b, device="cuda", requires_grad=True)
    v.sum().backward()
    assert v.grad.device == "cuda:0"
    np.testing.assert_array_equal(v.grad.cpu().numpy(), np.ones(4, np.float32))
    [g] = graphc.autograd.grad(v.sum() * 3, [v])
    assert g.device == "cuda:0"
    np.testing.assert_array_equal(g.cpu().numpy(), np.full(4, 3.0, np.float32))


def test_moving_a_tensor_that_requires_grad_is_refused(counted_cuda):
    w = graphc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError) as caught:
        w.cuda()
    assert str(caught.value).startswith("to: copying a tensor that requires grad from cpu to cuda:0 is not "
                                        "differentiable in graphc yet")
    assert THIS_FILE in str(caught.value)
    with graphc.no_grad():
        assert w.cuda().device == "cuda:0"
    assert w.detach().cuda().requires_grad is False


def test_in_place_writes_on_cuda(counted_cuda, rng):
    a, b = _array(rng, 4, 3), _array(rng, 4, 3)
    x = graphc.tensor(a, device="cuda")
    view = x[1:3]
    x.add_(1.5)
    x[0] = 0.0
    x[graphc.tensor([3])] = graphc.tensor(b[3:], device="cuda")
    expected = a + 1.5
    expected[0] = 0.0
    expected[3] = b[3]
    np.testing.assert_allclose(x.cpu().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(view.cpu().numpy(), expected[1:3], rtol=1e-6)   # views see the writes
    x.copy_(graphc.tensor(b))                 # copy_ from the CPU, as PyTorch allows
    np.testing.assert_array_equal(x.cpu().numpy(), b)
    assert x.device == "cuda:0"


# ---- modules and optimizers ---------------------------------------------------------------------
def _model(seed):
    graphc.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_module_to_moves_parameters_and_buffers_in_place(counted_cuda):
    model = _model(0)
    weights = [p.detach().numpy().copy() for p in model.parameters()]
    parameters = list(model.parameters())
    assert model.cuda() is model
    assert [p is q for p, q in zip(model.parameters(), parameters)] == [True] * len(parameters)
    assert all(p.device == "cuda:0" and p.is_leaf and p.requires_grad for p in model.parameters())
    assert all(b.device == "cuda:0" for b in model.buffers())
    assert model[1].num_batches_tracked.dtype is graphc.int64
    for p, before in zip(model.parameters(), weights):
        np.testing.assert_array_equal(p.detach().cpu().numpy(), before)
    model.to("cpu", graphc.float64)
    assert all(p.device == "cpu" and p.dtype is graphc.float64 for p in model.parameters())
    assert model[1].num_batches_tracked.dtype is graphc.int64 and model[1].num_batches_tracked.device == "cpu"
    assert model.to(graphc.device("cuda:0")) is model and model[0].weight.device == "cuda:0"


def _train(model, optimizer, x, y, steps, step=None):
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        if step is not None:
            losses.append(step(x, y))
            continue
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss)
    return losses


def test_training_on_cuda_matches_the_cpu(counted_cuda, rng):
    x, y = _array(rng, 16, 6), rng.integers(0, 3, 16)
    finals = {}
    for device in ("cpu", "cuda"):
        model = _model(1).to(device)
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = _train(model, optimizer, graphc.tensor(x, device=device), graphc.tensor(y, device=device), 3)
        assert all(loss.device == device for loss in losses)
        assert all(p.grad.device == device for p in model.parameters())
        assert all(s["momentum_buffer"].device == device for s in optimizer.state.values())
        finals[device] = ([loss.item() for loss in losses],
                          [p.detach().cpu().numpy() for p in model.parameters()],
                          model[1].running_mean.cpu().numpy())
    np.testing.assert_allclose(finals["cuda"][0], finals["cpu"][0], rtol=1e-5)
    for on_gpu, on_cpu in zip(finals["cuda"][1], finals["cpu"][1]):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(finals["cuda"][2], finals["cpu"][2], rtol=1e-5, atol=1e-6)


def test_compiled_step_on_cuda_runs_the_cuda_backend(counted_cuda, rng):
    x, y = _array(rng, 16, 6), rng.integers(0, 3, 16)
    finals = {}
    for device in ("cpu", "cuda"):
        graphc.manual_seed(2)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.25), nn.Linear(8, 3)).to(device)
        optimizer = optim.Adam(model.parameters(), lr=0.01)
        criterion = nn.CrossEntropyLoss()

        @graphc.compile
        def step(inputs, targets):
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            return loss
        runs = counted_cuda.runs
        graphc.manual_seed(3)
        losses = _train(model, optimizer, graphc.tensor(x, device=device), graphc.tensor(y, device=device),
                        4, step)
        assert all(loss.device == device for loss in losses)
        assert all(p.device == device and p.grad.device == device for p in model.parameters())
        if device == "cuda":
            assert counted_cuda.runs - runs == 4     # every call ran one graph on the (fake) GPU
        finals[device] = ([loss.item() for loss in losses], [p.detach().cpu().numpy() for p in model.parameters()])
    np.testing.assert_allclose(finals["cuda"][0], finals["cpu"][0], rtol=1e-5)
    for on_gpu, on_cpu in zip(finals["cuda"][1], finals["cpu"][1]):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-6)


def test_compiled_step_retraces_when_the_model_moves(counted_cuda, rng):
    model = nn.Linear(4, 2)
    optimizer = optim.SGD(model.parameters(), lr=0.1)

    @graphc.compile
    def step(inputs):
        optimizer.zero_grad()
        loss = model(inputs).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss
    a = _array(rng, 8, 4)
    for _ in range(3):
        step(graphc.tensor(a))
    model.cuda()
    loss = step(graphc.tensor(a, device="cuda"))
    assert loss.device == "cuda:0" and model.weight.device == "cuda:0"
    reason = step.stats()["history"][-1]["reason"]
    assert "device" in reason or "cuda:0" in reason, reason
    with pytest.raises(TraceError, match="moving a tensor to cuda:0 inside graphc.compile is not supported"):
        graphc.compile(lambda t: t.cuda() * 2)(graphc.tensor(a))


def test_layers_made_with_device_live_there(counted_cuda, rng):
    layers = [nn.Linear(3, 2, device="cuda"), nn.Conv2d(1, 2, 3, device="cuda"), nn.BatchNorm2d(2, device="cuda"),
              nn.LayerNorm(4, device="cuda"), nn.Embedding(5, 3, device="cuda"), nn.Bilinear(2, 2, 1, device="cuda")]
    for layer in layers:
        assert all(t.device == "cuda:0" for t in list(layer.parameters()) + list(layer.buffers())), layer
    linear = layers[0]
    a = _array(rng, 4, 3)
    out = linear(graphc.tensor(a, device="cuda"))
    weight, bias = linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy()
    np.testing.assert_allclose(out.detach().cpu().numpy(), a.astype(np.float64) @ weight.T + bias,
                               rtol=1e-5, atol=1e-6)


def test_nonzero_of_a_cuda_tensor_stays_on_the_device(counted_cuda, rng):
    a = rng.integers(0, 2, (4, 5))
    x = graphc.tensor(a, device="cuda")
    found = x.nonzero()
    assert found.device == "cuda:0"
    np.testing.assert_array_equal(found.cpu().numpy(), np.stack(np.nonzero(a), axis=1))
    rows, cols = x.nonzero(as_tuple=True)
    assert rows.device == cols.device == "cuda:0"
    np.testing.assert_array_equal(cols.cpu().numpy(), np.nonzero(a)[1])


def test_an_unchanged_compiled_step_replays_as_one_cuda_graph(counted_cuda, rng):
    """On a GPU, a compiled step whose buffers stay where they were runs as one captured CUDA
    graph (captured the second time its addresses are seen), and trains exactly as the CPU does:
    the tutorial's y = 2x + 1 regression with SGD momentum and dropout noise, written with
    broadcasting (products through cuBLAS are not captured: CuPy refuses cuBLAS calls while a
    stream is captured). A new batch array moves an input's address: those calls run launch by
    launch until their addresses repeat."""
    if _real_gpu() is None:
        pytest.skip("needs a GPU (GRAPHC_DEVICE_TESTS=1 on a machine with one)")
    x = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
    y = (2 * x + 1 + 0.01 * rng.standard_normal((64, 1))).astype(np.float32)
    other = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
    finals = {}
    for device in ("cpu", "cuda"):
        w = graphc.zeros(1, device=device, requires_grad=True)
        b = graphc.zeros(1, device=device, requires_grad=True)
        optimizer = optim.SGD([w, b], lr=0.1, momentum=0.9)

        @graphc.compile
        def step(inputs, targets):
            optimizer.zero_grad()
            noisy = nn.functional.dropout(inputs * w + b, 0.1)
            loss = ((noisy - targets) ** 2).mean()
            loss.backward()
            optimizer.step()
            return loss
        graphc.manual_seed(5)
        inputs, targets = graphc.tensor(x, device=device), graphc.tensor(y, device=device)
        losses = [step(inputs, targets) for _ in range(8)]
        losses += [step(graphc.tensor(other, device=device), targets) for _ in range(3)]
        finals[device] = ([loss.item() for loss in losses], [w.item(), b.item()])
        if device == "cuda":
            replays = step.variants[-1].program.replays
            assert replays >= 4, replays
    np.testing.assert_allclose(finals["cuda"][0], finals["cpu"][0], rtol=1e-5)
    np.testing.assert_allclose(finals["cuda"][1], finals["cpu"][1], rtol=1e-5)


def test_a_compiled_result_that_is_also_a_state_update_is_its_own_copy(counted_cuda, rng):
    """A step returning an updated parameter's value: the result and the update may be one
    program output, written in place or through memory the step keeps between calls; the
    returned tensor must not change when the step runs again."""
    x = graphc.tensor(_array(rng, 16, 3), device="cuda")
    w = graphc.tensor(_array(rng, 3), device="cuda", requires_grad=True)
    optimizer = optim.SGD([w], lr=0.1, momentum=0.9)

    @graphc.compile
    def step(inputs):
        optimizer.zero_grad()
        loss = (inputs @ w).tanh().pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss, w.detach() * 1.0
    kept = []
    for _ in range(4):
        loss, value = step(x)
        kept.append((value, value.cpu().numpy().copy(), w.detach().cpu().numpy().copy()))
    for value, seen, parameter in kept:
        np.testing.assert_array_equal(seen, parameter)          # the value after that call's update
        np.testing.assert_array_equal(value.cpu().numpy(), seen)  # unchanged by later calls
    assert not np.array_equal(kept[0][1], kept[-1][1])
