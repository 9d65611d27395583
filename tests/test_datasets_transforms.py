"""graphc.datasets (IDX reader, MNIST, digits) and graphc.transforms, against NumPy.

The IDX files are written here (raw and gzip), byte by byte from the format's definition, so the
reader is checked against the format and not only against its own writer.
"""
from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest

import graphc
from graphc import datasets, transforms
from graphc.datasets import IDXError, read_idx, write_idx
from graphc.utils.data import DataLoader
from nn_testing import reference_backend  # noqa: F401  (fixture)

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
IDX_TYPES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`, from the format's definition: 0, 0, type, ndim, big-endian
    uint32 dims, big-endian data."""
    header = bytes([0, 0, IDX_TYPES[array.dtype.name], array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, array, compress=False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def random_of(rng, dtype, shape):
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


def make_mnist(folder, rng, train=12, test=5, size=(28, 28), compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (train, *size)).astype(np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, train).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, *size)).astype(np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, test).astype(np.uint8)}
    for name, array in arrays.items():
        write(folder / (name + (".gz" if compress else "")), array, compress)
    return arrays


# ----------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(IDX_TYPES))
def test_idx_reader_round_trip(tmp_path, rng, dtype, compress):
    ndim = int(rng.integers(1, 4))
    shape = tuple(int(s) for s in rng.integers(1, 6, ndim))
    array = random_of(rng, dtype, shape)
    path = write(tmp_path / "data.idx", array, compress)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype).newbyteorder("=") and result.shape == shape
    np.testing.assert_array_equal(result, array)
    result[...] = 0  # a writable, native-order copy


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", list(IDX_TYPES))
def test_idx_writer_matches_the_format(tmp_path, rng, dtype, suffix):
    array = random_of(rng, dtype, (3, 2, 4))
    path = tmp_path / f"out.idx{suffix}"
    write_idx(path, array)
    data = path.read_bytes()
    if suffix:
        assert data[:2] == b"\x1f\x8b"
        data = gzip.decompress(data)
    assert data == idx_bytes(array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_gzip_detected_by_content_not_name(tmp_path, rng):
    array = rng.integers(0, 256, (4, 3)).astype(np.uint8)
    write(tmp_path / "plain-name", array, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), array)


def test_idx_writer_rejects_types_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, np.int64))


@pytest.mark.parametrize("content,message", [
    (b"\x00\x00", "too short"),
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "not an IDX file"),
    (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),                   # unknown type code
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),             # 3 dims, 1 given
    (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(5), "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02" + bytes(3), "trailing bytes"),
    (b"\x1f\x8b" + bytes(30), "gzip"),
])
def test_bad_idx_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("layout", ["root", "torchvision"])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_mnist_reads_idx_files(tmp_path, rng, compress, layout):
    folder = tmp_path if layout == "root" else tmp_path / "MNIST" / "raw"
    arrays = make_mnist(folder, rng, compress=compress)
    for train, prefix in ((True, "train"), (False, "t10k")):
        dataset = datasets.MNIST(tmp_path, train=train)
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        assert len(dataset) == len(labels)
        np.testing.assert_array_equal(dataset.data, images)
        np.testing.assert_array_equal(dataset.targets, labels.astype(np.int64))
        index = int(rng.integers(len(dataset)))
        image, label = dataset[index]
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (28, 28)
        np.testing.assert_array_equal(image, images[index])
        assert type(label) is int and label == labels[index]
    assert "Number of datapoints: 5" in repr(dataset) and "Split: Test" in repr(dataset)


def test_mnist_transform_hooks_and_data_loader(tmp_path, rng, reference_backend):
    arrays = make_mnist(tmp_path, rng, train=10)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.25,))])
    dataset = datasets.MNIST(str(tmp_path), train=True, transform=transform, target_transform=lambda t: t + 100)
    image, label = dataset[3]
    expected = (arrays["train-images-idx3-ubyte"][3].astype(np.float32) / 255 - 0.5) / 0.25
    assert isinstance(image, graphc.Tensor) and tuple(image.shape) == (1, 28, 28)
    np.testing.assert_allclose(image.numpy()[0], expected, rtol=1e-6, atol=1e-6)
    assert label == arrays["train-labels-idx1-ubyte"][3] + 100
    images, labels = next(iter(DataLoader(dataset, batch_size=4)))
    assert tuple(images.shape) == (4, 1, 28, 28) and images.dtype == graphc.float32
    assert labels.dtype == graphc.int64
    np.testing.assert_array_equal(labels.numpy(), arrays["train-labels-idx1-ubyte"][:4] + 100)
    assert "Transform:" in repr(dataset) and "Normalize" in repr(dataset)


def test_fashion_mnist_uses_its_own_folder(tmp_path, rng):
    arrays = make_mnist(tmp_path / "FashionMNIST" / "raw", rng, compress=True)
    dataset = datasets.FashionMNIST(tmp_path, train=False)
    np.testing.assert_array_equal(dataset.data, arrays["t10k-images-idx3-ubyte"])
    assert dataset.classes[9] == "Ankle boot"
    with pytest.raises(FileNotFoundError):
        datasets.MNIST(tmp_path, train=False)    # MNIST does not look in FashionMNIST/raw


def test_missing_files_name_what_is_expected(tmp_path, rng):
    with pytest.raises(FileNotFoundError) as info:
        datasets.MNIST(tmp_path / "nowhere")
    message = str(info.value)
    for name in MNIST_FILES:
        assert name in message
    assert "downloads nothing" in message and "nowhere" in message
    # only the test split present: the train split names its first missing file
    folder = tmp_path / "partial"
    arrays = make_mnist(folder, rng)
    (folder / "train-labels-idx1-ubyte").unlink()
    assert len(datasets.MNIST(folder, train=False)) == len(arrays["t10k-labels-idx1-ubyte"])
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        datasets.MNIST(folder, train=True)
    with pytest.raises(NotImplementedError, match="downloads nothing"):
        datasets.MNIST(folder, download=True)


def test_inconsistent_mnist_files_give_clear_errors(tmp_path, rng):
    make_mnist(tmp_path, rng, train=6)
    write(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, 5).astype(np.uint8))
    with pytest.raises(IDXError, match="6 images but .* 5 labels"):
        datasets.MNIST(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte", rng.standard_normal((5, 4, 4)).astype(np.float32))
    with pytest.raises(IDXError, match="uint8 images"):
        datasets.MNIST(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file at all")
    with pytest.raises(IDXError, match="train-images-idx3-ubyte"):
        datasets.MNIST(tmp_path)


# -------------------------------------------------------------------------------------- digits

def test_digits_splits_scikit_learns_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    train, test = datasets.digits(train=True), datasets.digits(train=False)
    assert len(train) + len(test) == len(bunch.target) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 10
    for split in (train, test):
        assert split.data.dtype == np.uint8 and split.data.shape[1:] == (8, 8)
        assert set(np.unique(split.targets)) == set(range(10))
    # every image is one of the bunch's, scaled 0..16 -> 0..255, with its label; the splits are disjoint
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8).reshape(len(bunch.target), -1)
    labels_of = {}
    for row, label in zip(scaled, bunch.target):
        labels_of.setdefault(row.tobytes(), set()).add(int(label))
    for split in (train, test):
        for image, label in zip(split.data.reshape(len(split), -1), split.targets):
            assert int(label) in labels_of[image.tobytes()]
    train_rows = {image.tobytes() for image in train.data.reshape(len(train), -1)}
    test_rows = [image.tobytes() for image in test.data.reshape(len(test), -1)]
    assert sum(row in train_rows for row in test_rows) <= 5  # the digits data hold a few duplicate images
    again = datasets.digits(train=True)
    np.testing.assert_array_equal(again.data, train.data)   # a fixed split
    image, label = datasets.digits(train=False, transform=transforms.ToTensor())[0]
    assert tuple(image.shape) == (1, 8, 8) and float(image.max()) <= 1.0 and isinstance(label, int)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'graphc\[examples\]'"):
        datasets.digits()


# ---------------------------------------------------------------------------------- transforms

@pytest.mark.parametrize("channels", [None, 1, 3])
def test_to_tensor_uint8_matches_numpy(rng, channels):
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9))) + ((channels,) if channels else ())
    image = rng.integers(0, 256, shape).astype(np.uint8)
    result = transforms.ToTensor()(image)
    hwc = image[:, :, None] if channels is None else image
    expected = hwc.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    assert result.dtype == graphc.float32 and tuple(result.shape) == expected.shape
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-7, atol=0)
    assert 0.0 <= result.numpy().min() and result.numpy().max() <= 1.0


@pytest.mark.parametrize("dtype,expected_dtype", [("float32", "float32"), ("float64", "float64"),
                                                  ("int16", "int64"), ("int32", "int32"), ("bool", "bool"),
                                                  ("float16", "float32")])
def test_to_tensor_other_dtypes_keep_their_values(rng, dtype, expected_dtype):
    image = (rng.standard_normal((5, 4, 2)) * 10).astype(dtype)
    result = transforms.ToTensor()(image)
    assert result.dtype == getattr(graphc, expected_dtype)
    np.testing.assert_array_equal(result.numpy(), image.transpose(2, 0, 1).astype(expected_dtype))


def test_to_tensor_follows_the_default_dtype_and_takes_array_likes(rng):
    image = rng.integers(0, 256, (3, 4)).astype(np.uint8)
    previous = graphc.get_default_dtype()
    graphc.set_default_dtype(graphc.float64)
    try:
        result = transforms.ToTensor()(image)
    finally:
        graphc.set_default_dtype(previous)
    assert result.dtype == graphc.float64
    np.testing.assert_allclose(result.numpy()[0], image / 255.0, rtol=1e-15)

    class ImageLike:  # what a PIL image offers: the array interface
        def __array__(self, dtype=None, copy=None):
            return image
    np.testing.assert_allclose(transforms.ToTensor()(ImageLike()).numpy()[0], image / np.float32(255), rtol=1e-7)


def test_to_tensor_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="2 or 3 dimensional"):
        transforms.ToTensor()(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="already a tensor"):
        transforms.ToTensor()(graphc.zeros(1, 2, 2))
    with pytest.raises(TypeError, match="NumPy array or PIL image"):
        transforms.ToTensor()(np.array([["a", "b"]]))


@pytest.mark.parametrize("batch", [None, 3])
def test_normalize_matches_numpy(rng, batch, reference_backend):
    channels = int(rng.integers(1, 5))
    shape = ((batch,) if batch else ()) + (channels, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    x = rng.standard_normal(shape).astype(np.float32)
    mean = rng.standard_normal(channels)
    std = rng.uniform(0.2, 2.0, channels)
    result = transforms.Normalize(mean.tolist(), tuple(std))(graphc.tensor(x))
    expected = (x - mean.reshape(-1, 1, 1).astype(np.float32)) / std.reshape(-1, 1, 1).astype(np.float32)
    assert result.dtype == graphc.float32 and tuple(result.shape) == shape
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_normalize_single_values_inplace_and_gradient(rng, reference_backend):
    x = rng.standard_normal((3, 4, 5))
    mean, std = float(rng.standard_normal()), float(rng.uniform(0.5, 2))
    tensor = graphc.tensor(x)
    result = transforms.Normalize(mean, std, inplace=True)(tensor)
    np.testing.assert_allclose(tensor.numpy(), (x - mean) / std, rtol=1e-12)
    assert result is tensor
    leaf = graphc.tensor(x, requires_grad=True)
    transforms.Normalize((mean,) * 3, (std,) * 3)(leaf).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), np.full_like(x, 1 / std), rtol=1e-12)


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="division by zero"):
        transforms.Normalize((0.5, 0.5), (1.0, 0.0))
    normalize = transforms.Normalize((0.5, 0.5), (0.2, 0.3))
    with pytest.raises(ValueError, match="2 values for a tensor with 3 channels"):
        normalize(graphc.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="float tensor"):
        normalize(graphc.zeros(2, 4, 4, dtype=graphc.int64))
    with pytest.raises(TypeError, match="ToTensor first"):
        normalize(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        normalize(graphc.zeros(4, 4))


def test_compose_and_lambda_match_a_numpy_pipeline(rng, reference_backend):
    image = rng.integers(0, 256, (6, 5)).astype(np.uint8)
    pipeline = transforms.Compose([
        transforms.Lambda(lambda a: a.repeat(2, axis=0).repeat(2, axis=1)),   # nearest x2 upsample
        transforms.ToTensor(),
        transforms.Normalize((0.25,), (0.5,)),
        transforms.Lambda(lambda t: t.flatten()),
    ])
    expected = ((image.repeat(2, 0).repeat(2, 1).astype(np.float32) / 255 - 0.25) / 0.5).reshape(-1)
    np.testing.assert_allclose(pipeline(image).numpy(), expected, rtol=1e-6, atol=1e-6)
    text = repr(pipeline)
    assert text.startswith("Compose(") and "ToTensor()" in text and "Normalize(mean=(0.25,), std=(0.5,))" in text
    with pytest.raises(TypeError, match="callable"):
        transforms.Lambda(3)
    with pytest.raises(TypeError, match="callable"):
        transforms.Compose([transforms.ToTensor(), "not a transform"])
    assert transforms.Compose([])(image) is image
