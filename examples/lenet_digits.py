"""The tutorial's LeNet on handwritten digits, with the whole train step compiled by graphc.compile.

    python examples/lenet_digits.py                      # scikit-learn's 8x8 digits, upsampled to 32x32
    python examples/lenet_digits.py --data ~/data/mnist  # MNIST IDX files (28x28, padded to 32x32)
    python examples/lenet_digits.py --plot loss.png

LeNet as in PyTorch's "Neural Networks" tutorial: Conv2d(1, 6, 5) ReLU MaxPool2 -> Conv2d(6, 16, 5)
ReLU MaxPool2 -> Linear 400 -> 120 -> 84 -> 10. It expects 32x32 inputs, so each 8x8 digit is
upsampled x4 with nearest neighbours (each pixel becomes a 4x4 block) by a Lambda transform before
ToTensor; MNIST's 28x28 images are zero-padded by 2. Ends with the test accuracy and the time per
train step.
"""
from __future__ import annotations

import time

import numpy as np

import graphc
import graphc.nn.functional as F
from graphc import nn, optim

from _common import (add_common_arguments, add_data_arguments, check_arguments, evaluate, load_image_splits,
                     parser_for, save_plot, train_classifier)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # 1 input image channel, 6 output channels, 5x5 square convolution kernel
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        # an affine operation: y = Wx + b (16 channels of 5x5 after the second pooling)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))     # 1x32x32 -> 6x28x28 -> 6x14x14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)          # -> 16x10x10 -> 16x5x5
        x = graphc.flatten(x, 1)                            # all dimensions except the batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def to_32x32(image: np.ndarray) -> np.ndarray:
    """8x8 -> 32x32 by repeating each pixel 4x4 (nearest neighbour); 28x28 -> 32x32 by zero padding."""
    height, width = image.shape[:2]
    if (height, width) == (32, 32):
        return image
    if 32 % height == 0 and 32 % width == 0:
        return image.repeat(32 // height, axis=0).repeat(32 // width, axis=1)
    if height <= 32 and width <= 32:
        top, left = (32 - height) // 2, (32 - width) // 2
        return np.pad(image, ((top, 32 - height - top), (left, 32 - width - left)))
    raise ValueError(f"LeNet needs images of at most 32x32, got {height}x{width}")


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    add_common_arguments(parser, epochs=8)
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--no-compile", action="store_true", help="run the train step on lazy tensors instead")
    args = parser.parse_args(argv)
    check_arguments(parser, args)

    start = time.perf_counter()
    graphc.manual_seed(args.seed)
    train, test, description = load_image_splits(args, parser, image_transform=to_32x32)
    print(description)
    net = Net()
    print(net)
    optimizer = optim.Adam(net.parameters(), lr=args.lr)

    losses, timer = train_classifier(net, optimizer, train, test, args, compiled=not args.no_compile)
    correct, total = evaluate(net, *test)
    if args.plot:
        save_plot(args.plot, {"train loss": losses}, xlabel="step", title="LeNet on digits", logy=True)
    mode = "lazy" if args.no_compile else "compiled"
    print(f"total time {time.perf_counter() - start:.1f} s")
    print(f"test accuracy {100 * correct / total:.2f}% ({correct}/{total}), "
          f"{timer.median_ms():.2f} ms/step ({mode}, batch {min(args.batch_size, len(train[1]))})")


if __name__ == "__main__":
    main()
