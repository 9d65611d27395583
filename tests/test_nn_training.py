"""Tutorial-style training loops, written as they are for PyTorch with `graphc` for `torch`."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.utils.data import DataLoader, TensorDataset
from nn_testing import reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")


def test_linear_regression_converges():
    """y = 2x + 1 with Linear(1, 1), MSELoss and SGD(lr=0.01), as in the tutorials."""
    graphc.manual_seed(0)
    x = graphc.linspace(-3, 3, 32).view(-1, 1)
    y = 2 * x + 1
    model = nn.Linear(1, 1)
    criterion = nn.MSELoss()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for epoch in range(300):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 < losses[0]
    assert abs(model.weight.item() - 2.0) < 1e-2
    assert abs(model.bias.item() - 1.0) < 2e-2


def test_mlp_with_dataloader_learns_random_labels():
    graphc.manual_seed(1)
    rng = np.random.default_rng(1)
    x = graphc.tensor(rng.standard_normal((64, 8)).astype(np.float32))
    y = graphc.tensor(rng.integers(0, 3, 64))
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
    optimizer = graphc.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss()

    def full_loss():
        model.eval()
        with graphc.no_grad():
            value = criterion(model(x), y).item()
        model.train()
        return value

    before = full_loss()
    for epoch in range(6):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
    assert full_loss() < 0.9 * before  # PyTorch ends near 0.8 of the starting loss here


class TinyLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = graphc.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def test_tiny_lenet_loss_decreases_and_checkpoint_restores():
    graphc.manual_seed(2)
    x = graphc.randn(8, 1, 10, 10)
    y = graphc.randint(0, 3, (8,))
    net = TinyLeNet()
    optimizer = graphc.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    scheduler = graphc.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for step in range(8):
        optimizer.zero_grad()
        loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert scheduler.get_last_lr() == [0.05 * 0.25]
    # checkpoint: model + optimizer state into fresh objects, then one more identical step
    checkpoint = pickle.loads(pickle.dumps({"model": net.state_dict(), "optimizer": optimizer.state_dict()}))
    twin = TinyLeNet()
    twin.load_state_dict(checkpoint["model"])
    twin_optimizer = graphc.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    twin_optimizer.load_state_dict(checkpoint["optimizer"])
    for model, opt in ((net, optimizer), (twin, twin_optimizer)):
        opt.zero_grad()
        criterion(model(x), y).backward()
        opt.step()
    with graphc.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), twin(x).numpy())
