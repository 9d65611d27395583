"""E1–E5: the eager loops of WORKLOADS.md, tutorial code with no decorator, graphc lazy against
PyTorch eager.

Each loop is written once, as a user writes it with `import torch` (or `import graphc as torch`):
a function of the framework module that sets the model up and returns one step of its loop, which
ends with `loss.item()`. The weights are PyTorch's default init drawn with NumPy and the data is
drawn with NumPy, so both frameworks start from the same numbers (E5's shuffle order is each
framework's own, from `manual_seed`). A step is timed after 10 warm-up steps; the median counts.
For graphc the child also counts the native calls per counted step (`graphc.backend.stats`:
interpreted, compiled and replayed realizes), the number the lazy core is pushing down to one.
"""
from __future__ import annotations

import itertools

import numpy as np

from benchmarks.report import Result, Row
from benchmarks.timing import measure_calls, milliseconds_per_step
from benchmarks.workloads.common import Context, measure_each_system, pytorch_default_parameters

WARMUP = 10
NATIVE_CALLS = "native calls per step"


def initial_weights(torch, model, seed: int) -> None:
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    arrays = pytorch_default_parameters(shapes, seed)
    model.load_state_dict({name: torch.tensor(array) for name, array in arrays.items()})


# ---- the loops, as a tutorial writes them -----------------------------------------------------------
def linear_regression(torch, seed: int):
    """E1: W5's y = 2x + 1 on 11 points, Linear(1, 1), MSELoss, SGD lr 0.01, full batch."""
    x_values = np.arange(11, dtype=np.float32).reshape(-1, 1)
    x_train, y_train = torch.tensor(x_values), torch.tensor(2 * x_values + 1)
    model = torch.nn.Linear(1, 1)
    initial_weights(torch, model, seed)
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        optimizer.zero_grad()
        loss = criterion(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def scalar_weight(torch, seed: int):
    """E2: one weight fitted to y = 2x, point by point, updating `w.data` by hand."""
    x_data, y_data = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    w = torch.tensor([1.0], requires_grad=True)
    points = itertools.cycle(zip(x_data, y_data))

    def step():
        x, y = next(points)
        l = (x * w - y) ** 2   # noqa: E741  (the tutorial's name)
        l.backward()
        w.data = w.data - 0.01 * w.grad.data
        w.grad.data.zero_()
        return l.item()

    return step


def tutorial_lenet(torch):
    """The LeNet of PyTorch's neural-network tutorial: 3x3 convolutions, 32x32 input."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 3)
            self.conv2 = nn.Conv2d(6, 16, 3)
            self.fc1 = nn.Linear(16 * 6 * 6, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def lenet(batch: int):
    """E3 (batch 1) and E4 (batch 64): the tutorial LeNet, MSELoss to a random target, SGD lr 0.01."""
    def loop(torch, seed: int):
        rng = np.random.default_rng([seed, 3])
        inputs = torch.tensor(rng.standard_normal((batch, 1, 32, 32), dtype=np.float32))
        target = torch.tensor(rng.standard_normal((batch, 10), dtype=np.float32))
        net = tutorial_lenet(torch)
        initial_weights(torch, net, seed)
        criterion = torch.nn.MSELoss()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01)

        def step():
            optimizer.zero_grad()
            output = net(inputs)
            loss = criterion(output, target)
            loss.backward()
            optimizer.step()
            return loss.item()

        return step
    return loop


def mlp_loader_loop(torch, seed: int):
    """E5: W1's MLP and optimizer fed by a shuffling DataLoader over 2560 samples; epochs repeat."""
    nn = torch.nn
    data = torch.utils.data
    rng = np.random.default_rng([seed, 4])
    X = torch.tensor(rng.standard_normal((2560, 784), dtype=np.float32))
    Y = torch.tensor(rng.integers(0, 10, 2560))
    torch.manual_seed(seed)
    loader = data.DataLoader(data.TensorDataset(X, Y), batch_size=128, shuffle=True)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    initial_weights(torch, model, seed)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step():
        inputs, labels = next(stream)
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


# ---- measuring ---------------------------------------------------------------------------------------
LOOPS = {  # id -> (title, loop, counted steps)
    "E1": ("linear regression loop, 11 samples", linear_regression, 1000),
    "E2": ("scalar w, point by point, w.data updated by hand", scalar_weight, 30),
    "E3": ("tutorial LeNet, batch 1, MSELoss", lenet(1), 100),
    "E4": ("tutorial LeNet, batch 64, MSELoss", lenet(64), 100),
    "E5": ("W1's MLP fed by DataLoader(shuffle=True), batch 128", mlp_loader_loop, 200),
}


def measure_loop(system, loop, seed: int, warmup: int, counted: int) -> Result:
    """Time `loop`'s steps on `system`'s framework, as written: no compile, no realize of our own."""
    step = loop(system.framework, seed)
    last = {}

    def call():
        last["loss"] = step()

    native_calls = getattr(system, "native_calls", None)
    timing = measure_calls(call, lambda index: (), warmup, 0, system.one_time_work(None))
    before = native_calls() if native_calls else None
    counted_timing = measure_calls(call, lambda index: (), 0, counted)
    timing.counted = counted_timing.counted
    counters = {}
    if native_calls:
        counters[NATIVE_CALLS] = (native_calls() - before) / counted
    return Result.from_timing(milliseconds_per_step(), timing, check=float(last["loss"]), counters=counters)


def runner(loop_id: str):
    title, loop, counted_steps = LOOPS[loop_id]

    def run(context: Context) -> list[Row]:
        warmup, counted = context.counts(WARMUP, counted_steps)
        row = Row(loop_id, title, milliseconds_per_step(), check_label="last loss")
        return [measure_each_system(context, row, lambda system: measure_loop(system, loop, context.seed,
                                                                              warmup, counted))]
    return run
