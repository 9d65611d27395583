"""The IR Graph: building, rewriting verbs, printing, JSON round trip, DOT, lint."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

import graphc
from graphc import dtypes
from graphc.errors import ShapeError
from graphc.interpreter import evaluate
from graphc.ir import Graph
from graphc.passes.autodiff import backward_graph


def small_graph():
    graph = Graph()
    x = graph.placeholder("x", (2, 3), dtypes.float32, where="model.py:3")
    w = graph.placeholder("w", (3, 4), dtypes.float32, where="model.py:4")
    h = graph.call("matmul", [x, w], where="model.py:5")
    y = graph.call("tanh", [h], where="model.py:6")
    s = graph.call("sum", [graph.call("mul", [y, y])], axes=(0, 1), keepdims=False)
    graph.output(s)
    return graph, (x, w, h, y, s)


def test_shapes_and_dtypes_come_from_the_op_table():
    graph, (x, w, h, y, s) = small_graph()
    assert graph.node(h).shape == (2, 4) and graph.node(s).shape == ()
    assert graph.node(y).dtype is dtypes.float32
    graph.lint()


def test_operand_order_is_data_and_self_use_is_one_edge():
    graph = Graph()
    x = graph.placeholder("x", (3,), dtypes.float32)
    square = graph.call("mul", [x, x])
    assert graph.node(square).inputs == (x, x)
    assert graph.nx.number_of_edges(x, square) == 1
    assert graph.users(x) == [square]


def test_shape_mismatch_names_op_and_line():
    graph = Graph()
    a = graph.placeholder("a", (2, 3), dtypes.float32)
    b = graph.placeholder("b", (4, 3), dtypes.float32)
    with pytest.raises(ShapeError, match=r"matmul: cannot multiply shapes \[2, 3\] and \[4, 3\]\n  at net.py:9"):
        graph.call("matmul", [a, b], where="net.py:9")


def test_replace_all_uses_and_erase(rng):
    graph, (x, w, h, y, s) = small_graph()
    relu_like = graph.call("maximum", [h, graph.call("expand", [graph.constant(0.0, dtypes.float32)],
                                                      shape=(2, 4))])
    graph.replace_all_uses_with(y, relu_like)
    graph.erase(y)
    graph.lint()
    assert y not in graph and graph.node(graph.users(relu_like)[0]).op == "mul"
    with pytest.raises(ValueError, match="still used"):
        graph.erase(h)
    xv = rng.standard_normal((2, 3)).astype(np.float32)
    wv = rng.standard_normal((3, 4)).astype(np.float32)
    [value] = evaluate(graph, {"x": xv, "w": wv})
    np.testing.assert_allclose(value, np.sum(np.maximum(xv @ wv, 0) ** 2), rtol=1e-5)


def test_topological_order_is_deterministic():
    graph, _ = small_graph()
    order = graph.topo_order()
    assert order == sorted(order)
    assert graph.copy().topo_order() == order


def test_table_print_names_ops_shapes_and_lines():
    graph, _ = small_graph()
    text = str(graph)
    lines = text.splitlines()
    assert lines[0].split() == ["id", "op", "shape", "dtype", "inputs", "attrs", "where"]
    assert any("matmul" in line and "[2, 4]" in line and "model.py:5" in line for line in lines)
    assert lines[-1].startswith("outputs: %")


def test_json_round_trip_gives_an_equal_graph(tmp_path, rng):
    graph, _ = small_graph()
    path = tmp_path / "g.json"
    graph.save(path)
    loaded = Graph.load(path)
    assert loaded == graph
    assert loaded.node(4).attrs == graph.node(4).attrs
    inputs = {"x": rng.standard_normal((2, 3)).astype(np.float32),
              "w": rng.standard_normal((3, 4)).astype(np.float32)}
    np.testing.assert_array_equal(evaluate(loaded, inputs)[0], evaluate(graph, inputs)[0])
    with pytest.raises(ValueError, match="not a graphc graph"):
        Graph.from_json(json.dumps({"nodes": []}))


def test_dot_export_parses_as_a_graph():
    graph, nodes = small_graph()
    dot = graph.to_dot(clusters={"kernel 0": [nodes[2], nodes[3]]})
    assert dot.startswith("digraph graphc {") and "subgraph cluster_0" in dot
    pydot = pytest.importorskip("pydot")
    [parsed] = pydot.graph_from_dot_data(dot)
    assert len(parsed.get_edges()) == sum(len(n.inputs) for n in graph.nodes())


def test_backward_graph_is_a_printable_graph(rng):
    graph, (x, w, *_rest) = small_graph()
    full, grads = backward_graph(graph, graph.outputs[0])
    full.lint()
    assert set(grads) == {"x", "w"}
    assert "matmul" in str(full)
    xv = rng.standard_normal((2, 3))
    wv = rng.standard_normal((3, 4))
    graph64 = Graph.from_json(full.to_json().replace('"float32"', '"float64"'))
    loss, grad_x, grad_w = evaluate(graph64, {"x": xv, "w": wv})
    h = np.tanh(xv @ wv)
    np.testing.assert_allclose(grad_x, (2 * h * (1 - h * h)) @ wv.T, rtol=1e-10)
    np.testing.assert_allclose(grad_w, xv.T @ (2 * h * (1 - h * h)), rtol=1e-10)


def test_lint_catches_a_broken_graph():
    graph, (x, w, h, y, s) = small_graph()
    graph.node(h).shape = (9, 9)
    with pytest.raises(AssertionError, match="records"):
        graph.lint()


def test_lazy_tensors_build_one_graph_per_realize(rng):
    from graphc.schedule import build_graph
    a = graphc.tensor(rng.standard_normal((3, 3)), dtype=graphc.float32)
    out = (a @ a).tanh() + 1
    build = build_graph([out._node])
    ops = [n.op for n in build.graph.nodes()]
    assert ops.count("matmul") == 1 and ops.count("input") == 1  # the same buffer is one input
    assert all(n.where.startswith("tests/test_ir.py:") for n in build.graph.nodes() if n.op != "input")
