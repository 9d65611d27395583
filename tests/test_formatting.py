"""Tests for graphc.formatting: golden strings checked against PyTorch 2.13's repr, plus
property tests that parse the printed numbers back out of randomly generated tensors."""

import re

import numpy
import pytest

from graphc.formatting import format_size, format_tensor

NAN, INF = float("nan"), float("inf")

# (values, dtype_name, suffixes, repr printed by PyTorch with "torch." -> "graphc.")
GOLDEN = {
    "float_matrix": (
        [[0.1234567, -2.5], [3.0, 100.25]], "float32", [],
        "tensor([[  0.1235,  -2.5000],\n"
        "        [  3.0000, 100.2500]])",
    ),
    "integral_floats": ([1.0, -2.0, 30.0], "float32", [], "tensor([ 1., -2., 30.])"),
    "ints": (
        [[1, -20, 300], [4, 5, 6]], "int64", [],
        "tensor([[  1, -20, 300],\n"
        "        [  4,   5,   6]])",
    ),
    "int32_shows_dtype": ([1, 2, 3], "int32", [], "tensor([1, 2, 3], dtype=graphc.int32)"),
    "bools": (
        [[True, False], [False, True]], "bool", [],
        "tensor([[ True, False],\n"
        "        [False,  True]])",
    ),
    "scalar": (3.0, "float32", [], "tensor(3.)"),
    "scalar_float64": (-0.5, "float64", [], "tensor(-0.5000, dtype=graphc.float64)"),
    "scalar_nan": (NAN, "float32", [], "tensor(nan)"),
    "empty": (numpy.zeros(0), "float32", [], "tensor([])"),
    "empty_2d": (numpy.zeros((3, 0)), "float32", [], "tensor([], size=(3, 0))"),
    "empty_int": (numpy.zeros((0, 3)), "int64", [], "tensor([], size=(0, 3), dtype=graphc.int64)"),
    "float64": ([1.5, 2.0], "float64", [], "tensor([1.5000, 2.0000], dtype=graphc.float64)"),
    "scientific": ([1e-5, 1.0, 123456.0], "float32", [], "tensor([1.0000e-05, 1.0000e+00, 1.2346e+05])"),
    "nan_inf_negative_zero": ([NAN, INF, -0.0, 1.25], "float32", [], "tensor([   nan,    inf, -0.0000, 1.2500])"),
    "blocks_3d": (
        numpy.arange(8).reshape(2, 2, 2), "int64", [],
        "tensor([[[0, 1],\n"
        "         [2, 3]],\n"
        "\n"
        "        [[4, 5],\n"
        "         [6, 7]]])",
    ),
    "wrapped_row": (
        numpy.arange(30.0) / 3, "float32", [],
        "tensor([0.0000, 0.3333, 0.6667, 1.0000, 1.3333, 1.6667, 2.0000, 2.3333, 2.6667,\n"
        "        3.0000, 3.3333, 3.6667, 4.0000, 4.3333, 4.6667, 5.0000, 5.3333, 5.6667,\n"
        "        6.0000, 6.3333, 6.6667, 7.0000, 7.3333, 7.6667, 8.0000, 8.3333, 8.6667,\n"
        "        9.0000, 9.3333, 9.6667])",
    ),
    "summarized": (
        numpy.arange(2000.0).reshape(20, 100), "float32", [],
        "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 9.7000e+01, 9.8000e+01,\n"
        "         9.9000e+01],\n"
        "        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.9700e+02, 1.9800e+02,\n"
        "         1.9900e+02],\n"
        "        [2.0000e+02, 2.0100e+02, 2.0200e+02,  ..., 2.9700e+02, 2.9800e+02,\n"
        "         2.9900e+02],\n"
        "        ...,\n"
        "        [1.7000e+03, 1.7010e+03, 1.7020e+03,  ..., 1.7970e+03, 1.7980e+03,\n"
        "         1.7990e+03],\n"
        "        [1.8000e+03, 1.8010e+03, 1.8020e+03,  ..., 1.8970e+03, 1.8980e+03,\n"
        "         1.8990e+03],\n"
        "        [1.9000e+03, 1.9010e+03, 1.9020e+03,  ..., 1.9970e+03, 1.9980e+03,\n"
        "         1.9990e+03]])",
    ),
    "summarized_bools": ([True] * 2000, "bool", [], "tensor([True, True, True,  ..., True, True, True])"),
    "requires_grad_after_dtype": (
        [1.0, 2.0], "float64", ["requires_grad=True"],
        "tensor([1., 2.], dtype=graphc.float64, requires_grad=True)",
    ),
    "grad_fn": ([[2.0, 4.0]], "float32", ["grad_fn=<MulBackward0>"], "tensor([[2., 4.]], grad_fn=<MulBackward0>)"),
    "empty_with_size_dtype_and_grad": (
        numpy.zeros((0, 2)), "float64", ["requires_grad=True"],
        "tensor([], size=(0, 2), dtype=graphc.float64, requires_grad=True)",
    ),
    "suffix_wraps_after_matrix": (
        numpy.full((6, 6), 1234.5678), "float64", ["requires_grad=True"],
        "tensor([[1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678],\n"
        "        [1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678],\n"
        "        [1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678],\n"
        "        [1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678],\n"
        "        [1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678],\n"
        "        [1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678, 1234.5678]],\n"
        "       dtype=graphc.float64, requires_grad=True)",
    ),
    # PyTorch decides the wrap with "dtype=torch.float64", one character shorter than ours:
    # the first line is 81 characters, exactly as PyTorch's text after the rename.
    "wrap_measured_in_pytorch_spelling": (
        numpy.full(10, 10.0), "float64", ["grad_fn=<MulBackward0>"],
        "tensor([10., 10., 10., 10., 10., 10., 10., 10., 10., 10.], dtype=graphc.float64,\n"
        "       grad_fn=<MulBackward0>)",
    ),
}

