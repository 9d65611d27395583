"""`t[index]` and `t[index] = value` with PyTorch's (NumPy's) rules.

Ints, slices, None and Ellipsis give views. Integer tensors, lists and boolean masks are advanced
indices: they become one `gather` over the indexed dims, merged into one axis.
"""
from __future__ import annotations

import math

import numpy as np

from graphc import dtypes
from graphc.errors import op_error
from graphc.lazy import strided_view
from graphc.source_location import user_location
from graphc.tensor import Tensor, realize_pending
from graphc import views
from graphc.tensor_ops import cast, expand, full, node, reshape, wrap


def _as_index_tensor(item):
    from graphc.creation import tensor
    if isinstance(item, Tensor):
        return item
    return tensor(item)


def _normalize(index, ndim, where):
    """A list of index items with Ellipsis expanded; tensors/lists stay advanced items."""
    if not isinstance(index, tuple):
        index = (index,)
    items = []
    for item in index:
        if isinstance(item, (list, np.ndarray)):
            item = _as_index_tensor(item)
        if isinstance(item, (bool, np.bool_)):
            item = _as_index_tensor(bool(item))
        elif (isinstance(item, Tensor) and item.ndim == 0 and
              item.dtype.category == dtypes.INTEGER):
            item = int(item.item())  # PyTorch: a 0-d integer tensor indexes like an int (a view)
        items.append(item)
    consumed = sum((i.ndim if isinstance(i, Tensor) and i.dtype is dtypes.bool_ else 1)
                   for i in items if i is not None and i is not Ellipsis)
    ellipses = [position for position, item in enumerate(items) if item is Ellipsis]
    if len(ellipses) > 1:
        raise op_error("index", "an index can only have a single ellipsis ('...')", where, kind=IndexError)
    if consumed > ndim:
        raise op_error("index", f"too many indices for tensor of dimension {ndim}", where, kind=IndexError)
    if ellipses:
        position = ellipses[0]
        items[position:position + 1] = [slice(None)] * (ndim - consumed)
    else:
        items += [slice(None)] * (ndim - consumed)
    return items


def _basic(tensor: Tensor, items, where, keep_full_slices: bool = False):
    """Apply ints, slices and None as views; return the view and the advanced items by dim.
    Slices of a whole dim are skipped unless `keep_full_slices` (PyTorch keeps the one slice of
    ``x[:]``, which gives SliceBackward0, but not those of ``x[0, :]`` or ``x[:, :]``)."""
    result = tensor
    dim = 0
    advanced = []  # (dim in result, index tensor)
    for item in items:
        if item is None:
            result = views.unsqueeze(result, dim)
            dim += 1
        elif isinstance(item, slice):
            size = result._shape[dim]
            start, stop, step = item.indices(size)
            if step <= 0:
                raise op_error("index", "step must be greater than zero", where, kind=ValueError)
            stop = max(stop, start)
            if (start, stop, step) != (0, size, 1) or keep_full_slices:
                result = views.slice_dim(result, dim, start, stop, step, where)
            dim += 1  # a slice of the whole dim (`x[0, :]`) is no view at all, as in PyTorch
        elif isinstance(item, Tensor):
            if item.dtype is dtypes.bool_:
                if item.ndim:
                    for position, coordinate in enumerate(_mask_indices(item, result, dim, where)):
                        advanced.append((dim + position, coordinate))
                    dim += item.ndim
                else:  # x[True] adds a dim of size 1 (or 0 for False)
                    result = views.unsqueeze(result, dim)
                    advanced.append((dim, _mask_indices(item, result, dim, where)[0]))
                    dim += 1
            else:
                advanced.append((dim, item))
                dim += 1
        else:
            if not isinstance(item, (int, np.integer)):
                raise op_error("index", f"only integers, slices (`:`), ellipsis (`...`), None and "
                                        f"long or bool tensors are valid indices (got "
                                        f"{type(item).__name__})", where, kind=IndexError)
            position = int(item)
            size = result._shape[dim]
            if not -size <= position < size:
                raise op_error("index", f"index {position} is out of bounds for dimension {dim} with "
                                        f"size {size}", where, kind=IndexError)
            result = views.select(result, dim, position, where)
    return result, advanced


