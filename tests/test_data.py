"""graphc.utils.data: datasets, DataLoader batching/shuffling/collation, random_split."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import graphc
from graphc.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler,
                               SequentialSampler, Subset, TensorDataset, default_collate, random_split)
from nn_testing import reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")


class Squares(Dataset):
    """A map-style dataset returning (int, float, numpy array, dict) samples."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, float(i) ** 2, np.full(2, i, dtype=np.float32), {"label": i % 3, "x": graphc.tensor([i, -i])}


def make_dataset(rng, n=10):
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = rng.integers(0, 5, n)
    return x, y, TensorDataset(graphc.tensor(x), graphc.tensor(y))


def test_tensor_dataset(rng):
    x, y, dataset = make_dataset(rng)
    assert len(dataset) == 10
    sample = dataset[4]
    assert isinstance(sample, tuple) and len(sample) == 2
    np.testing.assert_array_equal(sample[0].numpy(), x[4])
    assert sample[1].item() == y[4]
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(graphc.zeros(3, 2), graphc.zeros(4))


@pytest.mark.parametrize("drop_last", [False, True])
def test_sequential_batches(rng, drop_last):
    x, y, dataset = make_dataset(rng)
    loader = DataLoader(dataset, batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == (2 if drop_last else 3)
    sizes = [len(b[1]) for b in batches]
    assert sizes == ([4, 4] if drop_last else [4, 4, 2])
    xb, yb = batches[1]
    assert xb.shape == (4, 3) and xb.dtype is graphc.float32 and yb.dtype is graphc.int64
    np.testing.assert_array_equal(xb.numpy(), x[4:8])
    np.testing.assert_array_equal(yb.numpy(), y[4:8])


def test_shuffle_is_a_permutation_and_seeded(rng):
    x, y, dataset = make_dataset(rng, 13)
    graphc.manual_seed(7)
    loader = DataLoader(dataset, batch_size=5, shuffle=True)
    epoch1 = np.concatenate([yb.numpy() for _, yb in loader])
    order1 = [np.flatnonzero((x == row).all(1))[0] for xb, _ in loader for row in xb.numpy()]
    assert sorted(order1) == list(range(13))          # every sample exactly once
    assert order1 != list(range(13))
    graphc.manual_seed(7)
    again = np.concatenate([yb.numpy() for _, yb in loader])
    np.testing.assert_array_equal(again, epoch1)      # same seed, same order
    third = np.concatenate([yb.numpy() for _, yb in loader])
    fourth = np.concatenate([yb.numpy() for _, yb in loader])
    assert not (np.array_equal(third, fourth) and np.array_equal(third, again))  # epochs reshuffle
    # an explicit generator gives the same order whatever the global seed
    orders = []
    for global_seed in (1, 2):
        graphc.manual_seed(global_seed)
        generator = graphc.Generator().manual_seed(123)
        loader = DataLoader(dataset, batch_size=4, shuffle=True, generator=generator)
        orders.append(np.concatenate([yb.numpy() for _, yb in loader]))
    np.testing.assert_array_equal(orders[0], orders[1])


def test_default_collate_structures():
    loader = DataLoader(Squares(5), batch_size=2)
    first = next(iter(loader))
    assert isinstance(first, list) and len(first) == 4  # tuples collate to lists, as in PyTorch
    ints, floats, arrays, dicts = first
    assert ints.dtype is graphc.int64 and ints.tolist() == [0, 1]
    assert floats.dtype is graphc.float64 and floats.tolist() == [0.0, 1.0]
    assert arrays.dtype is graphc.float32 and arrays.shape == (2, 2)
    assert set(dicts) == {"label", "x"} and dicts["x"].tolist() == [[0, 0], [1, -1]]
    assert len(loader) == 3 and [len(b[0]) for b in loader] == [2, 2, 1]
    Point = collections.namedtuple("Point", "a b")
    point = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(point, Point) and point.a.tolist() == [1, 3]
    assert default_collate(["a", "b"]) == ["a", "b"]
    custom = DataLoader(Squares(4), batch_size=2, collate_fn=lambda batch: [s[0] for s in batch])
    assert list(custom) == [[0, 1], [2, 3]]
    unbatched = DataLoader(Squares(3), batch_size=None)
    assert len(unbatched) == 3 and next(iter(unbatched))[0] == 0


def test_samplers_and_loader_arguments(rng):
    _, _, dataset = make_dataset(rng, 7)
    assert list(SequentialSampler(dataset)) == list(range(7))
    graphc.manual_seed(0)
    assert sorted(RandomSampler(dataset)) == list(range(7))
    assert list(BatchSampler(range(5), 2, drop_last=False)) == [[0, 1], [2, 3], [4]]
    loader = DataLoader(dataset, batch_sampler=BatchSampler(SequentialSampler(dataset), 3, True))
    assert [len(b[0]) for b in loader] == [3, 3]
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(dataset, sampler=SequentialSampler(dataset), shuffle=True)
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        DataLoader(dataset, batch_size=0)


def test_random_split_subset_and_concat(rng):
    x, y, dataset = make_dataset(rng, 10)
    train, val = random_split(dataset, [7, 3], generator=graphc.Generator().manual_seed(0))
    assert len(train) == 7 and len(val) == 3 and isinstance(train, Subset)
    assert sorted(train.indices + val.indices) == list(range(10))
    again, _ = random_split(dataset, [7, 3], generator=graphc.Generator().manual_seed(0))
    assert again.indices == train.indices
    parts = random_split(dataset, [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset"):
        random_split(dataset, [4, 4])
    np.testing.assert_array_equal(train[0][0].numpy(), x[train.indices[0]])
    both = ConcatDataset([Subset(dataset, [0, 1]), Subset(dataset, [5])])
    assert len(both) == 3 and both[2][1].item() == y[5] and both[-1][1].item() == y[5]
    assert len(dataset + dataset) == 20
    loader = DataLoader(train, batch_size=4)
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(yb.numpy(), y[train.indices[:4]])
