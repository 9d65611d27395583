"""Models and the train step the tests share: the tutorial's LeNet-5 and its training step."""
from __future__ import annotations

import graphc
from graphc import nn


class LeNet(nn.Module):
    """LeNet-5 as the tutorial writes it: 1x32x32 images, two conv+pool stages, three linear layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
        x = graphc.flatten(x, 1)
        x = nn.functional.relu(self.fc1(x))
        x = nn.functional.relu(self.fc2(x))
        return self.fc3(x)


def train_step(model, optimizer, scheduler=None, criterion=None):
    """The tutorial's step: zero_grad, loss (cross-entropy unless given), backward, step (and a
    scheduler step)."""
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()

    def step(x, y):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss
    return step