def _mask_indices(mask: Tensor, target: Tensor, dim: int, where):
    """Boolean mask -> integer coordinates (data-dependent: the mask is computed here)."""
    values = np.asarray(mask._value())
    expected = target._shape[dim:dim + mask.ndim]
    if mask.ndim and tuple(values.shape) != tuple(expected):
        raise op_error("index", f"The shape of the mask {list(values.shape)} does not match the shape "
                                f"of the indexed tensor {list(expected)} at index {dim}", where,
                       kind=IndexError)
    if mask.ndim == 0:
        return [Tensor._from_array(np.zeros(int(values), dtype=np.int64))]
    return [Tensor._from_array(c.astype(np.int64)) for c in np.nonzero(values)]


def _check_zero_dim(tensor: Tensor, index, where) -> None:
    """PyTorch's errors for a lone int or slice indexing a 0-d tensor (``loss.data[0]`` in code
    written for PyTorch before 0.4, where a loss was a 1-element vector)."""
    if tensor._shape or isinstance(index, tuple):
        return
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        if index == 0:
            raise op_error("index", "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                                    "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number",
                           where, hint="read the value with t.item() (old tutorials' loss.data[0] is "
                                       "loss.item() since PyTorch 0.4)", kind=IndexError)
        raise op_error("index", f"index {int(index)} is out of bounds for dimension 0 with size 0", where,
                       kind=IndexError)
    if isinstance(index, slice):
        raise op_error("index", "slice() cannot be applied to a 0-dim tensor.", where, kind=IndexError)


def getitem(tensor: Tensor, index):
    where = user_location()
    _check_zero_dim(tensor, index, where)
    items = _normalize(index, tensor.ndim, where)
    result, advanced = _basic(tensor, items, where, keep_full_slices=isinstance(index, slice))
    if not advanced:
        # an index that selects everything (`x[...]`, `x[:, :]`) is still a new view (PyTorch's alias)
        return views.alias(tensor, "AliasBackward0") if result is tensor else result
    return _gather(result, advanced, where)


def _gather(source: Tensor, advanced, where):
    dims = [d for d, _ in advanced]
    # index tensors made on the CPU (from lists, masks) index a GPU tensor, as in PyTorch
    indices = [i if i.device == source.device else i.to(source.device) for _, i in advanced]
    for index in indices:
        if index.dtype.category != dtypes.INTEGER:
            raise op_error("index", f"tensors used as indices must be long, int or bool tensors, got "
                                    f"{index.dtype}", where, kind=IndexError)
    from graphc.tensor_ops import broadcast_shapes
    from graphc.errors import ShapeError
    try:
        index_shape = broadcast_shapes([i._shape for i in indices], "index", where)
    except ShapeError:
        raise op_error("index", "shape mismatch: indexing tensors could not be broadcast together "
                                f"with shapes {', '.join(str(list(i._shape)) for i in indices)}", where,
                       kind=IndexError) from None
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    # move the indexed dims together (in front when they are not adjacent, as NumPy does)
    position = dims[0] if adjacent else 0
    rest = [d for d in range(source.ndim) if d not in dims]
    order = rest[:position] + dims + rest[position:]
    value = source._node
    if order != list(range(source.ndim)):
        value = node("permute", [value], where, dims=tuple(order))
    shape = tuple(source._shape[d] for d in order)
    before, merged_sizes, after = shape[:position], shape[position:position + len(dims)], shape[position + len(dims):]
    merged = math.prod(merged_sizes)
    value = reshape(value, before + (merged,) + after, where)
    # linear index into the merged axis, negative indices wrapped
    linear = None
    stride = 1
    for size, index in reversed(list(zip(merged_sizes, indices))):
        term = cast(expand(index._node, index_shape, where), dtypes.int64, where)
        negative = node("lt", [term, full(0, index_shape, dtypes.int64, where)], where)
        term = node("where", [negative, node("add", [term, full(size, index_shape, dtypes.int64, where)],
                                               where), term], where)
        if len(indices) > 1 and index._storage.array is None:
            term = _checked_term(term, size, index_shape, where)
        if stride != 1:
            term = node("mul", [term, full(stride, index_shape, dtypes.int64, where)], where)
        linear = term if linear is None else node("add", [linear, term], where)
        stride *= size
    _check_bounds(indices, merged_sizes, where)
    spread = index_shape or (1,)
    linear = reshape(linear, spread, where)
    # gather needs equal ranks: broadcast the source over the index dims, the index over the rest
    source_view = reshape(value, before + (merged,) + (1,) * (len(spread) - 1) + after, where)
    source_view = expand(source_view, before + (merged,) + spread[1:] + after, where)
    index_view = reshape(linear, (1,) * len(before) + spread + (1,) * len(after), where)
    index_view = expand(index_view, before + spread + after, where)
    result = node("gather", [source_view, index_view], where, axis=len(before))
    result = reshape(result, before + index_shape + after, where)
    return wrap(result, "IndexBackward0", [source])


