"""Text rendering of tensors, matching PyTorch's ``repr`` character for character.

The rules follow ``torch/_tensor_str.py`` with its default print options
(precision 4, summarization above 1000 elements with 3 edge items per
dimension, line width 80), with ``graphc.`` written wherever PyTorch writes
``torch.``.

Example::

    >>> import numpy
    >>> print(format_tensor(numpy.array([[1.0, 2.5], [-3.0, 0.125]], dtype=numpy.float32), "float32"))
    tensor([[ 1.0000,  2.5000],
            [-3.0000,  0.1250]])
    >>> format_tensor(numpy.array([1.0, 2.0]), "float64", ["requires_grad=True"])
    'tensor([1., 2.], dtype=graphc.float64, requires_grad=True)'
    >>> format_size((3, 2))
    'graphc.Size([3, 2])'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy

__all__ = ["format_tensor", "format_size"]

PRECISION = 4
SUMMARY_THRESHOLD = 1000
EDGE_ITEMS = 3
LINE_WIDTH = 80
PREFIX = "tensor("
NAMESPACE = "graphc"

NUMPY_DTYPES = {
    "float32": numpy.float32,
    "float64": numpy.float64,
    "int32": numpy.int32,
    "int64": numpy.int64,
    "bool": numpy.bool_,
}
# Dtypes whose name PyTorch leaves out of a non-empty tensor's repr.
IMPLIED_DTYPES = {"float32", "int64", "bool"}
# The only dtype PyTorch leaves out of an empty tensor's repr.
DEFAULT_FLOAT_DTYPE = "float32"


def format_size(shape: Sequence[int]) -> str:
    """Render a shape the way ``torch.Size`` prints, e.g. ``graphc.Size([3, 2])``."""
    return f"{NAMESPACE}.Size({[int(length) for length in shape]})"


def format_tensor(values: numpy.ndarray, dtype_name: str, suffixes: Sequence[str] = ()) -> str:
    """Render ``values`` exactly as PyTorch's ``repr`` renders a CPU tensor.

    ``dtype_name`` is one of "float32", "float64", "int32", "int64", "bool".
    ``suffixes`` are preformatted items such as ``"requires_grad=True"`` or
    ``"grad_fn=<MulBackward0>"``; they follow ``size=`` and ``dtype=``.

    >>> format_tensor(numpy.array(3.0, dtype=numpy.float32), "float32")
    'tensor(3.)'
    >>> format_tensor(numpy.zeros((0, 3), dtype=numpy.int64), "int64")
    'tensor([], size=(0, 3), dtype=graphc.int64)'
    """
    if dtype_name not in NUMPY_DTYPES:
        raise ValueError(f"unsupported dtype {dtype_name!r}; expected one of {sorted(NUMPY_DTYPES)}")
    array = numpy.asarray(values, dtype=NUMPY_DTYPES[dtype_name])
    items = _metadata_items(array, dtype_name) + list(suffixes)
    return _append_items(PREFIX + _format_data(array), items, indent=len(PREFIX))


def _metadata_items(array: numpy.ndarray, dtype_name: str) -> list[str]:
    """The ``size=`` and ``dtype=`` items PyTorch shows for this tensor."""
    dtype_item = f"dtype={NAMESPACE}.{dtype_name}"
    if array.size > 0:
        return [] if dtype_name in IMPLIED_DTYPES else [dtype_item]
    items = []
    if array.ndim != 1:
        items.append(f"size={tuple(int(length) for length in array.shape)}")
    if dtype_name != DEFAULT_FLOAT_DTYPE:
        items.append(dtype_item)
    return items


def _append_items(text: str, items: list[str], indent: int) -> str:
    """Close ``tensor(...)``, appending items and wrapping them past the line width.

    PyTorch over-counts the current line by two characters (it measures from
    the newline, inclusive, plus one); that quirk decides where items wrap.
    Items are measured as PyTorch spells them (``torch.`` rather than
    ``graphc.``), so the line breaks fall where they fall in PyTorch's repr.
    """
    pieces = [text]
    line_length = len(text) - text.rfind("\n") + 1
    for item in items:
        item_length = _pytorch_length(item)
        if line_length + item_length + 2 > LINE_WIDTH:
            pieces.append(",\n" + " " * indent + item)
            line_length = indent + item_length
        else:
            pieces.append(", " + item)
            line_length += item_length + 2
    pieces.append(")")
    return "".join(pieces)


def _pytorch_length(item: str) -> int:
    """The length ``item`` has in PyTorch's spelling, with ``torch.`` for ``graphc.``."""
    return len(item.replace(f"{NAMESPACE}.", "torch."))