NUMPY_DTYPES = {"float32": numpy.float32, "float64": numpy.float64, "int32": numpy.int32,
                "int64": numpy.int64, "bool": numpy.bool_}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_strings_match_pytorch(name):
    values, dtype_name, suffixes, expected = GOLDEN[name]
    array = numpy.asarray(values, dtype=NUMPY_DTYPES[dtype_name])
    assert format_tensor(array, dtype_name, suffixes) == expected


def test_format_size():
    assert format_size((3, 2)) == "graphc.Size([3, 2])"
    assert format_size(()) == "graphc.Size([])"
    assert format_size(numpy.zeros((0, 4)).shape) == "graphc.Size([0, 4])"


def test_rejects_unknown_dtype():
    with pytest.raises(ValueError):
        format_tensor(numpy.zeros(2), "float16")


# ---------------------------------------------------------------- property tests

NUMBER = re.compile(r"-?(?:nan|inf|\d+\.?\d*(?:e[+-]\d+)?)|True|False")
CELL_AFTER_BRACKET_OR_COMMA = re.compile(r"(?:\[|, )( *[^\s,\[\]]+)")


def random_array(generator, dtype_name):
    ndim = int(generator.integers(0, 5))
    if generator.random() < 0.15:  # large enough to be summarized
        shape = tuple(int(length) for length in generator.integers(8, 40, size=max(ndim, 2)))
    else:
        shape = tuple(int(length) for length in generator.integers(1, 7, size=ndim))
    if dtype_name == "bool":
        return generator.random(shape) < 0.5
    if dtype_name.startswith("int"):
        bound = int(10 ** generator.uniform(0, 9))
        return numpy.asarray(generator.integers(-bound, bound + 1, size=shape), dtype=dtype_name)
    scale = 10 ** generator.uniform(-8, 10)
    values = numpy.asarray(generator.standard_normal(shape) * scale)
    if generator.random() < 0.2:
        values = numpy.asarray(numpy.round(values))
        values[values == 0] = 1.0
    return numpy.asarray(values, dtype=dtype_name)


