"""python -m benchmarks.gpu: graphc's CUDA backend against the GPU's copy roof and PyTorch CUDA eager.

    python -m benchmarks.gpu                     # W3 at 2^28, W1 at batch 128 and 4096
    python -m benchmarks.gpu --quick             # fewer counted calls

Rows (issue 10's targets):
- R1-gpu: device-to-device copy of 2^28 float32 with CuPy, GB/s counting read + write.
- W3 at 2^28 elements, graphc compiled on cuda: GB/s of one read and one write, and its fraction
  of R1-gpu (target >= 80%).
- W1 train step at batch 128 and 4096: graphc compiled on cuda against PyTorch CUDA eager, ms/step
  (target: faster at both).

Times are CUDA-event times around `counted` calls after `warmup` calls, synchronized; medians of
five such windows. Prints a Markdown table with the device line; exits 2 (with the reason) where
there is no GPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from benchmarks.workloads import fused_elementwise, mlp

W3_ELEMENTS = 1 << 28
W1_BATCHES = (128, 4096)
WINDOWS = 5


def device_line() -> str:
    import cupy
    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = properties["name"].decode() if isinstance(properties["name"], bytes) else properties["name"]
    driver = cupy.cuda.runtime.driverGetVersion()
    return (f"{name}, {properties['totalGlobalMem'] / 2 ** 30:.0f} GiB, compute capability "
            f"{properties['major']}.{properties['minor']}, CUDA driver {driver // 1000}.{driver % 1000 // 10}, "
            f"CuPy {cupy.__version__}")


def time_windows(call, warmup: int, counted: int) -> float:
    """Median seconds per call over WINDOWS windows of `counted` calls, timed with CUDA events."""
    import cupy
    for _ in range(warmup):
        call()
    cupy.cuda.Device().synchronize()
    seconds = []
    for _ in range(WINDOWS):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(counted):
            call()
        end.record()
        end.synchronize()
        seconds.append(cupy.cuda.get_elapsed_time(start, end) / 1e3 / counted)
    return statistics.median(seconds)


def copy_roof(counted: int) -> float:
    import cupy
    source = cupy.random.standard_normal(W3_ELEMENTS, dtype=cupy.float32)
    target = cupy.empty_like(source)
    seconds = time_windows(lambda: cupy.copyto(target, source), 3, counted)
    return 2 * 4 * W3_ELEMENTS / seconds / 1e9


def w3_graphc(counted: int) -> tuple[float, float]:
    import graphc
    data = np.random.default_rng(0).standard_normal(W3_ELEMENTS).astype(np.float32)
    x = graphc.tensor(data, device="cuda")

    @graphc.compile
    def forward(x):
        with graphc.no_grad():
            return fused_elementwise.fused(graphc, x)

    result = forward(x)
    head = data[:4096].astype(np.float64)
    expected = np.tanh(head * fused_elementwise.SCALE + fused_elementwise.SHIFT) * 0.5 + \
        fused_elementwise.WEIGHT / (1 + np.exp(-head))
    np.testing.assert_allclose(result[:4096].cpu().numpy(), expected, rtol=1e-4, atol=1e-5)
    seconds = time_windows(lambda: forward(x), 3, counted)
    return 2 * 4 * W3_ELEMENTS / seconds / 1e9, float(result.mean().item())


def w1(framework, batch: int, counted: int, compiled: bool) -> tuple[float, float]:
    """ms per W1 train step on the GPU and the last loss; `framework` is graphc (compiled) or torch."""
    framework.manual_seed(0)
    model = mlp.build_model(framework).cuda()
    optimizer = framework.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = framework.nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    x = framework.tensor(rng.standard_normal((batch, 784)).astype(np.float32), device="cuda")
    y = framework.tensor(rng.integers(0, 10, batch), device="cuda")

    def step(x, y):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    run = framework.compile(step) if compiled else step
    seconds = time_windows(lambda: run(x, y), 10, counted)
    return seconds * 1e3, float(run(x, y).item())


def torch_cuda():
    """PyTorch when it sees a GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer counted calls: a smoke run")
    args = parser.parse_args(argv)
    import graphc
    if not graphc.cuda.is_available():
        print("python -m benchmarks.gpu: no GPU here (graphc.cuda.is_available() is False)", file=sys.stderr)
        return 2
    counted = 5 if args.quick else 20
    lines = [f"Device: {device_line()}", "", "| row | graphc cuda | PyTorch CUDA eager | ratio / fraction | target |",
             "|---|---|---|---|---|"]
    roof = copy_roof(counted)
    lines.append(f"| R1-gpu copy 2^28 float32 | {roof:.0f} GB/s | | | |")
    w3, _ = w3_graphc(counted)
    lines.append(f"| W3 2^28 | {w3:.0f} GB/s | | {w3 / roof:.0%} of R1-gpu | ≥ 80% |")
    for batch in W1_BATCHES:
        ours, our_loss = w1(graphc, batch, counted * 5, compiled=True)
        torch = torch_cuda()
        theirs = None if torch is None else w1(torch, batch, counted * 5, compiled=False)
        if theirs is None:
            lines.append(f"| W1 batch {batch} | {ours:.3f} ms | (no PyTorch CUDA) | | faster |")
        else:
            lines.append(f"| W1 batch {batch} | {ours:.3f} ms (loss {our_loss:.4f}) | {theirs[0]:.3f} ms "
                         f"(loss {theirs[1]:.4f}) | {ours / theirs[0]:.2f}× | faster |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
