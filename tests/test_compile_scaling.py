"""Compile work grows linearly with the graph: counted, not timed.

Lowering finds the buffers a kernel touches in its kernel IR (loads, stores, matrix products), never
by rendering C and searching the text; the simplify passes and autodiff do a bounded amount of work
per node (no copy of the graph per pass, no walk of the whole graph per parameter).
"""
from __future__ import annotations

import functools
import re

import networkx as nx
import pytest

import graphc
from codegen import render_c
from codegen.kernel_ir import Const, Gemm, If, Let, Load, Loop, Op, Store, Var
from graphc import dtypes
from graphc.ir import Graph
from graphc.lowering import lower_program
from graphc.lowering.loops import FusionFailed
from graphc.lowering.program import buffer_accesses
from graphc.passes import autodiff, simplify
from graphc.passes.fuse import fuse

RENDERERS = ("render_expr", "render_statement", "render_statements", "render_program")


def mlp_train_step_graph(layers: int, width: int = 16) -> Graph:
    """The graph of an MLP train step: zero_grad, forward, cross-entropy, backward, SGD momentum."""
    graphc.manual_seed(0)
    nn = graphc.nn
    modules = []
    for _ in range(layers):
        modules += [nn.Linear(width, width), nn.ReLU()]
    model = nn.Sequential(*modules, nn.Linear(width, 4))
    criterion = nn.CrossEntropyLoss()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(inputs, targets):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    inputs, targets = graphc.randn(8, width), graphc.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    return graphc.trace(step, inputs, targets)


def parameter_aliases(graph: Graph) -> dict:
    """Every output position paired with a placeholder of its shape and dtype: lowering keeps the
    hazard-free ones, so this exercises its alias analysis on every output."""
    aliases = {}
    for position, node_id in enumerate(graph.outputs):
        node = graph.node(node_id)
        for placeholder in graph.placeholders():
            if placeholder.shape == node.shape and placeholder.dtype is node.dtype and node.op != "input":
                aliases[position] = placeholder.name
                break
    return aliases


def lowered(graph: Graph, aliases: dict):
    """fuse + lower_program, materializing what lowering could not fuse (as compile_pipeline does)."""
    forced: set = set()
    while True:
        try:
            return lower_program(fuse(graph, force_materialize=forced), "deep", aliases)
        except FusionFailed as failure:
            assert failure.node_id not in forced
            forced.add(failure.node_id)