def shown_values(array):
    """The values a print shows, in order: the 3 edge items per long dimension when summarized."""
    if array.size <= 1000 or array.ndim == 0:
        return array.reshape(-1)
    indices = [numpy.r_[0:3, length - 3:length] if length > 6 else numpy.arange(length) for length in array.shape]
    return array[numpy.ix_(*indices)].reshape(-1)


def data_part(text, array):
    """The printed data without `tensor(` and the trailing `, dtype=...)` items."""
    body = text[len("tensor("):]
    return body[: body.rindex("]") + 1] if array.ndim else body.split(",")[0].rstrip(")")


def assert_matches_printed_precision(token, value):
    if token in ("True", "False"):
        assert token == str(bool(value))
        return
    printed = float(token)
    if "e" in token:
        mantissa, exponent = token.split("e")
        decimals = len(mantissa.split(".")[1])
        tolerance = 0.5 * 10.0 ** (int(exponent) - decimals)
    elif "." in token:
        decimals = len(token.split(".")[1])
        tolerance = 0.5 * 10.0 ** (-decimals) if decimals else 0.0
    else:
        assert int(token) == int(value)
        return
    assert abs(printed - float(value)) <= tolerance * (1 + 1e-9) + 1e-12 * abs(float(value)), (token, value)


@pytest.mark.parametrize("seed", range(150))
@pytest.mark.parametrize("dtype_name", ["float32", "float64", "int32", "int64", "bool"])
def test_random_arrays_print_their_values(seed, dtype_name):
    generator = numpy.random.default_rng([seed, len(dtype_name)])
    array = random_array(generator, dtype_name)
    text = format_tensor(array, dtype_name)

    assert text.startswith("tensor(") and text.endswith(")")
    assert ("dtype=graphc." + dtype_name in text) == (dtype_name in ("float64", "int32"))

    data = data_part(text, array)
    depth = 0
    for character in data:
        depth += {"[": 1, "]": -1}.get(character, 0)
        assert depth >= 0
    assert depth == 0 and data.count("[") == data.count("]")
    assert data.startswith("[" * array.ndim)

    tokens = NUMBER.findall(data)
    values = shown_values(array)
    assert len(tokens) == values.size
    for token, value in zip(tokens, values.tolist()):
        assert_matches_printed_precision(token, value)

    if dtype_name.startswith("float"):
        notations = {("e" in token, "." in token and not token.endswith(".")) for token in tokens}
        assert len(notations) == 1, "all elements share one notation"
    assert ("..." in data) == (array.size > 1000)
    assert all(len(line) <= 80 + array.ndim for line in text.split("\n"))

    if array.ndim:
        cells = [cell for cell in CELL_AFTER_BRACKET_OR_COMMA.findall(data) if cell.strip() != "..."]
        assert len({len(cell) for cell in cells}) == 1, "every element is padded to a common width"


@pytest.mark.parametrize("seed", range(40))
def test_suffixes_follow_dtype(seed):
    generator = numpy.random.default_rng(seed)
    dtype_name = ["float32", "float64"][seed % 2]
    array = random_array(generator, dtype_name)
    suffix = ["requires_grad=True", "grad_fn=<MulBackward0>"][seed % 3 == 0]
    text = format_tensor(array, dtype_name, [suffix])
    tail = text[len("tensor(") + len(data_part(text, array)):]
    items = [item for item in re.split(r",\s+", tail.removesuffix(")")) if item]
    assert items == ([f"dtype=graphc.{dtype_name}"] if dtype_name == "float64" else []) + [suffix]
    assert all(len(line) <= 80 + array.ndim for line in text.split("\n"))
