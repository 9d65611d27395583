"""Shape ops that return views: they share storage and compute PyTorch's strides.

Each view also gets a value node (a movement primitive on its base's node), which is what the
compiler sees; the strides are what `stride()`, `is_contiguous()` and `numpy()` see.
"""
from __future__ import annotations

import math

from graphc.errors import ShapeError, op_error
from graphc.source_location import user_location
from graphc.tensor import Tensor
from graphc.tensor_ops import node, normalize_dim, wrap


def _sizes(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def infer_shape(shape, numel: int, op: str, where: str) -> tuple:
    """Resolve one -1 in `shape`; check the element count."""
    shape = tuple(shape)
    if shape.count(-1) > 1:
        raise op_error(op, "only one dimension can be inferred", where, kind=ShapeError)
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise op_error(op, f"shape '{list(shape)}' is invalid for input of size {numel}", where,
                           kind=ShapeError)
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel or any(s < 0 for s in shape):
        raise op_error(op, f"shape '{list(shape)}' is invalid for input of size {numel}", where,
                       kind=ShapeError)
    return shape


def view_strides(old_shape, old_strides, new_shape):
    """Strides that let `new_shape` view memory laid out as (old_shape, old_strides), or None.

    The rule: the new shape may split or merge only dimensions that are contiguous with each other.
    """
    numel = math.prod(old_shape)
    if numel == 0 or not old_shape:
        from graphc.lazy import contiguous_strides
        return contiguous_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = old_strides[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        chunk_ends = tensor_d == 0 or (old_shape[tensor_d - 1] != 1 and
                                       old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)
        if chunk_ends:
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_strides[tensor_d - 1]
                tensor_numel = view_numel = 1
    return tuple(new_strides) if view_d == -1 else None


def _view_as(tensor: Tensor, view_shape, view_strides, offset, op: str, where: str, grad_name: str,
             **attrs) -> Tensor:
    value = node(op, [tensor._node], where, **attrs)
    value.grad_name = grad_name if value.requires_grad else None
    value.grad_inputs = (tensor._node,) if value.requires_grad else None
    return tensor._view(value, view_shape, view_strides, offset)


def view(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
        return self.to(shape[0])  # view(dtype) of the same size only
    where = user_location()
    shape = infer_shape(_sizes(shape), self.numel(), "view", where)
    strides = view_strides(self._shape, self._strides, shape)
    if strides is None:
        raise op_error("view", "view size is not compatible with input tensor's size and stride (at "
                               "least one dimension spans across two contiguous subspaces); input "
                               f"shape {list(self._shape)}, strides {list(self._strides)}, requested "
                               f"{list(shape)}", where, hint="Use .reshape(...) instead.", kind=ShapeError)
    return _view_as(self, shape, strides, self._offset, "reshape", where, "ViewBackward0", shape=shape)


def reshape(self, *shape):
    where = user_location()
    shape = infer_shape(_sizes(shape), self.numel(), "reshape", where)
    strides = view_strides(self._shape, self._strides, shape)
    if strides is not None:
        return _view_as(self, shape, strides, self._offset, "reshape", where, "ViewBackward0", shape=shape)
    return wrap(node("reshape", [self._node], where, shape=shape), "UnsafeViewBackward0", [self])


def view_as(self, other):
    return view(self, other._shape)


def reshape_as(self, other):
    return reshape(self, other._shape)


def permute(self, *dims):
    where = user_location()
    dims = _sizes(dims)
    if len(dims) != self.ndim:
        raise op_error("permute", f"number of dims don't match: the tensor has {self.ndim} "
                                  f"dimensions (shape {list(self._shape)}) but {len(dims)} were given: "
                                  f"{list(dims)}", where, kind=ShapeError)
    dims = tuple(normalize_dim(d, self.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(self.ndim)):
        raise op_error("permute", f"dims {list(dims)} are not a permutation of {self.ndim} dims", where,
                       kind=ShapeError)
    return _view_as(self, tuple(self._shape[d] for d in dims), tuple(self._strides[d] for d in dims),
                    self._offset, "permute", where, "PermuteBackward0", dims=dims)


def transpose(self, dim0, dim1):
    return _transposed(self, dim0, dim1, "TransposeBackward0")


def _transposed(self, dim0, dim1, grad_name: str):
    where = user_location()
    if self.ndim == 0:
        return _view_as(self, (), (), self._offset, "reshape", where, grad_name, shape=())
    a, b = normalize_dim(dim0, self.ndim, "transpose"), normalize_dim(dim1, self.ndim, "transpose")
    dims = list(range(self.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return _view_as(self, tuple(self._shape[d] for d in dims), tuple(self._strides[d] for d in dims),
                    self._offset, "permute", where, grad_name, dims=tuple(dims))


def t(self):
    if self.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
    return _transposed(self, 0, 1, "TBackward0") if self.ndim == 2 else self._alias("TBackward0")


def T(self):
    dims = tuple(reversed(range(self.ndim)))
    return permute(self, dims) if self.ndim >= 2 else self._alias("PermuteBackward0")


def mT(self):
    return transpose(self, -2, -1)


def unsqueeze(self, dim):
    where = user_location()
    axis = normalize_dim(dim, self.ndim + 1, "unsqueeze")
    stride = self._shape[axis] * self._strides[axis] if axis < self.ndim else 1
    shape = self._shape[:axis] + (1,) + self._shape[axis:]
    strides = self._strides[:axis] + (stride,) + self._strides[axis:]
    return _view_as(self, shape, strides, self._offset, "reshape", where, "UnsqueezeBackward0", shape=shape)


def squeeze(self, dim=None):
    where = user_location()
    if dim is None:
        axes = {i for i, s in enumerate(self._shape) if s == 1}
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        axes = {normalize_dim(d, self.ndim, "squeeze") for d in dims} if self.ndim else set()
        axes = {a for a in axes if self._shape[a] == 1}
    shape = tuple(s for i, s in enumerate(self._shape) if i not in axes)
    strides = tuple(s for i, s in enumerate(self._strides) if i not in axes)
    name = "SqueezeBackward0" if dim is None else "SqueezeBackward1"
    return _view_as(self, shape, strides, self._offset, "reshape", where, name, shape=shape)


def flatten(self, start_dim=0, end_dim=-1):
    if self.ndim == 0:
        return reshape(self, (1,))
    start = normalize_dim(start_dim, self.ndim, "flatten")
    end = normalize_dim(end_dim, self.ndim, "flatten")
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = self._shape[:start] + (math.prod(self._shape[start:end + 1]),) + self._shape[end + 1:]
    return reshape(self, shape)


def unflatten(self, dim, sizes):
    axis = normalize_dim(dim, self.ndim, "unflatten")
    return view(self, self._shape[:axis] + tuple(sizes) + self._shape[axis + 1:]) \
        if view_strides(self._shape, self._strides, self._shape[:axis] + tuple(sizes) + self._shape[axis + 1:]) \
        else reshape(self, self._shape[:axis] + tuple(sizes) + self._shape[axis + 1:])


def expand(self, *sizes):
    where = user_location()
    sizes = _sizes(sizes)
    if len(sizes) < self.ndim:
        raise op_error("expand", f"the number of sizes provided ({len(sizes)}) must be greater or "
                                 f"equal to the number of dimensions in the tensor ({self.ndim})", where,
                       kind=ShapeError)
    lead = len(sizes) - self.ndim
    shape, strides = [], []
    for i, size in enumerate(sizes):
        if i < lead:
            if size < 0:
                raise op_error("expand", f"the expanded size -1 is not allowed in a leading, "
                                         f"non-existing dimension {i}", where, kind=ShapeError)
            shape.append(size)
            strides.append(0)
            continue
        old, stride = self._shape[i - lead], self._strides[i - lead]
        if size == -1 or size == old:
            shape.append(old)
            strides.append(stride)
        elif old == 1:
            shape.append(size)
            strides.append(0)
        else:
            raise op_error("expand", f"The expanded size of the tensor ({size}) must match the existing "
                                     f"size ({old}) at non-singleton dimension {i}.  Target sizes: "
                                     f"{list(sizes)}.  Tensor sizes: {list(self._shape)}", where,
                           kind=ShapeError)
    shape = tuple(shape)
    return _view_as(self, shape, tuple(strides), self._offset, "expand", where, "ExpandBackward0",
                    shape=shape)


def expand_as(self, other):
    return expand(self, other._shape)


def broadcast_to(self, shape):
    return expand(self, tuple(shape))


def slice_dim(self, dim: int, start: int, stop: int, step: int, where: str, grad_name="SliceBackward0"):
    """View of positions start:stop:step along `dim` (already clamped to the dim's size)."""
    length = len(range(start, stop, step))
    starts = tuple(start if i == dim else 0 for i in range(self.ndim))
    stops = tuple(stop if i == dim else s for i, s in enumerate(self._shape))
    steps = tuple(step if i == dim else 1 for i in range(self.ndim))
    shape = self._shape[:dim] + (length,) + self._shape[dim + 1:]
    strides = self._strides[:dim] + (self._strides[dim] * step,) + self._strides[dim + 1:]
    offset = self._offset + (start * self._strides[dim] if length else 0)
    return _view_as(self, shape, strides, offset, "slice", where, grad_name,
                    starts=starts, stops=stops, steps=steps)


def select(self, dim: int, index: int, where: str | None = None):
    """View with `dim` removed at `index` (a slice of length 1, then a reshape)."""
    where = where or user_location()
    axis = normalize_dim(dim, self.ndim, "select")
    size = self._shape[axis]
    if not -size <= index < size:
        raise op_error("select", f"index {index} is out of bounds for dimension {axis} with size {size}",
                       where, kind=IndexError)
    index %= size
    sliced = slice_dim(self, axis, index, index + 1, 1, where)
    shape = self._shape[:axis] + self._shape[axis + 1:]
    strides = self._strides[:axis] + self._strides[axis + 1:]
    value = node("reshape", [sliced._lazy], where, shape=shape)
    if value.requires_grad:
        value.grad_name, value.grad_inputs = "SelectBackward0", (self._node,)
    return self._view(value, shape, strides, sliced._offset)


def narrow(self, dim, start, length):
    where = user_location()
    axis = normalize_dim(dim, self.ndim, "narrow")
    start = start % self._shape[axis] if start < 0 else start
    if start + length > self._shape[axis]:
        raise op_error("narrow", f"start ({start}) + length ({length}) exceeds dimension size "
                                 f"({self._shape[axis]})", where, kind=IndexError)
    return slice_dim(self, axis, start, start + length, 1, where)


def split(self, split_size_or_sections, dim=0):
    where = user_location()
    axis = normalize_dim(dim, self.ndim, "split")
    size = self._shape[axis]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError("split_size must be positive")
        bounds = [(i, min(i + step, size)) for i in range(0, size, step)] or [(0, 0)]
    else:
        sections = list(split_size_or_sections)
        if sum(sections) != size:
            raise op_error("split", f"split_with_sizes expects split_sizes to sum exactly to {size} "
                                    f"(input tensor's size at dimension {axis}), but got split_sizes="
                                    f"{sections}", where, kind=ShapeError)
        bounds, start = [], 0
        for section in sections:
            bounds.append((start, start + section))
            start += section
    return tuple(slice_dim(self, axis, a, b, 1, where, "SplitBackward0") for a, b in bounds)


def chunk(self, chunks, dim=0):
    if chunks <= 0:
        raise op_error("chunk", f"chunk expects `chunks` to be greater than 0, got: {chunks}",
                       user_location(), kind=RuntimeError)
    axis = normalize_dim(dim, self.ndim, "chunk")
    size = self._shape[axis]
    step = max(-(-size // chunks), 1)
    return split(self, step, axis)


def unbind(self, dim=0):
    axis = normalize_dim(dim, self.ndim, "unbind")
    where = user_location()
    return tuple(select(self, axis, i, where) for i in range(self._shape[axis]))


def alias(self, grad_name: str) -> Tensor:
    """A view of the whole tensor (same layout), e.g. for t() of a vector."""
    where = user_location()
    return _view_as(self, self._shape, self._strides, self._offset, "reshape", where, grad_name,
                    shape=self._shape)
