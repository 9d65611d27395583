"""The autograd API as the tutorials use it, and gradients of the Tensor API's composite ops."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
from gradcheck import check_gradients, numeric_gradient


# ---- the tutorial examples ---------------------------------------------------------------------
def test_tutorial_mean_of_squares():
    x = graphc.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 2), 4.5))
    assert y.grad_fn.name() == "AddBackward0"
    assert z.grad_fn.name() == "MulBackward0"
    assert out.grad_fn.name() == "MeanBackward0"


def test_tutorial_external_gradient(rng):
    a_values, b_values = rng.standard_normal(2), rng.standard_normal(2)
    a = graphc.tensor(a_values, requires_grad=True)
    b = graphc.tensor(b_values, requires_grad=True)
    Q = 3 * a ** 3 - b ** 2
    Q.backward(gradient=graphc.ones(2))
    np.testing.assert_allclose(a.grad.numpy(), 9 * a_values ** 2, rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), -2 * b_values, rtol=1e-6)


def test_gradients_accumulate_until_zeroed(rng):
    values = rng.standard_normal(3)
    w = graphc.tensor(values, requires_grad=True)
    for _ in range(2):
        (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 4 * values, rtol=1e-6)
    w.grad.zero_()
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * values, rtol=1e-6)


def test_manual_sgd_with_data_attribute(rng):
    """The tutorial's hand-written update: w.data = w.data - lr * w.grad.data."""
    x = graphc.tensor(rng.standard_normal((16, 1)), dtype=graphc.float32)
    y = 2 * x + 1
    w = graphc.tensor([[0.5]], requires_grad=True)
    b = graphc.tensor([0.0], requires_grad=True)
    for _ in range(300):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        w.data = w.data - 0.1 * w.grad.data
        b.data = b.data - 0.1 * b.grad.data
        w.grad.data.zero_()
        b.grad.data.zero_()
    assert w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.item(), 2.0, atol=1e-3)
    np.testing.assert_allclose(b.item(), 1.0, atol=1e-3)


# ---- grad modes, leaves, detach ----------------------------------------------------------------
def test_requires_grad_propagation_and_leaves():
    a = graphc.randn(3, requires_grad=True)
    b = graphc.randn(3)
    c = a * b
    assert c.requires_grad and not c.is_leaf and a.is_leaf and b.is_leaf
    assert not (b * 2).requires_grad
    assert (b * 2).grad_fn is None
    d = c.detach()
    assert not d.requires_grad and d.is_leaf
    with graphc.no_grad():
        e = a * 2
    assert not e.requires_grad and e.grad_fn is None
    b.requires_grad_()
    assert b.requires_grad
    with pytest.raises(RuntimeError, match="leaf variables"):
        c.requires_grad = False


def test_grad_mode_context_managers_and_decorators():
    x = graphc.randn(2, requires_grad=True)

    @graphc.no_grad()
    def doubled(value):
        return value * 2

    @graphc.enable_grad()
    def tripled(value):
        return value * 3

    assert not doubled(x).requires_grad
    with graphc.no_grad():
        assert not graphc.is_grad_enabled()
        assert tripled(x).requires_grad
        with graphc.enable_grad():
            assert (x * 2).requires_grad
    with graphc.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert graphc.is_grad_enabled()
    graphc.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    graphc.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_detached_values_do_not_carry_gradients(rng):
    values = rng.standard_normal(4)
    x = graphc.tensor(values, requires_grad=True)
    y = x * x.detach()  # d/dx = x (the detached factor is a constant)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), values, rtol=1e-6)


def test_no_grad_updates_keep_leaf(rng):
    w = graphc.tensor(rng.standard_normal(3), requires_grad=True)
    (w * 3).sum().backward()
    with graphc.no_grad():
        w -= 0.5 * w.grad
    assert w.is_leaf and w.requires_grad and w.grad_fn is None


def test_variable_shim():
    from graphc.autograd import Variable
    x = Variable(graphc.ones(2), requires_grad=True)
    assert x.requires_grad and isinstance(x, graphc.Tensor)


def test_grad_fn_chain_reaches_accumulate_grad():
    x = graphc.randn(2, 2, requires_grad=True)
    out = ((x + 2) * 3).mean()
    mul = out.grad_fn.next_functions[0][0]
    add = mul.next_functions[0][0]
    leaf = add.next_functions[0][0]
    assert [mul.name(), add.name(), leaf.name()] == ["MulBackward0", "AddBackward0", "AccumulateGrad"]
    assert leaf.variable is x
    assert "grad_fn=<MeanBackward0>" in repr(out)