def _checked_term(term, size: int, index_shape, where):
    """A computed index of one of several indexed dims, made to pass the compiled bounds check of its
    own dim: merged with the others, an index past its dim could still land inside the merged axis
    (x[0, 3] of a 5x3 tensor reading x[1, 0]). Gathering the dim's positions at it adds 0 when it is
    in range and makes the compiled gather raise (naming this line) when it is not."""
    count = max(math.prod(index_shape), 1)
    flat = reshape(term, (count,), where)
    positions = node("iota", [], where, shape=(size,), axis=0, dtype="int64")
    zero = node("sub", [node("gather", [positions, flat], where, axis=0), flat], where)
    return node("add", [term, reshape(zero, index_shape, where)], where)


def _check_bounds(indices, sizes, where):
    """Index values are data: check the ones already computed now, so the error names this line."""
    for dim_size, index in zip(sizes, indices):
        if index._storage.array is None:
            continue
        values = np.asarray(index._value())
        if values.size and (values.min() < -dim_size or values.max() >= dim_size):
            bad = values[(values < -dim_size) | (values >= dim_size)].flat[0]
            raise op_error("index", f"index {bad} is out of bounds for dimension with size {dim_size}",
                           where, kind=IndexError)


def setitem(tensor: Tensor, index, value):
    """``t[index] = value``: basic indices write through a view; advanced ones scatter in place."""
    from graphc.inplace import check_inplace, check_overlap, write
    where = user_location()
    _check_zero_dim(tensor, index, where)
    items = _normalize(index, tensor.ndim, where)
    if not any(isinstance(i, Tensor) for i in items):
        target, _ = _basic(tensor, items, where)
        write(target, value, where, "copy_")
        return
    check_inplace(tensor, value, where, "index_put_")
    # ints, slices and None first, as a view (PyTorch selects ints rather than treating them as
    # advanced indices, as NumPy would); then NumPy's rules for the remaining index tensors
    target, advanced = _basic(tensor, items, where)
    check_overlap(target, where, "index_put_")
    source = value._node if isinstance(value, Tensor) else None
    device = target._storage.device
    results = realize_pending([source] if source is not None else [], device)
    numpy_index = [slice(None)] * target.ndim
    for dim, index in advanced:
        if index.dtype.category != dtypes.INTEGER:
            raise op_error("index_put_", f"tensors used as indices must be long, int or bool "
                                         f"tensors, got {index.dtype}", where, kind=IndexError)
        numpy_index[dim] = np.asarray(index._value())
    if device.type != "cpu":
        from graphc import devices
        numpy_index = [devices.from_host(i, device) if isinstance(i, np.ndarray) else i
                       for i in numpy_index]
    numpy_index = tuple(numpy_index)
    array = strided_view(target._storage, target._shape, target._strides, target._offset)
    try:
        array[numpy_index] = results[0] if source is not None else value
    except (IndexError, ValueError) as error:
        raise op_error("index_put_", str(error), where, kind=IndexError) from None
    tensor._storage.version += 1
