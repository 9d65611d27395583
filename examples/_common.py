"""Helpers shared by the examples: a progress bar (tqdm when installed), loss-curve plots, timing.

Not part of graphc's API; each example imports it from its own folder (`python examples/NAME.py`
puts `examples/` on sys.path).
"""
from __future__ import annotations

import argparse
import sys
import time

EXTRA_HINT = "pip install 'graphc[examples]'"


def add_common_arguments(parser: argparse.ArgumentParser, epochs: int | None = None, seed: int = 0) -> None:
    """--epochs, --seed, --plot FILE and --no-progress, the same in every example."""
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs, help=f"passes over the data (default {epochs})")
    parser.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    parser.add_argument("--plot", metavar="FILE", help="write the loss curve to FILE (a PNG; needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for graphc's generated code and BLAS (default: GRAPHC_NUM_THREADS or "
                             "all cores; 1 is often faster for these small models on a busy machine)")


def parser_for(doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Fail before any work when an option cannot be honoured (e.g. --plot without matplotlib)."""
    if getattr(args, "plot", None):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(f"--plot needs matplotlib, which is not installed: {EXTRA_HINT} "
                         f"(or pip install matplotlib)")
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        import graphc
        graphc.set_num_threads(args.threads)
    if getattr(args, "epochs", 1) < 1:
        parser.error("--epochs must be at least 1")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        parser.error("--limit must be at least 1")


class _PlainBar:
    """What `progress` returns when tqdm is missing (or disabled): the iterable, with no-op extras."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


_active_bar = None


def progress(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm progress bar over `iterable` (or a manual one: `total=`, then `.update()`) when tqdm is
    installed and `enabled`; else the plain iterable, with no-op `set_postfix`/`update`/`close`."""
    global _active_bar
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            _active_bar = tqdm(iterable, **kwargs)
            return _active_bar
    _active_bar = None
    return _PlainBar(iterable)


def log(message: str) -> None:
    """Print without breaking a progress bar that is on screen."""
    if _active_bar is not None:
        from tqdm.auto import tqdm
        tqdm.write(message)
    else:
        print(message, flush=True)


def save_plot(path: str, curves: dict, xlabel: str = "step", ylabel: str = "loss", title: str = "",
              logy: bool = False) -> None:
    """Write `curves` ({label: list of y values, or (xs, ys)}) as a line plot to `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for label, values in curves.items():
        xs, ys = values if isinstance(values, tuple) else (range(len(values)), values)
        axes.plot(list(xs), list(ys), label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if logy:
        axes.set_yscale("log")
    if title:
        axes.set_title(title)
    if len(curves) > 1:
        axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    print(f"loss curve written to {path}")


def require_sklearn(parser: argparse.ArgumentParser) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        parser.error(f"this example trains on scikit-learn's bundled digits, and scikit-learn is not installed: "
                     f"{EXTRA_HINT} (or pass --data DIR with MNIST IDX files)")


class Timer:
    """Wall time of each call it wraps; `median_ms` ignores the few slow calls that trace and compile."""

    def __init__(self):
        self.times: list[float] = []

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.times.append(time.perf_counter() - self._start)

    def median_ms(self) -> float:
        ordered = sorted(self.times)
        return 1e3 * ordered[len(ordered) // 2] if ordered else float("nan")


def die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR",
                        help="train on MNIST (or Fashion-MNIST) IDX files in DIR instead of scikit-learn's digits "
                             "(train-images-idx3-ubyte[.gz] and the three others; nothing is downloaded)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="use only the first N training and N test images (quick runs)")


def load_image_splits(args, parser, image_transform=None):
    """(train, test) as (images N x 1 x H x W float tensor, labels int64 tensor), plus a description.

    Each image goes through the dataset's `transform` hook (`image_transform`, then ToTensor) once;
    the stacked split is then normalized with `Normalize`, which works on whole (N, C, H, W) batches,
    so training iterates over ready tensors instead of re-running per-image transforms every epoch.
    """
    import numpy as np

    import graphc
    from graphc import datasets, transforms

    steps = ([transforms.Lambda(image_transform)] if image_transform is not None else []) + [transforms.ToTensor()]
    transform = transforms.Compose(steps)
    if args.data:
        try:
            train = datasets.MNIST(args.data, train=True, transform=transform)
            test = datasets.MNIST(args.data, train=False, transform=transform)
        except (FileNotFoundError, datasets.IDXError) as error:
            die(str(error))
        source = f"MNIST IDX files in {args.data}"
    else:
        require_sklearn(parser)
        train = datasets.digits(train=True, transform=transform)
        test = datasets.digits(train=False, transform=transform)
        source = "scikit-learn's 8x8 digits"

    def stacked(dataset):
        count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        # ToTensor returns a tensor sharing a fresh NumPy array; .numpy() hands that array back
        images = np.stack([dataset[i][0].numpy() for i in range(count)])
        return images, dataset.targets[:count]

    train_images, train_labels = stacked(train)
    test_images, test_labels = stacked(test)
    mean, std = float(train_images.mean()), float(train_images.std())
    normalize = transforms.Normalize((mean,), (std,))
    splits = [(normalize(graphc.from_numpy(images)), graphc.from_numpy(labels))
              for images, labels in ((train_images, train_labels), (test_images, test_labels))]
    shape = "x".join(str(s) for s in train_images.shape[1:])
    description = (f"{source}: {len(train_labels)} train / {len(test_labels)} test images of {shape}, "
                   f"normalized with mean {mean:.4f} std {std:.4f}")
    return splits[0], splits[1], description


def evaluate(model, images, labels, batch_size: int = 1000):
    """(correct, total) of argmax predictions, in batches, without building a backward graph."""
    import graphc
    model.eval()
    correct = 0
    with graphc.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(images[start:start + batch_size])
            correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum().item())
    model.train()
    return correct, len(labels)


def train_classifier(model, optimizer, train, test, args, compiled: bool = True):
    """Mini-batch training with a (compiled) train step; logs each epoch, returns (losses, timer).

    The step is the usual five lines; `graphc.compile` traces it, backward and optimizer update
    included, into one graph and replays it as one native call per batch. The learning rate follows
    a cosine schedule over the epochs (stepped outside the compiled step: a new learning rate is a
    runtime input of the compiled program, not a retrace).
    """
    import graphc
    from graphc import nn
    from graphc.utils.data import DataLoader, TensorDataset

    criterion = nn.CrossEntropyLoss()

    def train_step(images, labels):
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    step = graphc.compile(train_step) if compiled else train_step
    # drop_last: every batch has the same shape, so the compiled step is traced once, not again
    # for a smaller last batch
    batch_size = min(args.batch_size, len(train[1]))
    loader = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=graphc.Generator().manual_seed(args.seed))
    scheduler = graphc.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    losses, timer = [], Timer()
    bar = progress(total=args.epochs * len(loader), enabled=not args.no_progress, desc="train", unit="step")
    for epoch in range(args.epochs):
        epoch_losses = []
        for images, labels in loader:
            with timer:
                loss = step(images, labels)
            epoch_losses.append(loss.item())
            bar.update(1)
        losses.extend(epoch_losses)
        scheduler.step()
        correct, total = evaluate(model, *test)
        bar.set_postfix(loss=f"{sum(epoch_losses) / len(epoch_losses):.4f}", test_acc=f"{100 * correct / total:.1f}%")
        log(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {sum(epoch_losses) / len(epoch_losses):.4f}  "
            f"test accuracy {100 * correct / total:.2f}%")
    bar.close()
    if compiled:
        stats = step.stats()
        log(f"compiled step: traced {stats['traces']} time(s), {sum(stats['calls'])} native replays")
    return losses, timer
