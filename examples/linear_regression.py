"""The tutorial's linear regression: learn y = 2x + 1 from 11 points with nn.Linear, MSELoss and SGD.

    python examples/linear_regression.py                 # lazy tensors, one realize per step
    python examples/linear_regression.py --compile       # the whole train step as one native call
    python examples/linear_regression.py --plot loss.png

Prints the loss every few hundred epochs and ends with the learned weight and bias.
"""
from __future__ import annotations

import numpy as np

import graphc
from graphc import nn, optim

from _common import Timer, add_common_arguments, check_arguments, log, parser_for, progress, save_plot


class LinearRegression(nn.Module):
    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.linear = nn.Linear(input_size, output_size)

    def forward(self, x):
        return self.linear(x)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    add_common_arguments(parser, epochs=1000)
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    parser.add_argument("--compile", action="store_true", help="compile the train step with graphc.compile")
    args = parser.parse_args(argv)
    check_arguments(parser, args)

    x_values = np.arange(11, dtype=np.float32).reshape(-1, 1)
    inputs = graphc.from_numpy(x_values)
    labels = graphc.from_numpy(2 * x_values + 1)

    graphc.manual_seed(args.seed)
    model = LinearRegression(1, 1)
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=args.lr)

    def train_step(x, y):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    step = graphc.compile(train_step) if args.compile else train_step
    losses, timer = [], Timer()
    bar = progress(range(args.epochs), enabled=not args.no_progress, desc="train", unit="epoch")
    for epoch in bar:
        with timer:
            loss = step(inputs, labels).item()
        losses.append(loss)
        if epoch % 200 == 0 or epoch == args.epochs - 1:
            log(f"epoch {epoch:4d}  loss {loss:.6f}")
            bar.set_postfix(loss=f"{loss:.4g}")
    bar.close()

    if args.plot:
        save_plot(args.plot, {"MSE loss": losses}, xlabel="epoch", title="linear regression", logy=True)
    mode = "compiled" if args.compile else "lazy"
    print(f"{timer.median_ms():.3f} ms/step ({mode})")
    weight, bias = model.linear.weight.item(), model.linear.bias.item()
    print(f"learned weight {weight:.4f} (true 2), bias {bias:.4f} (true 1), final loss {losses[-1]:.6f}")


if __name__ == "__main__":
    main()
