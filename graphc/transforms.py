"""`graphc.transforms`: the torchvision transforms the tutorials use, for NumPy images.

    from graphc import transforms
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    x = transform(image)        # uint8 HxW array -> normalized 1xHxW float tensor

`ToTensor` takes a NumPy array (HxW or HxWxC) or anything `np.asarray` turns into one (a PIL
image); uint8 images are scaled to [0, 1], as torchvision does.
"""
from __future__ import annotations

import numbers

import numpy as np

from graphc import dtypes
from graphc.tensor import Tensor

__all__ = ["Compose", "ToTensor", "Normalize", "Lambda"]


class Compose:
    """Apply `transforms` in order: ``Compose([ToTensor(), Normalize(m, s)])(image)``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """An HxW or HxWxC image -> a CxHxW tensor; uint8 values are divided by 255 (float in [0, 1]).

    Arrays of other dtypes keep their values (float32/float64 keep their dtype; other integer types
    become int64, float16 becomes float32), as torchvision's ToTensor does for non-byte arrays.
    """

    def __call__(self, pic):
        if isinstance(pic, Tensor):
            raise TypeError("ToTensor: pic should be a NumPy array or PIL image, got a graphc Tensor "
                            "(it is already a tensor)")
        array = pic if isinstance(pic, np.ndarray) else np.asarray(pic)
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise TypeError(f"ToTensor: pic should be a NumPy array or PIL image of numbers, got "
                            f"{type(pic).__name__} of {array.dtype}")
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(f"ToTensor: pic should be 2 or 3 dimensional (HxW or HxWxC), got {array.ndim} "
                             f"dimensions of shape {array.shape}")
        chw = array.transpose(2, 0, 1)
        if array.dtype == np.uint8:
            target = dtypes.get_default_dtype().numpy
            out = chw.astype(target) / target.type(255)
        elif array.dtype.kind == "b":
            out = chw.astype(np.bool_)
        elif array.dtype.kind in "iu":
            out = chw.astype(np.int32 if array.dtype == np.int32 else np.int64)
        elif array.dtype in (np.float32, np.float64):
            out = chw
        else:
            out = chw.astype(np.float32)
        from graphc.creation import from_numpy
        return from_numpy(np.ascontiguousarray(out))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel of a float tensor shaped (..., C, H, W).

    `mean` and `std` are sequences with one value per channel (or one value for all channels).
    """

    def __init__(self, mean, std, inplace: bool = False):
        self.mean = _values("mean", mean)
        self.std = _values("std", std)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float, leading to "
                             f"division by zero (std={tuple(self.std.tolist())})")
        self.inplace = inplace

    def __call__(self, tensor):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"Normalize: input should be a graphc Tensor (use ToTensor first), got "
                            f"{type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"Normalize: input tensor should be a float tensor, got {tensor.dtype}")
        if tensor.dim() < 3:
            raise ValueError(f"Normalize: expected a tensor image of shape (..., C, H, W), got shape "
                             f"{tuple(tensor.shape)}")
        channels = tensor.shape[-3]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise ValueError(f"Normalize: {name} has {values.size} values for a tensor with {channels} "
                                 f"channels (shape {tuple(tensor.shape)})")
        from graphc.creation import tensor as make
        mean = make(self.mean.reshape(-1, 1, 1), dtype=tensor.dtype)
        std = make(self.std.reshape(-1, 1, 1), dtype=tensor.dtype)
        if self.inplace:
            return tensor.sub_(mean).div_(std)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={tuple(self.mean.tolist())}, std={tuple(self.std.tolist())})"


class Lambda:
    """A user function as a transform: ``Lambda(lambda x: x.flatten())``."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _values(name: str, value) -> np.ndarray:
    if isinstance(value, numbers.Number):
        value = (value,)
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"Normalize: {name} must have at least one value")
    return array
