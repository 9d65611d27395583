"""NaN, Inf and signed zeros through every op of the op table, as PyTorch has them (DESIGN.md, Numerics).

`CASES` names, for every primitive of graphc/ops/table.py, public calls that exercise it on special
values: NaN, +Inf, -Inf, +0.0, -0.0 and ordinary numbers, each operand against each other one for
binary ops. An op added to the table fails `test_every_op_has_a_case` until it has a case (or an
exemption saying why it cannot meet a special value). Every case's results and gradients (of the
results' sum) are computed on the reference interpreter, the C backend and the CUDA template (the
host emulator), all in one graph, and compared with PyTorch's: NaN where PyTorch has NaN, the same
infinities, the same sign of zero, ordinary values to a few ulps.

Deliberate differences from PyTorch 2.13, each checked as such:
- sign(NaN) is NaN (NumPy's answer, and IEEE's); PyTorch returns 0, an open bug (pytorch#41245).
- prod's gradient divides the product by each element, which PyTorch avoids where elements are
  zero or infinite: it is compared on rows of ordinary values only.
- gelu(+Inf) is +Inf (x Phi(x)); PyTorch 2.13's CPU kernel gives NaN.
- var's gradient with an Inf in the row is NaN everywhere (the mean's share, sum(x - mean), is NaN;
  PyTorch's formula leaves that share out, as it is 0 in exact arithmetic): compared without Inf.
- relu(-0.) is +0. (PyTorch: -0.): where(x <= 0, 0, x) fuses into the matmul before it, as the old
  where(x > 0, x, 0) did, and keeps NaN and PyTorch's gradient (1 at NaN, 0 at 0).
- a float cast to an integer type of NaN or Inf is undefined in C and in PyTorch: not compared.

`test_numpy_subset` checks the most important of these without PyTorch.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import graphc
from graphc import interpreter
from graphc.backends.c import CompiledGraph
from graphc.schedule import build_graph
from graphc.ops import table

nan, inf = float("nan"), float("inf")
VALUES = np.array([nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 2.5, -0.5, 0.75], dtype=np.float32)
PAIRS_A, PAIRS_B = (grid.ravel() for grid in np.meshgrid(VALUES, VALUES, indexing="ij"))
BOOLS_A, BOOLS_B = np.array([True, True, False, False]), np.array([True, False, True, False])
RTOL = 3e-6   # ordinary results: libm's and libmvec's transcendental functions differ by an ulp or two


def unary():
    return [VALUES.copy()]


def binary():
    return [PAIRS_A.copy(), PAIRS_B.copy()]


def rows():
    """Each pair of special values as a row of 2, and rows of 700 (long enough to be blocked)."""
    long = np.ones((5, 700), dtype=np.float32)
    for row, value in enumerate((nan, inf, -inf, -0.0)):
        long[row, 100 + row] = value
    long[4] = -0.0
    return [np.stack([PAIRS_A, PAIRS_B], axis=1), long]


def ordinary_rows():
    return [np.array([[1.5, -2.0, 0.5], [3.0, 0.25, -1.0]], dtype=np.float32)]


@dataclass
class Case:
    """`function(m, *tensors)` with m the graphc or the torch module (they share the API), or
    `torch_function` where the two differ; it returns a tensor or a tuple of them."""
    function: Callable
    inputs: Callable = unary
    grad: bool = True                 # compare the gradient of the results' sum too
    torch_function: Callable | None = None
    ops: tuple = ()                   # primitives the graph must contain (default: the case's key)
    expected: Callable | None = None  # graphc's deliberate answer, where it is not PyTorch's
    grad_inputs: tuple | None = None  # which inputs get gradients (default: every float input)


def F(m):
    return m.nn.functional


def _cast_inputs():
    return [VALUES.copy(), np.array([1e300, -1e300, 1e-300, -1e-300, 0.0, -0.0, nan, inf], dtype=np.float64),
            np.array([True, False])]


def _where_inputs():
    condition = np.resize(np.array([True, False]), PAIRS_A.shape)
    return [condition, PAIRS_A.copy(), PAIRS_B.copy()]


def _conv_inputs():
    x = np.full((1, 1, 4, 4), 0.5, dtype=np.float32)
    x[0, 0, 0, 0], x[0, 0, 1, 2], x[0, 0, 3, 3] = nan, inf, -inf
    w = np.array([[[[1.0, -1.0], [0.0, 2.0]]]], dtype=np.float32)
    return [x, w]


def _matmul_inputs():
    a = np.array([[nan, 1.0, 2.0], [inf, 0.0, 1.0], [-inf, 1.0, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    b = np.array([[1.0, 0.0], [0.0, inf], [-0.0, 1.0]], dtype=np.float32)
    return [a, b]


def _gelu_expected(x):
    """x Phi(x): +Inf at +Inf (PyTorch 2.13's CPU gelu gives NaN there), NaN at -Inf (-Inf * 0)."""
    import math
    wide = x.astype(np.float64)
    with np.errstate(all="ignore"):
        return (wide * 0.5 * (1 + np.vectorize(math.erf)(wide / math.sqrt(2)))).astype(np.float32)


def _clamp_expected(x, bound):
    """clamp(x, min=bound) and clamp(x, max=bound): NaN if either is NaN, x on ties. PyTorch's
    tensor-bound kernel gives the bound on ties (its scalar-bound one gives x, as graphc does for
    both): they differ in the sign of a zero only."""
    either_nan = np.isnan(x) | np.isnan(bound)
    return [np.where(either_nan, np.nan, np.where(x < bound, bound, x)).astype(np.float32),
            np.where(either_nan, np.nan, np.where(x > bound, bound, x)).astype(np.float32)]


def _relu_expected(x):
    """NaN kept, 0 for x <= 0: relu(-0.) is +0. (PyTorch: -0.), the price of a two-node relu."""
    return np.where(x <= 0, np.float32(0), x)


def _sign_expected(x):
    return np.sign(x)   # NaN for NaN (PyTorch: 0, pytorch#41245)


ELEMENTWISE_UNARY = ("neg", "exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "abs", "floor", "reciprocal")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "floor_divide", "remainder")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")

CASES: dict[str, Case] = {}
for _name in ELEMENTWISE_UNARY:
    CASES[_name] = Case(lambda m, x, _name=_name: getattr(m, _name)(x))
for _name in BINARY:
    CASES[_name] = Case(lambda m, a, b, _name=_name: getattr(m, _name)(a, b), binary,
                        grad=_name not in ("floor_divide",))
for _name in COMPARISONS:
    CASES[_name] = Case(lambda m, a, b, _name=_name: getattr(m, _name)(a, b), binary, grad=False)
for _name in ("logical_and", "logical_or", "logical_xor"):
    CASES[_name] = Case(lambda m, a, b, _name=_name: getattr(m, _name)(a, b), lambda: [BOOLS_A, BOOLS_B], grad=False)
CASES.update({
    "sign": Case(lambda m, x: m.sign(x), expected=lambda x: [_sign_expected(x)]),
    "logical_not": Case(lambda m, x: m.logical_not(x), lambda: [BOOLS_A], grad=False),
    "where": Case(lambda m, c, a, b: m.where(c, a, b), _where_inputs),
    "cast": Case(lambda m, x, d, b: (x.to(m.float64), d.to(m.float32), x.to(m.bool), b.to(m.float32),
                                     x[3:].to(m.int64)), _cast_inputs, grad_inputs=(0, 1)),
    "sum": Case(lambda m, pairs, long: (pairs.sum(1), long.sum(1), long.sum()), rows),
    "max": Case(lambda m, pairs, long: (pairs.amax(1), long.amax(1), long.amax()), rows),
    "prod": Case(lambda m, pairs, long: (pairs.prod(1), long.prod(1)), rows, grad=False),
    "prod ordinary gradient": Case(lambda m, x: x.prod(1), ordinary_rows, ops=("prod",)),
    "constant": Case(lambda m, x: (x + (-0.0), x * nan, x - inf, m.where(x > 0, x, -0.0))),
    "reshape": Case(lambda m, x: x.reshape(2, 5) * 1.0),
    "permute": Case(lambda m, x: x.reshape(2, 5).permute(1, 0) * 1.0),
    "expand": Case(lambda m, x: x.reshape(10, 1).expand(10, 3) * 1.0),
    "slice": Case(lambda m, x: x[1::3] * 1.0),
    "pad": Case(lambda m, x: (F(m).pad(x, (2, 1), value=nan), F(m).pad(x, (1, 1), value=-0.0),
                              F(m).pad(x.reshape(1, 1, 10), (2, 2), mode="reflect"))),
    "cat": Case(lambda m, x: m.cat([x, -x, x[:3]]) * 1.0),
    "gather": Case(lambda m, pairs, long: (pairs.max(1).values, long.min(1).values), rows),
    "scatter_add": Case(lambda m, pairs, long: pairs.max(1).values, rows),
    "iota": Case(lambda m, pairs, long: (pairs.argmax(1), long.argmin(1)), rows, grad=False),
    "matmul": Case(lambda m, a, b: m.matmul(a, b), _matmul_inputs),
    "conv2d": Case(lambda m, x, w: F(m).conv2d(x, w), _conv_inputs),
    "conv2d_input_grad": Case(lambda m, x, w: F(m).conv2d(x, w, padding=1), _conv_inputs),
    "conv2d_weight_grad": Case(lambda m, x, w: F(m).conv2d(x, w, stride=2), _conv_inputs),
})
# the compositions users call, built from the primitives: where NaN handling is easiest to lose
COMPOSITES: dict[str, Case] = {
    "relu": Case(lambda m, x: m.relu(x), expected=lambda x: [_relu_expected(x)]),
    "nn.functional.relu": Case(lambda m, x: F(m).relu(x), expected=lambda x: [_relu_expected(x)]),
    "clamp": Case(lambda m, x: (m.clamp(x, -1.0, 1.0), x.clamp(min=0.0), x.clamp(max=-0.0))),
    "clamp with NaN bounds": Case(lambda m, x: (m.clamp(x, min=nan), m.clamp(x, max=nan), m.clamp(x, nan, 1.0))),
    # the bounds' own gradients follow PyTorch's where no NaN is involved, not compared here
    "clamp with tensor bounds": Case(lambda m, a, b: (m.clamp(a, min=b), m.clamp(a, max=b)), binary,
                                     grad_inputs=(0,), expected=lambda a, b: _clamp_expected(a, b)),
    "amin": Case(lambda m, pairs, long: (pairs.amin(1), long.amin()), rows),
    "max and min over everything": Case(lambda m, pairs, long: (long[:2].max(), pairs[:3].min()), rows),
    "relu6 and hardtanh": Case(lambda m, x: (F(m).relu6(x), F(m).hardtanh(x))),
    "leaky_relu and elu": Case(lambda m, x: (F(m).leaky_relu(x), F(m).elu(x))),
    "sigmoid, silu, softplus": Case(lambda m, x: (m.sigmoid(x), F(m).silu(x), F(m).softplus(x))),
    "gelu": Case(lambda m, x: F(m).gelu(x), expected=lambda x: [_gelu_expected(x)]),
    "softmax and log_softmax": Case(lambda m, pairs, long: (m.softmax(pairs, 1), m.log_softmax(pairs, 1),
                                                            m.softmax(long, 1)), rows),
    # var of rows with NaN and -0. (with an Inf, graphc's gradient is NaN everywhere: the mean's share,
    # sum(x - mean), is NaN; PyTorch's formula leaves out that share, 0 in exact arithmetic)
    "mean and var": Case(lambda m, pairs, long: (pairs.mean(1), long[[0, 3, 4]].var(1), long.mean()), rows),
}
# ops that cannot meet a special value of their own
EXEMPT = {
    "input": "every case reads its values through inputs",
    "rand": "makes values in [0, 1) only (its bits are tested against the C backend's elsewhere)",
}


def test_every_op_has_a_case():
    missing = sorted(set(table.OPS) - set(CASES) - set(EXEMPT))
    assert not missing, f"ops of the table without a special-values case in {__file__}: {missing}"
    unknown = sorted(set(CASES) - set(table.OPS) - {n for n, c in CASES.items() if c.ops})
    assert not unknown, f"cases for ops the table does not have: {unknown}"


# ---- running the cases ------------------------------------------------------------------------
@dataclass
class Built:
    """One case on graphc: its lazy results (values, then gradients) and the ops its graph has."""
    name: str
    case: Case
    arrays: list
    values: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    grad_positions: list = field(default_factory=list)


def _results(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _grad_positions(case: Case, arrays) -> list:
    if not case.grad:
        return []
    if case.grad_inputs is not None:
        return list(case.grad_inputs)
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]


def build(name: str, case: Case) -> Built:
    arrays = case.inputs()
    positions = _grad_positions(case, arrays)
    tensors = [graphc.tensor(a, requires_grad=i in positions) for i, a in enumerate(arrays)]
    built = Built(name, case, arrays, grad_positions=positions)
    built.values = _results(case.function(graphc, *tensors))
    if positions:
        differentiable = [v for v in built.values if v.requires_grad]
        total = differentiable[0].sum()
        for value in differentiable[1:]:
            total = total + value.sum()
        built.grads = list(graphc.autograd.grad(total, [tensors[i] for i in positions], materialize_grads=True))
    return built


def torch_results(built: Built, torch) -> tuple[list, list]:
    case = built.case
    tensors = [torch.tensor(a, requires_grad=i in built.grad_positions) for i, a in enumerate(built.arrays)]
    function = case.torch_function or case.function
    values = _results(function(torch, *tensors))
    grads = []
    if built.grad_positions:
        differentiable = [v for v in values if v.requires_grad]
        total = sum(v.sum() for v in differentiable)
        grads = torch.autograd.grad(total, [tensors[i] for i in built.grad_positions], allow_unused=True,
                                    materialize_grads=True)
    return [v.detach().numpy() for v in values], [g.numpy() for g in grads]


def all_cases() -> dict:
    return {**CASES, **COMPOSITES}


@pytest.fixture(scope="module")
def gathered():
    """Every case in one graph: (builds, graph, bindings, positions of each build's outputs)."""
    builds = [build(name, case) for name, case in all_cases().items()]
    nodes, spans = [], []
    for built in builds:
        start = len(nodes)
        nodes += [t._node for t in built.values + built.grads]
        spans.append((start, len(nodes)))
    result = build_graph(nodes)
    return builds, result.graph, result.bindings, spans


def mismatch(got, want, signed_zeros: bool = True) -> str | None:
    """Why `got` is not PyTorch's `want` (None when it is): NaN, infinities and (for results, not
    gradients, whose zeros' signs follow the order of a formula's terms) zeros' signs exactly."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if want.dtype.kind != "f":
        return None if np.array_equal(got, want) else f"{got.tolist()} != {want.tolist()}"
    got, want = got.astype(np.float64), want.astype(np.float64)
    bad = np.isnan(got) != np.isnan(want)
    both = ~np.isnan(got) & ~np.isnan(want)
    infinite = both & (np.isinf(want) | np.isinf(got))
    bad |= infinite & (got != want)
    zeros = both & (want == 0) & (got == 0)
    if signed_zeros:
        bad |= zeros & (np.signbit(got) != np.signbit(want))
    finite = want[np.isfinite(want)]
    scale = max(float(np.abs(finite).max()) if finite.size else 0.0, 1.0)
    ordinary = both & ~infinite & ~zeros
    bad |= ordinary & ~np.isclose(got, want, rtol=RTOL, atol=RTOL * scale)
    if not bad.any():
        return None
    where = np.argwhere(bad)[:6]
    return "; ".join(f"at {tuple(int(i) for i in w)}: {got[tuple(w)]!r} != {want[tuple(w)]!r}" for w in where)


def _run(backend: str, graph, bindings) -> list:
    if backend == "interpreter":
        with np.errstate(all="ignore"):
            return interpreter.evaluate(graph, bindings)
    if backend == "c":
        return CompiledGraph(graph)(bindings)
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++")
    from cuda_emulator import EmulatedCudaGraph
    return EmulatedCudaGraph(graph)(bindings)


@pytest.mark.parametrize("backend", ["interpreter", "c", "cuda-emulated"])
def test_special_values_as_pytorch(gathered, backend):
    torch = pytest.importorskip("torch")
    builds, graph, bindings, spans = gathered
    outputs = _run(backend, graph, bindings)
    failures = []
    for built, (start, stop) in zip(builds, spans):
        got = outputs[start:stop]
        want_values, want_grads = torch_results(built, torch)
        if built.case.expected is not None:
            want_values = built.case.expected(*built.arrays)
        labels = [f"result {i}" for i in range(len(want_values))] + \
                 [f"gradient of input {p}" for p in built.grad_positions]
        for label, value, want in zip(labels, got, want_values + want_grads):
            problem = mismatch(value, want, signed_zeros=label.startswith("result"))
            if problem:
                failures.append(f"{built.name}, {label}: {problem}")
    assert not failures, f"{backend}: {len(failures)} differences from PyTorch:\n" + "\n".join(failures)


def test_cases_exercise_their_ops():
    for name, case in CASES.items():
        built = build(name, case)   # fresh: a failure's report may have printed (realized) the shared ones
        graph = build_graph([t._node for t in built.values + built.grads]).graph
        ops = {node.op for node in graph.nodes()}
        wanted = set(built.case.ops or (built.name,))
        assert wanted <= ops, f"case {built.name!r} does not reach {sorted(wanted - ops)} (its graph has {sorted(ops)})"


# ---- without PyTorch: the rules that matter most, with NumPy's answers ---------------------------
def _numpy_subset():
    """(label, graphc result, expected array) for rules stated by NumPy and PyTorch alike."""
    x = graphc.tensor(VALUES, requires_grad=True)
    a, b = graphc.tensor(PAIRS_A), graphc.tensor(PAIRS_B)
    rows_of_pairs = graphc.tensor(np.stack([PAIRS_A, PAIRS_B], axis=1))
    zero = np.float32(0)
    relu_expected = np.where(VALUES <= 0, zero, VALUES)
    checks = [
        ("relu keeps NaN", graphc.relu(x), relu_expected),
        ("maximum propagates NaN", graphc.maximum(a, b), np.maximum(PAIRS_A, PAIRS_B)),
        ("minimum propagates NaN", graphc.minimum(a, b), np.minimum(PAIRS_A, PAIRS_B)),
        ("clamp(min=nan) is NaN", graphc.clamp(x, min=nan), np.full_like(VALUES, nan)),
        ("clamp(max=nan) is NaN", graphc.clamp(x, max=nan), np.full_like(VALUES, nan)),
        ("clamp(-1, 1) keeps NaN", graphc.clamp(x, -1.0, 1.0), np.clip(VALUES, -1, 1)),
        ("amax propagates NaN", rows_of_pairs.amax(1), np.max(np.stack([PAIRS_A, PAIRS_B], 1), axis=1)),
        ("amin propagates NaN", rows_of_pairs.amin(1), np.min(np.stack([PAIRS_A, PAIRS_B], 1), axis=1)),
        ("sign(NaN) is NaN", graphc.sign(x), np.sign(VALUES)),
        ("a < b is False with NaN", a < b, PAIRS_A < PAIRS_B),
        ("a == b is False with NaN", a == b, PAIRS_A == PAIRS_B),
        ("a != b is True with NaN", a != b, PAIRS_A != PAIRS_B),
        ("where passes NaN through", graphc.where(a > 0, a, b), np.where(PAIRS_A > 0, PAIRS_A, PAIRS_B)),
        ("sqrt, log, exp of specials", graphc.log(graphc.sqrt(x)) + graphc.exp(x),
         np.log(np.sqrt(VALUES)) + np.exp(VALUES)),
        ("pow of specials", graphc.pow(a, b), np.power(PAIRS_A, PAIRS_B)),
    ]
    relu_grad, = graphc.autograd.grad(graphc.relu(x).sum(), [x])
    abs_grad, = graphc.autograd.grad(x.abs().sum(), [x])
    tie_grad, = graphc.autograd.grad(graphc.maximum(x, graphc.zeros(VALUES.shape)).sum(), [x])
    finite = np.where(np.isnan(VALUES), 0, VALUES)
    checks += [
        ("relu's gradient: 1 where x > 0 or NaN", relu_grad, ((VALUES > 0) | np.isnan(VALUES)).astype(np.float32)),
        ("abs's gradient: 0 at +-0 and NaN", abs_grad, np.sign(finite)),
        ("maximum's gradient: halved on ties, whole at NaN", tie_grad,
         np.where(VALUES == 0, 0.5, np.where(VALUES < 0, 0.0, 1.0)).astype(np.float32)),
    ]
    return checks


@pytest.mark.parametrize("backend", ["interpreter", "c"])
def test_numpy_subset(backend):
    checks = _numpy_subset()
    result = build_graph([t._node for _, t, _ in checks])
    outputs = _run(backend, result.graph, result.bindings)
    for (label, _, expected), got in zip(checks, outputs):
        with np.errstate(all="ignore"):   # NumPy's amax of [0., -0.] is -0. (PyTorch's: 0., graphc's)
            problem = mismatch(got, np.asarray(expected), signed_zeros=not label.startswith("am"))
        assert problem is None, f"{backend}: {label}: {problem}"


# ---- operands that are not tensors ----------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda t: graphc.relu([t, t]), "relu(): argument 'input' (position 1) must be Tensor, not list"),
    (lambda t: graphc.nn.functional.relu([t]), "relu(): argument 'input' (position 1) must be Tensor, not list"),
    (lambda t: graphc.exp(2.0), "exp(): argument 'input' (position 1) must be Tensor, not float"),
    (lambda t: graphc.sum([1, 2]), "sum(): argument 'input' (position 1) must be Tensor, not list"),
    (lambda t: graphc.sigmoid(None), "sigmoid(): argument 'input' (position 1) must be Tensor, not NoneType"),
    (lambda t: graphc.add([1.0], t), "add(): argument 'input' (position 1) must be Tensor, not list"),
    (lambda t: graphc.matmul([1.0], t), "matmul(): argument 'input' (position 1) must be Tensor, not list"),
    (lambda t: graphc.nn.functional.gelu((t,)), "gelu(): argument 'input' (position 1) must be Tensor, not tuple"),
    (lambda t: graphc.relu(input=[t]), "relu(): argument 'input' must be Tensor, not list"),
    (lambda t: graphc.where([True, False], t, t),
     "where(): argument 'condition' (position 1) must be Tensor, not list"),
])
def test_functional_ops_name_a_non_tensor_input(call, message):
    """PyTorch's TypeError, not an AttributeError from inside graphc."""
    t = graphc.ones(2)
    with pytest.raises(TypeError) as raised:
        call(t)
    assert str(raised.value) == message


def test_the_same_messages_as_pytorch():
    torch = pytest.importorskip("torch")
    for call in (lambda m, t: m.relu([t, t]), lambda m, t: m.exp(2.0), lambda m, t: m.nn.functional.relu([t]),
                 lambda m, t: m.add([1.0], t), lambda m, t: m.relu(input=[t])):
        messages = []
        for module in (graphc, torch):
            with pytest.raises(TypeError) as raised:
                call(module, module.ones(2))
            messages.append(str(raised.value))
        assert messages[0] == messages[1]
