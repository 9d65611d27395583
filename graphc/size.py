"""`Size` (shapes print as ``graphc.Size([3, 2])``) and `device`."""
from __future__ import annotations

import math


class Size(tuple):
    """A shape: a tuple of ints that prints the way PyTorch's does."""

    def __repr__(self) -> str:
        return f"graphc.Size([{', '.join(str(s) for s in self)}])"

    __str__ = __repr__

    def numel(self) -> int:
        return math.prod(self)

    def __getitem__(self, index):
        result = super().__getitem__(index)
        return Size(result) if isinstance(index, slice) else result

    def __add__(self, other):
        return Size(tuple(self) + tuple(other)) if isinstance(other, tuple) else NotImplemented


class device:
    """Where a tensor lives: ``graphc.device('cpu')``, ``device('cuda:0')``, ``device('cuda', 1)``,
    ``device(type='cuda', index=0)``; a bare int means that CUDA device, as in PyTorch."""

    def __init__(self, type="cpu", index=None):
        spec = type
        if isinstance(spec, device):
            spec, index = spec.type, spec.index if index is None else index
        elif isinstance(spec, int) and not isinstance(spec, bool):
            spec, index = "cuda", spec
        spec = str(spec)
        if ":" in spec:
            spec, number = spec.split(":", 1)
            if index is not None:
                raise RuntimeError(f"device(): type (string) must not include an index because index "
                                   f"was passed explicitly: {type}")
            try:
                index = int(number)
            except ValueError:
                raise RuntimeError(f"Invalid device string: '{type}'") from None
        if spec not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {spec}")
        if index is not None and (int(index) < 0 or (spec == "cpu" and int(index) != 0)):
            raise RuntimeError(f"Device index must be {'0' if spec == 'cpu' else 'non-negative'}, "
                               f"got {index}")
        self.type = spec
        self.index = None if index is None else int(index)

    def __repr__(self) -> str:
        extra = f", index={self.index}" if self.index is not None else ""
        return f"device(type='{self.type}'{extra})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if other is self:   # the common case on the replay path: the same CPU device object
            return True
        if isinstance(other, str):
            try:
                other = device(other)
            except RuntimeError:
                return False
        return isinstance(other, device) and (self.type, self.index or 0) == (other.type, other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))


CPU = device("cpu")