class Counter:
    """Counts calls of functions wrapped with `wrap` (monkeypatched in place)."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.calls: dict = {}

    def wrap(self, owner, name: str, label: str | None = None):
        label = label or name
        original = getattr(owner, name)
        self.calls.setdefault(label, 0)

        def counted(*args, **kwargs):
            self.calls[label] += 1
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)

    def total(self) -> int:
        return sum(self.calls.values())


@functools.lru_cache(maxsize=None)
def simplified_train_step(layers: int) -> Graph:
    """(Fusion and lowering leave the graph as it is: the tests share it.)"""
    return simplify(mlp_train_step_graph(layers))[0]


@pytest.fixture
def forty_layers():
    return simplified_train_step(40)


def test_lowering_a_40_layer_train_step_renders_nothing(forty_layers, monkeypatch):
    counter = Counter(monkeypatch)
    for name in RENDERERS:
        counter.wrap(render_c, name)
    program, layout = lowered(forty_layers, parameter_aliases(forty_layers))
    assert len(program.kernels) > 200
    assert layout.aliased, "some parameter updates should be written in place"
    assert counter.calls == dict.fromkeys(RENDERERS, 0)


def test_touched_buffers_are_the_names_the_rendered_body_mentions(forty_layers):
    """The kernel IR's buffers are exactly those its C text names, so the generated source (each
    kernel declares the buffers it touches) is what the text search used to give."""
    program, _ = lowered(forty_layers, parameter_aliases(forty_layers))
    order = {buffer.name: position for position, buffer in enumerate(program.buffers)}
    for kernel in program.kernels:
        text = render_c.render_statements(kernel.body, 0)
        mentioned = [b.name for b in program.buffers if re.search(rf"\b{re.escape(b.name)}\b", text)]
        assert kernel.buffers == sorted(mentioned, key=order.get), kernel.name


def test_buffer_accesses_look_inside_bounds_conditions_masks_and_products():
    i = Var("i")
    body = [
        Loop("i", 4, [
            If(Op("({0} < 3)", (Load("in0", i),)),
               [Let("v0", "float", Load("in1", i, mask=Op("({0} > 0)", (Load("in2", i),)), other=Const("0.0f")))],
               [Store("t5", i, Const("1.0f"))]),
            Store("out0", Load("in3", i), Var("v0")),
        ], start=Load("in4", Const("0")), stop=Load("in5", Const("0"))),
        Gemm("in6", "in7", "t8", 2, 3, 4, False, False, 4, 3, 3),
        Gemm("in9", "in10", "t11", 2, 3, 0, False, False, 0, 3, 3),   # K = 0: fills C with zeros
        Gemm("in12", "in13", "t14", 0, 3, 4, False, False, 4, 3, 3),  # an empty product
        Gemm("in15", "in16", "t17", 2, 3, 4, False, False, 4, 3, 3, batch=3, sum_batches=True),
    ]
    reads, writes = buffer_accesses(body)
    assert reads == {"in0", "in1", "in2", "in3", "in4", "in5", "in6", "in7", "in15", "in16", "t17"}
    assert writes == {"t5", "out0", "t8", "t11", "t17"}
    text = render_c.render_statements(body, 0)
    named = {word for word in re.findall(r"\b(?:in|out|t)\d+\b", text)}
    assert named == reads | writes


def test_lowering_work_grows_linearly_with_depth(monkeypatch):
    """Graph lookups while fusing and lowering train steps of 20 and 40 layers: twice the layers,
    about twice the lookups (1.9x; 2.5x when the alias analysis read every later kernel's inputs
    once per parameter)."""
    counts = []
    for layers in (20, 40):
        graph = simplified_train_step(layers)
        aliases = parameter_aliases(graph)
        with monkeypatch.context() as patch:
            counter = Counter(patch)
            counter.wrap(Graph, "node")
            counter.wrap(Graph, "topo_order")
            lowered(graph, aliases)
        counts.append(counter.calls)
    assert counts[1]["topo_order"] == counts[0]["topo_order"]
    assert counts[1]["node"] <= 2.2 * counts[0]["node"]


def chain(links: int) -> Graph:
    """x -> exp -> (* 1) -> reshape -> reshape -> ... : work for every simplify pass at every link
    (identities, view chains, duplicates, constants to fold, dead code)."""
    graph = Graph()
    x = graph.placeholder("x", (4, 4), dtypes.float32)
    for _ in range(links):
        two = graph.call("expand", [graph.call("mul", [graph.constant(1.0, dtypes.float32),
                                                       graph.constant(2.0, dtypes.float32)])], shape=(4, 4))
        y = graph.call("exp", [x])
        duplicate = graph.call("exp", [x])
        graph.call("neg", [y])                                        # dead
        y = graph.call("mul", [graph.call("add", [y, duplicate]), two])
        one = graph.call("expand", [graph.constant(1.0, dtypes.float32)], shape=(4, 4))
        y = graph.call("mul", [y, one])
        x = graph.call("reshape", [graph.call("reshape", [y], shape=(16,))], shape=(4, 4))
    graph.output(x)
    return graph


def test_simplify_work_grows_linearly_with_the_graph(monkeypatch):
    counts = []
    for links in (100, 200):
        graph = chain(links)
        with monkeypatch.context() as patch:
            counter = Counter(patch)
            for name in ("node", "copy", "topo_order", "users"):
                counter.wrap(Graph, name)
            simpler, changed = simplify(graph)
        assert changed and len(simpler) < len(graph) / 2
        counts.append(counter.calls)
    small, large = counts
    assert large["copy"] == small["copy"] == 1          # one copy, whatever the number of passes and rounds
    assert large["topo_order"] == small["topo_order"]   # one topological order per pass and round
    for name in ("node", "users"):
        assert large[name] <= 2.2 * small[name], name


class CountingDiGraph(nx.DiGraph):
    """A DiGraph counting how many times a node's neighbours are listed, by any algorithm."""

    visits = 0

    def successors(self, n):
        CountingDiGraph.visits += 1
        return super().successors(n)

    neighbors = successors

    def predecessors(self, n):
        CountingDiGraph.visits += 1
        return super().predecessors(n)


def parameter_chain(length: int):
    """x -> x * p0 -> (x * p0) * p1 -> ... -> sum: one parameter per link."""
    graph = Graph()
    x = graph.placeholder("x", (3,), dtypes.float32)
    parameters = []
    for k in range(length):
        parameters.append(graph.placeholder(f"p{k}", (3,), dtypes.float32))
        x = graph.call("mul", [x, parameters[-1]])
    loss = graph.call("sum", [x], axes=(0,), keepdims=False)
    return graph, loss, parameters


def test_autodiff_walks_the_graph_once_not_once_per_parameter():
    visits = []
    for length in (50, 100):
        graph, loss, parameters = parameter_chain(length)
        counting = CountingDiGraph()
        counting.add_nodes_from(graph.nx.nodes(data=True))
        counting.add_edges_from(graph.nx.edges)
        graph.nx = counting
        CountingDiGraph.visits = 0
        grads = autodiff(graph, [loss], [graph.constant(1.0, dtypes.float32)], parameters)
        visits.append(CountingDiGraph.visits)
        assert None not in grads
    assert visits[1] <= 2.2 * visits[0]