# ---- errors ------------------------------------------------------------------------------------
def test_backward_on_non_scalar_needs_gradient():
    y = graphc.randn(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs") as info:
        y.backward()
    assert "test_autograd.py" in str(info.value)


def test_backward_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (graphc.randn(3) * 2).sum().backward()


def test_inplace_change_of_a_needed_value_is_detected():
    w = graphc.randn(3, requires_grad=True)
    x = graphc.randn(3)
    loss = (w * x).sum()  # the gradient for w needs x
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_inplace_on_leaf_requiring_grad_raises():
    w = graphc.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1.0)


# ---- autograd.grad and higher order ------------------------------------------------------------
def test_autograd_grad_returns_without_accumulating(rng):
    values = rng.standard_normal(3)
    x = graphc.tensor(values, requires_grad=True)
    (gx,) = graphc.autograd.grad((x ** 3).sum(), x)
    np.testing.assert_allclose(gx.numpy(), 3 * values ** 2, rtol=1e-6)
    assert x.grad is None
    unused = graphc.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used"):
        graphc.autograd.grad((x * 2).sum(), [x, unused])
    _, none = graphc.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert none is None


def _second_derivative_check(function, values, rng):
    """d/dx of (grad f . v) with create_graph=True, against finite differences of grad f . v."""
    direction = rng.standard_normal(values.shape)

    def first_derivative(array):
        x = graphc.tensor(array, requires_grad=True)
        (g,) = graphc.autograd.grad(function(x), x)
        return float(np.sum(g.numpy() * direction))

    x = graphc.tensor(values, requires_grad=True)
    (g,) = graphc.autograd.grad(function(x), x, create_graph=True)
    assert g.requires_grad
    (hessian_vector,) = graphc.autograd.grad((g * graphc.tensor(direction)).sum(), x)
    expected = numeric_gradient(first_derivative, [values.copy()], 0)
    np.testing.assert_allclose(hessian_vector.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_second_derivative_tanh(rng):
    _second_derivative_check(lambda x: x.tanh().sum(), rng.standard_normal(5), rng)


def test_second_derivative_mul(rng):
    _second_derivative_check(lambda x: (x * x * x).sum(), rng.standard_normal(4), rng)


def test_second_derivative_matmul(rng):
    other = graphc.tensor(rng.standard_normal((3, 2)))
    _second_derivative_check(lambda x: ((x @ other) ** 2).sum(), rng.standard_normal((4, 3)), rng)


def test_second_derivative_softmax_cross_entropy(rng):
    labels = rng.integers(0, 5, size=4)
    one_hot = graphc.tensor(np.eye(5)[labels])

    def loss(logits):
        return -(logits.log_softmax(dim=1) * one_hot).sum(dim=1).mean()
    _second_derivative_check(loss, rng.standard_normal((4, 5)), rng)


# ---- gradients of the Tensor API's ops ---------------------------------------------------------
def _positive(rng, *shape):
    return rng.uniform(0.5, 2.0, size=shape)


COMPOSITES = {
    "broadcast add": (lambda a, b: a + b, [(3, 1, 4), (2, 4)]),
    "broadcast mul scalar": (lambda a: 2.5 * a - 1, [(3, 4)]),
    "div": (lambda a, b: a / b, [(3, 4), "positive(4)"]),
    "rdiv": (lambda a: 1.0 / a, ["positive(3)"]),
    "pow scalar": (lambda a: a ** 3, [(4,)]),
    "pow tensor": (lambda a, b: a ** b, ["positive(3, 2)", (3, 2)]),
    "rpow": (lambda a: 2.0 ** a, [(4,)]),
    "sigmoid": (lambda a: a.sigmoid(), [(3, 4)]),
    "relu": (lambda a: a.relu(), [(3, 4)]),
    "tanh": (lambda a: a.tanh(), [(5,)]),
    "rsqrt": (lambda a: a.rsqrt(), ["positive(5)"]),
    "exp log": (lambda a: a.exp().log1p() if hasattr(a, "log1p") else (a.exp() + 1).log(), [(5,)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.7), [(4, 3)]),
    "softmax": (lambda a: a.softmax(dim=1), [(3, 5)]),
    "log_softmax": (lambda a: a.log_softmax(dim=0), [(4, 3)]),
    "mean dims": (lambda a: a.mean(dim=(0, 2), keepdim=True), [(2, 3, 4)]),
    "sum all": (lambda a: a.sum(), [(2, 3)]),
    "var": (lambda a: a.var(dim=1), [(3, 5)]),
    "std": (lambda a: a.std(), [(3, 4)]),
    "prod": (lambda a: a.prod(dim=0), ["positive(3, 2)"]),
    "max dim": (lambda a: a.max(dim=1).values, [(3, 5)]),
    "min dim keepdim": (lambda a: a.min(dim=0, keepdim=True)[0], [(4, 3)]),
    "amax": (lambda a: a.amax(dim=1), [(3, 4)]),
    "max all": (lambda a: a.max(), [(3, 4)]),
    "maximum": (lambda a, b: graphc.maximum(a, b), [(3, 4), (4,)]),
    "where": (lambda a, b: graphc.where(a > 0, a, b * 2), [(3, 4), (3, 4)]),
    "matmul vector": (lambda a, b: a @ b, [(3, 4), (4,)]),
    "matmul vector-matrix": (lambda a, b: a @ b, [(4,), (4, 2)]),
    "matmul dot": (lambda a, b: a @ b, [(4,), (4,)]),
    "matmul broadcast batch": (lambda a, b: a @ b, [(2, 1, 3, 4), (3, 4, 2)]),
    "mm transposed": (lambda a, b: a.t().mm(b), [(4, 3), (4, 2)]),
    "bmm": (lambda a, b: graphc.bmm(a, b), [(2, 3, 4), (2, 4, 5)]),
    "cat": (lambda a, b: graphc.cat([a, b * 2], dim=1), [(2, 3), (2, 2)]),
    "stack": (lambda a, b: graphc.stack([a, b], dim=1), [(3, 2), (3, 2)]),
    "split chunk": (lambda a: a.split(2, dim=1)[1] * a.chunk(3, dim=1)[0], [(3, 6)]),
    "views": (lambda a: a.permute(2, 0, 1).reshape(4, 6).t().unsqueeze(0).squeeze(0), [(2, 3, 4)]),
    "strided slice": (lambda a: a[1:, ::2] * 3, [(4, 5)]),
    "select and None": (lambda a: a[:, 1][None, ...], [(3, 4)]),
    "advanced index": (lambda a: a[graphc.tensor([2, 0, 2])], [(3, 4)]),
    "two index tensors": (lambda a: a[graphc.tensor([0, 2]), graphc.tensor([1, 3])], [(3, 4)]),
    "mask": (lambda a: a[a > 0], [(3, 4)]),
    "expand": (lambda a: a.expand(3, 4) * graphc.arange(12.0).reshape(3, 4), [(1, 4)]),
    "non-contiguous input": (lambda a: (a.T @ a).sum(dim=0), [(4, 3)]),
    "flatten": (lambda a: a.flatten(1) * 2, [(2, 3, 2)]),
    "abs": (lambda a: a.abs(), [(5,)]),
    "to float64": (lambda a: a.to(graphc.float64) * 2, [(3,)]),
}


def _make(spec, rng):
    if isinstance(spec, str):
        shape = eval(spec[len("positive"):])
        return _positive(rng, *((shape,) if isinstance(shape, int) else shape))
    return rng.standard_normal(spec)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_gradients_match_finite_differences(name, rng):
    function, specs = COMPOSITES[name]
    arrays = [_make(spec, rng) for spec in specs]
    check_gradients(function, arrays, rng)


def test_random_expression_graphs_match_finite_differences():
    """Property test: random small expressions of unary/binary ops and reductions."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st

    unary = {"tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(), "square": lambda t: t * t,
             "exp_small": lambda t: (t * 0.3).exp(), "neg": lambda t: -t,
             "sum_keep": lambda t: t.sum(dim=-1, keepdim=True), "transpose": lambda t: t.t()}
    binary = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
              "div": lambda a, b: a / (b * b + 1)}
    program = st.lists(st.tuples(st.sampled_from(sorted(unary) + sorted(binary)),
                                 st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=6)

    @settings(max_examples=25, deadline=None)
    @given(program, st.integers(0, 2 ** 31))
    def run(steps, seed):
        local = np.random.default_rng(seed)

        def function(x, y):
            values = [x, y]
            for op, first, second in steps:
                a = values[first % len(values)]
                if op in unary:
                    result = unary[op](a)
                else:
                    b = values[second % len(values)]
                    result = binary[op](a, b)
                values.append(result)
            return values[-1]
        check_gradients(function, [local.standard_normal((3, 3)), local.standard_normal((3, 3))], local)

    run()
