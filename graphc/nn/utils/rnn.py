"""`graphc.nn.utils.rnn`: batches of sequences of different lengths, as PyTorch packs them.

A `PackedSequence` holds every sequence's steps interleaved time-major: the first step of every
sequence, then the second step of every sequence that has one, and so on, with the sequences
sorted by decreasing length. `batch_sizes[t]` says how many sequences have a step t. The
recurrent layers (`nn.RNN`, `nn.LSTM`, `nn.GRU`) run each sequence to its own length.

>>> padded = pad_sequence([a, b, c])                     # (longest, 3, *)
>>> packed = pack_padded_sequence(padded, [3, 5, 2], enforce_sorted=False)
>>> output, h_n = gru(packed)
>>> output, lengths = pad_packed_sequence(output)      # zeros after each sequence's end

Packing and unpacking are one gather each (an index built in Python from the lengths), so
gradients flow back to the padded input. The lengths are Python data: a program compiled with
`graphc.compile` over packed input is specialized to those lengths.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from graphc import dtypes
from graphc.errors import ShapeError, op_error
from graphc.source_location import user_location
from graphc.tensor import Tensor


def _index(values, device=None) -> Tensor:
    from graphc.creation import tensor
    return tensor(np.asarray(values, dtype=np.int64).reshape(-1), dtype=dtypes.int64, device=device)


def invert_permutation(permutation):
    """The permutation that undoes `permutation` (None stays None)."""
    if permutation is None:
        return None
    order = np.asarray(permutation.tolist(), dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return _index(inverse, permutation.device)


class PackedSequence(namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices",
                                                   "unsorted_indices"])):
    """Sequences packed time-major: `data` (total steps, *), `batch_sizes` (int64, one per time
    step), and, when the batch was sorted by length, `sorted_indices` (the original index of each
    packed sequence) and `unsorted_indices` (its inverse). Build one with `pack_padded_sequence`
    or `pack_sequence`, not directly."""

    __slots__ = ()

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def _with_data(self, data) -> "PackedSequence":
        """The same packing around converted data; the indices follow the data's device
        (batch_sizes stays on the CPU, as PyTorch keeps it)."""
        if data is self.data:
            return self

        def moved(index):
            return None if index is None else index.to(data.device)
        return type(self)(data, self.batch_sizes, moved(self.sorted_indices), moved(self.unsorted_indices))

    def to(self, *args, **kwargs) -> "PackedSequence":
        return self._with_data(self.data.to(*args, **kwargs))

    def cpu(self) -> "PackedSequence":
        return self.to("cpu")

    def cuda(self, device=None) -> "PackedSequence":
        return self.to("cuda" if device is None else device)

    def double(self) -> "PackedSequence":
        return self.to(dtypes.float64)

    def float(self) -> "PackedSequence":
        return self.to(dtypes.float32)

    def long(self) -> "PackedSequence":
        return self.to(dtypes.int64)

    def int(self) -> "PackedSequence":
        return self.to(dtypes.int32)

    @property
    def is_cuda(self) -> bool:
        return self.data.device.type == "cuda"

    def is_pinned(self) -> bool:
        return False


def _lengths_list(lengths) -> list:
    """Sequence lengths as Python ints, from a list or a 1-D integer tensor."""
    if isinstance(lengths, Tensor):
        if lengths.ndim != 1:
            raise op_error("pack_padded_sequence", f"'lengths' argument should be a 1D tensor, but got a "
                                                   f"{lengths.ndim}D tensor", user_location(), kind=ShapeError)
        lengths = lengths.tolist()
    return [int(length) for length in lengths]


def _packed_layout(lengths: list) -> list:
    """batch_sizes for sequences of decreasing `lengths`: how many have a step t, for each t."""
    return [sum(1 for length in lengths if length > t) for t in range(lengths[0])] if lengths else []


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *) with batch_first) of sequences whose lengths
    are `lengths`. With enforce_sorted the lengths must decrease; otherwise the batch is sorted
    by decreasing length (ties keep their order) and the permutation kept in the result."""
    where = user_location()
    lengths = _lengths_list(lengths)
    batch_dim = 0 if batch_first else 1
    if input.ndim < 2:
        raise op_error("pack_padded_sequence", f"expected a padded batch of at least 2 dims (time and "
                                               f"batch), got size {list(input.shape)}", where, kind=ShapeError)
    steps, batch = input.shape[1 - batch_dim], input.shape[batch_dim]
    if len(lengths) != batch:
        raise op_error("pack_padded_sequence", f"Expected `len(lengths)` to be equal to batch_size, but got "
                                               f"{len(lengths)} (batch_size={batch})", where, kind=ShapeError)
    if any(length <= 0 for length in lengths):
        raise op_error("pack_padded_sequence", "Length of all samples has to be greater than 0, but found an "
                                               "element in 'lengths' that is <= 0", where, kind=ShapeError)
    if max(lengths) > steps:
        raise op_error("pack_padded_sequence", f"a sequence of length {max(lengths)} is longer than the "
                                               f"padded input's {steps} time steps", where, kind=ShapeError)
    if enforce_sorted:
        if any(a < b for a, b in zip(lengths, lengths[1:])):
            raise op_error("pack_padded_sequence",
                           "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                           "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                           "to sidestep this requirement if you do not need ONNX exportability.", where)
        order, sorted_indices = list(range(batch)), None
    else:
        order = [int(i) for i in np.argsort(-np.asarray(lengths), kind="stable")]
        sorted_indices = _index(order, input.device)
    batch_sizes = _packed_layout([lengths[i] for i in order])
    # one gather over the padded batch's (time, batch) rows, in packed order
    rows = [t * batch + order[b] if not batch_first else order[b] * steps + t
            for t, size in enumerate(batch_sizes) for b in range(size)]
    flat = input.reshape((steps * batch,) + tuple(input.shape[2:]))
    data = flat[_index(rows, input.device)]
    return PackedSequence(data, _index(batch_sizes), sorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo `pack_padded_sequence`: (padded (T, B, *) or (B, T, *), lengths int64 (B,)), in the
    original batch order, `padding_value` after each sequence's end. total_length pads T further."""
    where = user_location()
    data, batch_sizes, _, unsorted_indices = sequence
    batch_sizes = [int(size) for size in batch_sizes.tolist()]
    steps, batch = len(batch_sizes), batch_sizes[0] if batch_sizes else 0
    if total_length is not None:
        if total_length < steps:
            raise op_error("pad_packed_sequence", f"Expected total_length to be at least the length of the "
                                                  f"longest sequence in input, but got total_length="
                                                  f"{total_length} and max sequence length being {steps}",
                           where, kind=ShapeError)
        steps = total_length
    # sorted_lengths[s]: the length of the s-th packed sequence; unsorted[b]: where sequence b sits
    sorted_lengths = [sum(1 for size in batch_sizes if size > s) for s in range(batch)]
    unsorted = unsorted_indices.tolist() if unsorted_indices is not None else list(range(batch))
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)]).astype(np.int64)
    padding_row = int(offsets[-1])                 # the row appended below, holding padding_value
    rows = np.full((steps, batch), padding_row, dtype=np.int64)
    for b, s in enumerate(unsorted):
        for t in range(sorted_lengths[s]):
            rows[t, b] = offsets[t] + s
    from graphc.creation import full
    from graphc.tensor_ops import cat
    padding = full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    source = cat([data, padding], 0)
    padded = source[_index(rows.T if batch_first else rows, data.device)]
    shape = ((batch, steps) if batch_first else (steps, batch)) + tuple(data.shape[1:])
    lengths = _index([sorted_lengths[s] for s in unsorted])
    return padded.reshape(shape), lengths


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack sequences of shapes (L_i, *) into (max L, B, *) (or (B, max L, *)), each padded with
    padding_value on the right (or on the left with padding_side='left')."""
    where = user_location()
    if padding_side not in ("left", "right"):
        raise op_error("pad_sequence", f"Expected padding_side to be one of left or right, but got "
                                       f"{padding_side}.", where)
    if isinstance(sequences, Tensor):
        sequences = list(sequences.unbind(0))
    sequences = list(sequences)
    if not sequences:
        raise op_error("pad_sequence", "received an empty list of sequences", where, kind=ShapeError)
    trailing = tuple(sequences[0].shape[1:])
    for position, sequence in enumerate(sequences):
        if tuple(sequence.shape[1:]) != trailing:
            raise op_error("pad_sequence", f"every sequence must have the same size after its first dim: "
                                           f"sequence 0 has {list(sequences[0].shape)}, sequence {position} "
                                           f"has {list(sequence.shape)}", where, kind=ShapeError)
    from graphc.nn.functional import pad
    from graphc.tensor_ops import stack
    longest = max(sequence.shape[0] for sequence in sequences)
    padded = []
    for sequence in sequences:
        missing = longest - sequence.shape[0]
        widths = (0, missing) if padding_side == "right" else (missing, 0)
        # F.pad lists (left, right) pairs from the last dim: the time dim is the last pair
        padded.append(pad(sequence, (0, 0) * len(trailing) + widths, value=padding_value) if missing
                      else sequence)
    return stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The list of sequences, each cut to its length, from a padded batch."""
    lengths = _lengths_list(lengths)
    if batch_first:
        return [padded_sequences[b, :length] for b, length in enumerate(lengths)]
    return [padded_sequences[:length, b] for b, length in enumerate(lengths)]


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of sequences (L_i, *): pad_sequence, then pack_padded_sequence."""
    lengths = [sequence.shape[0] for sequence in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences):
    """The list of sequences a PackedSequence holds, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence", "pad_packed_sequence",
           "pad_sequence", "unpad_sequence", "pack_sequence", "unpack_sequence"]
