"""An MLP classifying handwritten digits, with the whole train step compiled by graphc.compile.

    python examples/mlp_digits.py                      # scikit-learn's bundled 8x8 digits (no download)
    python examples/mlp_digits.py --data ~/data/mnist  # MNIST IDX files you already have (28x28)
    python examples/mlp_digits.py --plot loss.png --epochs 30

The data go through graphc.datasets and graphc.transforms (ToTensor, Normalize). The model is
Flatten -> Linear -> ReLU -> Linear -> ReLU -> Linear, trained with Adam and cross-entropy; the
train step (forward, loss, backward, optimizer step) is traced once and replayed as one native
call per batch. Ends with the test accuracy and the time per train step.
"""
from __future__ import annotations

import time

import graphc
from graphc import nn, optim

from _common import (add_common_arguments, add_data_arguments, check_arguments, load_image_splits, evaluate,
                     parser_for, save_plot, train_classifier)


def make_model(inputs: int, hidden: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(inputs, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden // 2), nn.ReLU(),
        nn.Linear(hidden // 2, classes),
    )


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    add_common_arguments(parser, epochs=15)
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--hidden", type=int, default=128, help="width of the first hidden layer (default 128)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--no-compile", action="store_true", help="run the train step on lazy tensors instead")
    args = parser.parse_args(argv)
    check_arguments(parser, args)

    start = time.perf_counter()
    graphc.manual_seed(args.seed)
    train, test, description = load_image_splits(args, parser)
    print(description)
    inputs = train[0][0].numel()
    model = make_model(inputs, args.hidden)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    print(f"model: {inputs} -> {args.hidden} -> {args.hidden // 2} -> 10, "
          f"{sum(p.numel() for p in model.parameters())} parameters")

    losses, timer = train_classifier(model, optimizer, train, test, args, compiled=not args.no_compile)
    correct, total = evaluate(model, *test)
    if args.plot:
        save_plot(args.plot, {"train loss": losses}, xlabel="step", title="MLP on digits", logy=True)
    mode = "lazy" if args.no_compile else "compiled"
    print(f"total time {time.perf_counter() - start:.1f} s")
    print(f"test accuracy {100 * correct / total:.2f}% ({correct}/{total}), "
          f"{timer.median_ms():.2f} ms/step ({mode}, batch {min(args.batch_size, len(train[1]))})")


if __name__ == "__main__":
    main()
