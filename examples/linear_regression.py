"""The tutorial's linear regression: learn y = 2x + 1 from 11 points with graphc.

    python examples/linear_regression.py --epochs 1000
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1000, help="full-batch gradient steps")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    args = parser.parse_args(argv)

    x_values = np.arange(11, dtype=np.float32).reshape(-1, 1)
    x = graphc.from_numpy(x_values)
    y = 2 * x + 1

    graphc.manual_seed(0)
    weight = graphc.randn(1, 1, requires_grad=True)
    bias = graphc.zeros(1, requires_grad=True)
    for epoch in range(args.epochs):
        prediction = x @ weight + bias
        loss = ((prediction - y) ** 2).mean()
        loss.backward()
        with graphc.no_grad():
            weight -= args.lr * weight.grad
            bias -= args.lr * bias.grad
        weight.grad.zero_()
        bias.grad.zero_()
        if epoch % 200 == 0:
            print(f"epoch {epoch:4d}  loss {loss.item():.6f}")
    print(f"learned weight {weight.item():.4f} (true 2), bias {bias.item():.4f} (true 1)")


if __name__ == "__main__":
    main()
