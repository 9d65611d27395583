"""Every primitive of the op table: its vjp rule against central finite differences of its own
NumPy reference (float64), through the autodiff pass and the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from graphc import dtypes
from graphc.interpreter import evaluate
from graphc.ir import Graph
from graphc.ops import OPS
from graphc.passes import autodiff
from gradcheck import numeric_gradient


def floats(*shape, low=-2.0, high=2.0, away_from_zero=False):
    def make(rng):
        values = rng.uniform(low, high, size=shape)
        if away_from_zero:
            values = np.sign(values + (values == 0)) * (np.abs(values) + 0.5)
        return values
    return ("float64", shape, make)


def ints(*shape, low=0, high=3):
    return ("int64", shape, lambda rng: rng.integers(low, high, size=shape))


def bools(*shape):
    return ("bool", shape, lambda rng: rng.random(shape) < 0.5)


CONV = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)

# op -> list of (input specs, attrs). Each differentiable op needs at least one case.
CASES = {
    "neg": [([floats(3, 4)], {})],
    "exp": [([floats(3, 4)], {})],
    "log": [([floats(3, 4, low=0.5, high=3.0)], {})],
    "sqrt": [([floats(5, low=0.5, high=3.0)], {})],
    "sin": [([floats(2, 3)], {})],
    "cos": [([floats(2, 3)], {})],
    "tanh": [([floats(2, 3)], {})],
    "erf": [([floats(2, 3)], {})],
    "abs": [([floats(4, 3, away_from_zero=True)], {})],
    "sign": [([floats(4, away_from_zero=True)], {})],
    "floor": [([floats(4, away_from_zero=True)], {})],
    "reciprocal": [([floats(3, 2, away_from_zero=True)], {})],
    "add": [([floats(3, 2), floats(3, 2)], {})],
    "sub": [([floats(3, 2), floats(3, 2)], {})],
    "mul": [([floats(3, 2), floats(3, 2)], {})],
    "div": [([floats(3, 2), floats(3, 2, away_from_zero=True)], {})],
    "pow": [([floats(3, 2, low=0.5, high=2.0), floats(3, 2)], {})],
    "maximum": [([floats(4, 3), floats(4, 3)], {})],
    "minimum": [([floats(4, 3), floats(4, 3)], {})],
    "remainder": [([floats(6, low=0.1, high=0.9), floats(6, low=1.5, high=2.0)], {})],
    "floor_divide": [([floats(6, low=0.1, high=0.9), floats(6, low=1.5, high=2.0)], {})],
    "where": [([bools(3, 4), floats(3, 4), floats(3, 4)], {})],
    "cast": [([floats(3, 4)], {"dtype": "float64"})],
    "sum": [([floats(2, 3, 4)], {"axes": (0, 2), "keepdims": False}),
            ([floats(2, 3)], {"axes": (1,), "keepdims": True})],
    "max": [([floats(2, 3, 4)], {"axes": (1,), "keepdims": False}),
            ([floats(3, 4)], {"axes": (0, 1), "keepdims": True})],
    "prod": [([floats(2, 3, away_from_zero=True)], {"axes": (1,), "keepdims": False})],
    "reshape": [([floats(2, 6)], {"shape": (3, 2, 2)})],
    "permute": [([floats(2, 3, 4)], {"dims": (2, 0, 1)})],
    "expand": [([floats(3, 1)], {"shape": (2, 3, 4)})],
    "slice": [([floats(7, 5)], {"starts": (1, 0), "stops": (7, 5), "steps": (3, 2)}),
              ([floats(6, 4)], {"starts": (2, 1), "stops": (5, 3), "steps": (1, 1)})],
    "pad": [([floats(2, 3)], {"pads": ((1, 0), (2, 1)), "value": 0.0})],
    "cat": [([floats(2, 3), floats(2, 1), floats(2, 2)], {"axis": 1})],
    "gather": [([floats(4, 3), ints(5, 3, high=4)], {"axis": 0})],
    "scatter_add": [([ints(5, 3, high=4), floats(5, 3)], {"axis": 0, "shape": (4, 3)})],
    "matmul": [([floats(2, 3, 4), floats(2, 4, 5)], {}), ([floats(3, 2), floats(2, 4)], {})],
    "conv2d": [([floats(2, 4, 6, 7), floats(6, 2, 3, 2)], CONV)],
    "conv2d_input_grad": [([floats(2, 6, 3, 5), floats(6, 2, 3, 2)], dict(CONV, input_shape=(2, 4, 6, 7)))],
    "conv2d_weight_grad": [([floats(2, 4, 6, 7), floats(2, 6, 3, 5)], dict(CONV, weight_shape=(6, 2, 3, 2)))],
}

NOT_DIFFERENTIABLE = {"input", "constant", "iota", "rand", "eq", "ne", "lt", "le", "gt", "ge",
                      "logical_and", "logical_or", "logical_xor", "logical_not"}


def test_every_differentiable_op_has_a_case():
    missing = sorted(set(OPS) - set(CASES) - NOT_DIFFERENTIABLE)
    assert not missing, f"ops without a gradient test case: {missing}"
    for name in NOT_DIFFERENTIABLE - {"input", "constant", "iota", "rand"}:
        assert OPS[name].vjp is None


def _build(op, specs, attrs, rng):
    graph = Graph()
    values = {}
    ids = []
    for number, (dtype, shape, make) in enumerate(specs):
        name = f"x{number}"
        ids.append(graph.placeholder(name, shape, dtypes.by_name(dtype)))
        values[name] = np.asarray(make(rng), dtype=dtypes.by_name(dtype).numpy)
    out = graph.call(op, ids, **attrs)
    graph.output(out)
    return graph, ids, out, values


@pytest.mark.parametrize("op,case", [(op, i) for op, cases in CASES.items() for i in range(len(cases))])
def test_vjp_matches_finite_differences(op, case, rng):
    specs, attrs = CASES[op][case]
    graph, ids, out, values = _build(op, specs, attrs, rng)
    graph.lint()
    weights = rng.standard_normal(graph.node(out).shape)
    float_inputs = [i for i, spec in zip(ids, specs) if spec[0] == "float64"]
    forward_graph = graph.copy()

    def forward(*arrays):
        bound = dict(values)
        for node_id, array in zip(float_inputs, arrays):
            bound[graph.node(node_id).name] = array
        return float(np.sum(evaluate(forward_graph, bound)[0] * weights))

    seed = graph.placeholder("seed", graph.node(out).shape, dtypes.float64)
    grads = autodiff(graph, [out], [seed], float_inputs)
    graph.outputs = [g for g in grads if g is not None]
    graph.lint()
    results = iter(evaluate(graph, dict(values, seed=weights)))
    arrays = [values[graph.node(i).name] for i in float_inputs]
    for index, grad_id in enumerate(grads):
        expected = numeric_gradient(forward, arrays, index)
        got = next(results) if grad_id is not None else np.zeros_like(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{op}: gradient of input {index}")


def test_max_splits_ties_evenly():
    graph = Graph()
    x = graph.placeholder("x", (4,), dtypes.float64)
    out = graph.call("max", [x], axes=(0,), keepdims=False)
    seed = graph.constant(1.0, dtypes.float64)
    [grad] = autodiff(graph, [out], [seed], [x])
    graph.outputs = [grad]
    [value] = evaluate(graph, {"x": np.array([1.0, 3.0, 3.0, 2.0])})
    np.testing.assert_array_equal(value, [0.0, 0.5, 0.5, 0.0])


def test_maximum_splits_ties_in_half():
    graph = Graph()
    a = graph.placeholder("a", (3,), dtypes.float64)
    b = graph.placeholder("b", (3,), dtypes.float64)
    out = graph.call("maximum", [a, b])
    seed = graph.placeholder("seed", (3,), dtypes.float64)
    grad_a, grad_b = autodiff(graph, [out], [seed], [a, b])
    graph.outputs = [grad_a, grad_b]
    values = np.array([1.0, 2.0, 3.0])
    got_a, got_b = evaluate(graph, {"a": values, "b": np.array([0.0, 2.0, 5.0]), "seed": np.ones(3)})
    np.testing.assert_array_equal(got_a, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(got_b, [0.0, 0.5, 1.0])


def test_cast_gradient_flows_back_in_the_source_dtype():
    graph = Graph()
    x = graph.placeholder("x", (3,), dtypes.float64)
    narrow = graph.call("cast", [x], dtype="float32")
    seed = graph.placeholder("seed", (3,), dtypes.float32)
    [grad] = autodiff(graph, [narrow], [seed], [x])
    assert graph.node(grad).dtype is dtypes.float64
    graph.outputs = [grad]
    weights = np.random.default_rng().standard_normal(3).astype(np.float32)
    [value] = evaluate(graph, {"x": np.ones(3), "seed": weights})
    np.testing.assert_allclose(value, weights.astype(np.float64))
