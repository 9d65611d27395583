"""`graphc.datasets`: MNIST / Fashion-MNIST from IDX files, and scikit-learn's bundled 8x8 digits.

    from graphc import datasets, transforms
    train = datasets.MNIST("~/data/mnist", train=True, transform=transforms.ToTensor())
    image, label = train[0]             # a 1x28x28 float tensor in [0, 1], an int

Nothing is downloaded: `MNIST(root)` reads the four IDX files (raw or gzip-compressed) that the
user already has. Samples are `(image, target)`; without a transform the image is a uint8 NumPy
array of shape HxW (torchvision gives a PIL image there; the `transforms` here take either).
`dataset.data` (uint8, NxHxW) and `dataset.targets` (int64, N) hold the whole split as NumPy
arrays, for code that batches them directly.

`digits(train=True)` returns scikit-learn's bundled 8x8 handwritten digits (1797 images, no
download) as the same kind of dataset, with intensities rescaled from 0..16 to uint8 0..255 so the
same transforms apply.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from graphc.utils.data.dataset import Dataset

__all__ = ["IDXError", "read_idx", "write_idx", "ImageDataset", "MNIST", "FashionMNIST", "digits"]

# IDX type codes (http://yann.lecun.com/exdb/mnist/): data are stored big-endian.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(d).newbyteorder("=").str: code for code, d in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """An IDX file that cannot be read: names the file and what is wrong with it."""


def _open_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:  # by content, so a gzip file without .gz (or the reverse) still reads
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, ValueError) as error:
            raise IDXError(f"{path}: looks gzip-compressed but cannot be decompressed ({error})") from None
    return data


def read_idx(path) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a NumPy array in native byte order."""
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: {len(data)} bytes is too short for an IDX header (4-byte magic number)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise IDXError(f"{path}: not an IDX file (magic number {data[:4].hex()}; expected 0000 then a type "
                       f"code among {', '.join(f'{c:02x}' for c in _IDX_DTYPES)} and the number of dims)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header ({len(data)} bytes; {ndim} dims need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IDXError(f"{path}: {what}: header says shape {tuple(shape)} of {dtype.name} "
                       f"({expected} data bytes), file holds {actual}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write `array` as an IDX file; gzip-compressed when `compress` (default: path ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise TypeError(f"write_idx: IDX cannot hold {array.dtype}; use uint8, int8, int16, int32, "
                        f"float32 or float64")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


class ImageDataset(Dataset):
    """Images (uint8 NxHxW NumPy array) with integer targets; `transform` is applied per sample."""

    classes: list = []

    def __init__(self, data: np.ndarray, targets: np.ndarray, transform=None, target_transform=None):
        if len(data) != len(targets):
            raise ValueError(f"{type(self).__name__}: {len(data)} images but {len(targets)} targets")
        self.data = data
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index):
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}"]
        lines += [f"    {line}" for line in self.extra_repr().splitlines()]
        for label, transform in (("Transform", self.transform), ("Target transform", self.target_transform)):
            if transform is not None:
                text = repr(transform).splitlines()
                lines.append(f"    {label}: {text[0]}")
                lines += [f"    {line}" for line in text[1:]]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return ""


class MNIST(ImageDataset):
    """MNIST from the four IDX files in `root` (raw or .gz), as `(image, target)` samples.

    Looks in `root`, then `root/<ClassName>/raw` (torchvision's layout). Nothing is downloaded:
    a missing file raises FileNotFoundError naming the files expected.
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]
    FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        if download:
            raise NotImplementedError(f"{type(self).__name__}: graphc downloads nothing; fetch the IDX files "
                                      f"({', '.join(self.FILES[True] + self.FILES[False])}) yourself and pass "
                                      f"their folder as root")
        self.root = Path(os.path.expanduser(str(root)))
        self.train = train
        images_path, labels_path = (self._find(name) for name in self.FILES[train])
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IDXError(f"{images_path}: expected uint8 images of shape (N, H, W), found {images.dtype} "
                           f"{images.shape}")
        if labels.ndim != 1:
            raise IDXError(f"{labels_path}: expected labels of shape (N,), found {labels.shape}")
        if len(images) != len(labels):
            raise IDXError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
        super().__init__(images, labels.astype(np.int64), transform, target_transform)

    def _folders(self) -> list[Path]:
        return [self.root, self.root / type(self).__name__ / "raw"]

    def _find(self, name: str) -> Path:
        for folder in self._folders():
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        expected = [f"{n}[.gz]" for pair in self.FILES.values() for n in pair]
        looked = " and ".join(str(f) for f in self._folders())
        raise FileNotFoundError(
            f"{type(self).__name__}: {name} (or {name}.gz) not found in {looked}.\n"
            f"Expected the IDX files: {', '.join(expected)}.\n"
            f"graphc downloads nothing: put the {type(self).__name__} files there "
            f"(raw or gzip-compressed) and pass that folder as root.")

    def extra_repr(self) -> str:
        return f"Root location: {self.root}\nSplit: {'Train' if self.train else 'Test'}"


class FashionMNIST(MNIST):
    """Fashion-MNIST: the same IDX file names and layout as MNIST."""

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


class Digits(ImageDataset):
    """scikit-learn's 8x8 digits; see `digits()`."""

    classes = [str(i) for i in range(10)]

    def __init__(self, data, targets, train, transform=None, target_transform=None):
        super().__init__(data, targets, transform, target_transform)
        self.train = train

    def extra_repr(self) -> str:
        return f"Source: sklearn.datasets.load_digits (8x8)\nSplit: {'Train' if self.train else 'Test'}"


def _load_digits():
    """(pixels 1797x64 float, targets 1797) of scikit-learn's digits.

    Reads the CSV scikit-learn ships (what `load_digits` parses) without importing
    `sklearn.datasets`, whose import costs seconds; falls back to `load_digits` if the file moved.
    """
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ImportError("graphc.datasets.digits needs scikit-learn: pip install 'graphc[examples]' "
                          "(or pip install scikit-learn)")
    for folder in spec.submodule_search_locations or ():
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
            if table.shape == (1797, 65):
                return table[:, :-1], table[:, -1].astype(np.int64)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("graphc.datasets.digits needs scikit-learn: pip install 'graphc[examples]' "
                          "(or pip install scikit-learn)") from None
    bunch = load_digits()
    return bunch.data, bunch.target


def digits(train: bool = True, transform=None, target_transform=None, test_fraction: float = 0.2,
           seed: int = 0) -> Digits:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, nothing downloaded) as a dataset.

    Images are uint8 8x8 arrays (the 0..16 intensities scaled to 0..255), targets ints 0..9. The
    split is a fixed shuffle (`seed`) with `test_fraction` of the images held out, stratified by
    class so both splits see every digit in proportion; `train=True` and `train=False` partition
    the 1797 images.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits: test_fraction must be in (0, 1), got {test_fraction}")
    pixels, targets = _load_digits()
    images = np.rint(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    targets = targets.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        test[members[:int(round(len(members) * test_fraction))]] = True
    chosen = np.flatnonzero(~test if train else test)
    chosen = chosen[rng.permutation(len(chosen))]
    return Digits(np.ascontiguousarray(images[chosen]), targets[chosen], train, transform, target_transform)