def _format_data(array: numpy.ndarray) -> str:
    """The bracketed data part of the repr (without ``tensor(``)."""
    if array.size == 0:
        return "[]"
    summarize = array.size > SUMMARY_THRESHOLD
    sample = _edge_sample(array) if summarize else array
    formatter = _ElementFormatter(sample)
    return _format_block(array, len(PREFIX), summarize, formatter)


def _edge_sample(array: numpy.ndarray) -> numpy.ndarray:
    """The elements a summarized print shows: the edge items of every long dimension."""
    if array.ndim == 0:
        return array
    return array[numpy.ix_(*[_shown_indices(length) for length in array.shape])]


def _shown_indices(length: int) -> numpy.ndarray:
    if length > 2 * EDGE_ITEMS:
        return numpy.r_[0:EDGE_ITEMS, length - EDGE_ITEMS : length]
    return numpy.arange(length)


def _format_block(array: numpy.ndarray, indent: int, summarize: bool, formatter: _ElementFormatter) -> str:
    """Render a (sub)tensor whose opening bracket sits at column ``indent``."""
    if array.ndim == 0:
        return formatter.format(array.item())
    if array.ndim == 1:
        return _format_row(array, indent, summarize, formatter)
    if summarize and len(array) > 2 * EDGE_ITEMS:
        head = [_format_block(part, indent + 1, summarize, formatter) for part in array[:EDGE_ITEMS]]
        tail = [_format_block(part, indent + 1, summarize, formatter) for part in array[-EDGE_ITEMS:]]
        blocks = head + ["..."] + tail
    else:
        blocks = [_format_block(part, indent + 1, summarize, formatter) for part in array]
    separator = "," + "\n" * (array.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(blocks) + "]"


def _format_row(row: numpy.ndarray, indent: int, summarize: bool, formatter: _ElementFormatter) -> str:
    """Render a 1-d row, wrapping it into lines of at most ``LINE_WIDTH`` columns."""
    if summarize and len(row) > 2 * EDGE_ITEMS:
        head = [formatter.format(value) for value in row[:EDGE_ITEMS].tolist()]
        tail = [formatter.format(value) for value in row[-EDGE_ITEMS:].tolist()]
        cells = head + [" ..."] + tail
    else:
        cells = [formatter.format(value) for value in row.tolist()]
    cells_per_line = max(1, math.floor((LINE_WIDTH - indent) / (formatter.width + 2)))
    lines = [", ".join(cells[start : start + cells_per_line]) for start in range(0, len(cells), cells_per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


class _ElementFormatter:
    """Chooses one notation and width for all shown elements, as PyTorch's ``_Formatter``.

    Floats use one of three notations, decided from the nonzero finite values:
    integer (``3.``), fixed (``0.1235``) or scientific (``1.2346e-05``).  The
    common width is measured on those values only, so zeros, nan and inf can
    come out wider or narrower than the rest, exactly as in PyTorch.
    """

    def __init__(self, sample: numpy.ndarray):
        self.is_float = sample.dtype.kind == "f"
        self.integer_mode = True
        self.scientific = False
        self.width = 1
        flat = sample.reshape(-1)
        if not self.is_float:
            self.width = max([1] + [len(str(value)) for value in flat.tolist()])
            return
        shown = flat[numpy.isfinite(flat) & (flat != 0)]
        if shown.size == 0:
            return
        magnitudes = numpy.abs(shown).astype(numpy.float64)
        smallest, largest = magnitudes.min(), magnitudes.max()
        self.integer_mode = bool(numpy.all(shown == numpy.ceil(shown)))
        with numpy.errstate(over="ignore"):  # a huge ratio overflowing to inf still means "scientific"
            spread = largest / smallest
        self.scientific = bool(spread > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4)
        self.width = max(self._measure(value) for value in shown.tolist())

    def _measure(self, value: float) -> int:
        if self.scientific:
            return len(f"{value:.{PRECISION}e}")
        if self.integer_mode:
            return len(f"{value:.0f}") + 1
        return len(f"{value:.{PRECISION}f}")

    def format(self, value) -> str:
        """Render one Python scalar, right-aligned to the common width."""
        if not self.is_float:
            text = str(value)
        elif self.scientific:
            text = f"{value:{self.width}.{PRECISION}e}"
        elif self.integer_mode:
            text = f"{value:.0f}"
            if math.isfinite(value):
                text += "."
        else:
            text = f"{value:.{PRECISION}f}"
        return text.rjust(self.width)
