"""User mistakes raise at the op, before anything runs, with a message that names the op, the
shapes involved and the user's file:line (this file's name and the line of the bad call)."""
import os
import re

import numpy as np
import pytest

import graphc
from graphc import backend
from graphc.errors import GraphcError, ShapeError

THIS_FILE = os.path.basename(__file__)


@pytest.fixture
def runs(monkeypatch):
    """Counts graph runs, to check that an error comes before anything is computed."""
    calls = []
    original = backend.run

    def counting(build):
        calls.append(build)
        return original(build)
    monkeypatch.setattr(backend, "run", counting)
    return calls


def expect_error(call, kind, op, *fragments, line=None):
    """`call` (a one-line lambda) raises `kind`; the message starts with the op's name, holds each
    fragment, and points at the lambda's line in this file (or at `line`)."""
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{op}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    location = f"{THIS_FILE}:{line or call.__code__.co_firstlineno}"
    assert location in message, (location, message)
    return message


def pending(rng, *shape, dtype="float32"):
    """A tensor whose value is not computed yet (so an early error provably ran nothing)."""
    return graphc.tensor(rng.uniform(-1, 1, size=shape).astype(dtype)) * 2


def shape_text(shape):
    return str(list(shape))


# ---- broadcasting ---------------------------------------------------------------------------
BROADCAST_OPS = [
    ("add", lambda x, y: x + y), ("sub", lambda x, y: x - y), ("mul", lambda x, y: y.__rmul__(x)),
    ("div", lambda x, y: x / y), ("pow", lambda x, y: x ** y), ("maximum", graphc.maximum),
    ("lt", lambda x, y: x < y), ("eq", lambda x, y: x == y), ("remainder", lambda x, y: x % y),
    ("where", lambda x, y: graphc.where(x > 0, x, y)), ("clamp", lambda x, y: x.clamp(min=y)),
]


@pytest.mark.parametrize("op, function", BROADCAST_OPS, ids=[o for o, _ in BROADCAST_OPS])
@pytest.mark.parametrize("shapes", [((3, 4), (5,)), ((2, 3), (3, 2)), ((4, 1, 3), (2, 4))])
def test_broadcast_mismatch(rng, runs, op, function, shapes):
    x, y = pending(rng, *shapes[0]), pending(rng, *shapes[1])
    # the user's line is the one calling into graphc: the table's lambda, or the call below
    code = getattr(function, "__code__", None)
    line = code.co_firstlineno if code is not None and code.co_filename == __file__ else None
    message = expect_error(lambda: function(x, y), ShapeError, op, shape_text(shapes[0]),
                           shape_text(shapes[1]), "must match", line=line)
    assert "non-singleton dimension" in message
    assert runs == []                         # raised before anything ran
    assert isinstance(ShapeError("x"), RuntimeError)   # PyTorch raises RuntimeError here


def test_broadcast_mismatch_with_0d_and_empty(rng, runs):
    x, e = pending(rng, 3), pending(rng, 0)
    expect_error(lambda: x + e, ShapeError, "add", "[3]", "[0]")
    expect_error(lambda: graphc.ones(2, 0) * pending(rng, 3, 2), ShapeError, "mul", "[2, 0]", "[3, 2]")
    assert runs == []


# ---- matmul ------------------------------------------------------------------------------
@pytest.mark.parametrize("left, right", [((3, 4), (5, 6)), ((3,), (4,)), ((2, 3), (4,)), ((4,), (3, 2)),
                                         ((2, 3, 4), (2, 5, 6)), ((2, 3, 4), (3, 4, 5)),
                                         ((2, 2, 3, 4), (3, 4, 5))])
def test_matmul_mismatch(rng, runs, left, right):
    x, y = pending(rng, *left), pending(rng, *right)
    expect_error(lambda: x @ y, ShapeError, "matmul", shape_text(left), shape_text(right))
    expect_error(lambda: graphc.matmul(x, y), ShapeError, "matmul", shape_text(left), shape_text(right))
    assert runs == []


def test_matmul_message_names_inner_sizes(rng):
    x, y = pending(rng, 3, 4), pending(rng, 5, 6)
    expect_error(lambda: x.matmul(y), ShapeError, "matmul", "(3x4 and 5x6)", "cannot be multiplied")


def test_mm_bmm_and_0d_matmul(rng, runs):
    x, y, z = pending(rng, 2, 3, 4), pending(rng, 3, 4), pending(rng, 3, 4, 5)
    expect_error(lambda: graphc.mm(x, y), ShapeError, "mm", "[2, 3, 4]", "[3, 4]")
    expect_error(lambda: x.bmm(z), ShapeError, "bmm", "[2, 3, 4]", "[3, 4, 5]")
    expect_error(lambda: graphc.bmm(y, z), ShapeError, "bmm", "[3, 4]", "[3, 4, 5]")
    expect_error(lambda: graphc.tensor(2.0) @ y, ShapeError, "matmul", "at least 1D")
    expect_error(lambda: y @ pending(rng, 4, 2, dtype="float64"), TypeError, "matmul",
                 "float32", "float64")
    assert runs == []


# ---- view / reshape / expand / permute ----------------------------------------------------
def test_view_errors(rng, runs):
    x = pending(rng, 3, 4)
    expect_error(lambda: x.view(5, 3), ShapeError, "view", "[5, 3]", "size 12")
    expect_error(lambda: x.view(-1, 5), ShapeError, "view", "[-1, 5]", "size 12")
    expect_error(lambda: x.view(-1, -1), ShapeError, "view", "only one dimension can be inferred")
    message = expect_error(lambda: x.t().view(12), ShapeError, "view", "[4, 3]", "[12]",
                           "not compatible with input tensor's size and stride")
    assert "reshape" in message               # the hint
    expect_error(lambda: x.reshape(7, -1), ShapeError, "reshape", "[7, -1]", "size 12")
    expect_error(lambda: x.expand(2, 5, 4), ShapeError, "expand", "[2, 5, 4]", "[3, 4]")
    expect_error(lambda: x.expand(4), ShapeError, "expand", "number of sizes")
    expect_error(lambda: x.permute(0, 0), ShapeError, "permute", "[0, 0]")
    expect_error(lambda: x.permute(1, 0, 2), ShapeError, "permute", "[3, 4]", "[1, 0, 2]")
    assert runs == []


@pytest.mark.parametrize("op, call", [
    ("sum", lambda x: x.sum(2)), ("mean", lambda x: x.mean(dim=-3)), ("transpose", lambda x: x.transpose(0, 2)),
    ("unsqueeze", lambda x: x.unsqueeze(4)), ("squeeze", lambda x: x.squeeze(3)),
    ("argmax", lambda x: x.argmax(5)), ("cat", lambda x: graphc.cat([x, x], dim=2)),
    ("softmax", lambda x: x.softmax(2)), ("var", lambda x: x.var(-5)), ("select", lambda x: x.select(3, 0)),
])
def test_dimension_out_of_range(rng, runs, op, call):
    x = pending(rng, 3, 4)
    with pytest.raises(IndexError) as info:
        call(x)
    message = str(info.value)
    assert message.startswith(f"{op}: Dimension out of range"), message
    assert f"{THIS_FILE}:" in message
    assert runs == []


# ---- cat, stack, split ------------------------------------------------------------------
def test_cat_stack_split_errors(rng, runs):
    x, y, v = pending(rng, 3, 4), pending(rng, 2, 5), pending(rng, 4)
    expect_error(lambda: graphc.cat([x, y]), ShapeError, "cat", "[3, 4]", "[2, 5]",
                 "Sizes of tensors must match except in dimension 0")
    expect_error(lambda: graphc.cat([x, x.t()], dim=1), ShapeError, "cat", "[3, 4]", "[4, 3]")
    expect_error(lambda: graphc.cat([x, v]), ShapeError, "cat", "same number of dimensions")
    expect_error(lambda: graphc.cat([]), ValueError, "cat", "non-empty")
    expect_error(lambda: graphc.stack([x, x.t()]), ShapeError, "stack", "[3, 4]", "[4, 3]")
    expect_error(lambda: x.split([1, 1]), ShapeError, "split", "[1, 1]", "sum exactly to 3")
    expect_error(lambda: x.chunk(0), RuntimeError, "chunk", "greater than 0")
    assert runs == []


# ---- indexing ----------------------------------------------------------------------------
def test_index_errors(rng):
    x = pending(rng, 3, 4)
    expect_error(lambda: x[3], IndexError, "index", "index 3 is out of bounds for dimension 0 with size 3")
    expect_error(lambda: x[:, -5], IndexError, "index", "index -5 is out of bounds for dimension 1")
    expect_error(lambda: x[0, 1, 2], IndexError, "index", "too many indices for tensor of dimension 2")
    expect_error(lambda: x[..., ...], IndexError, "index", "single ellipsis")
    expect_error(lambda: x[graphc.tensor([0, 3])], IndexError, "index", "index 3 is out of bounds")
    expect_error(lambda: x[graphc.tensor([0.5])], IndexError, "index", "long, int or bool", "float32")
    expect_error(lambda: x[[0, 1, 2], [0, 1]], IndexError, "index", "could not be broadcast", "[3], [2]")
    expect_error(lambda: x.__setitem__(([0, 1, 2], [0, 1]), 1.0), IndexError, "index_put_",
                 "could not be broadcast")
    expect_error(lambda: x[graphc.tensor([True, False])], IndexError, "index", "mask [2]", "[3]")
    expect_error(lambda: x[::-1], ValueError, "index", "step must be greater than zero")
    expect_error(lambda: x[1.0], IndexError, "index", "only integers, slices", "float")
    expect_error(lambda: x.select(1, 4), IndexError, "select", "index 4 is out of bounds")
    expect_error(lambda: x.narrow(0, 2, 5), IndexError, "narrow", "exceeds dimension size")


# ---- in-place -------------------------------------------------------------------------------
def test_inplace_errors(rng, runs):
    x = pending(rng, 3, 4)
    i = graphc.tensor(rng.integers(-5, 5, size=4))
    expect_error(lambda: x.add_(pending(rng, 2, 3, 4)), ShapeError, "add_", "[3, 4]", "[2, 3, 4]")
    expect_error(lambda: x.mul_(pending(rng, 5)), ShapeError, "mul", "[5]", "[3, 4]")
    expect_error(lambda: x.copy_(pending(rng, 3)), ShapeError, "copy_", "[3]", "[3, 4]")
    expect_error(lambda: x.__setitem__(0, pending(rng, 3)), ShapeError, "copy_", "[3]", "[4]")
    expect_error(lambda: i.div_(2), RuntimeError, "div_", "float32", "int64", "can't be cast")
    expect_error(lambda: i.add_(1.5), RuntimeError, "add_", "can't be cast")
    expect_error(lambda: i.__imul__(pending(rng, 4)), RuntimeError, "mul_", "can't be cast")
    assert runs == []


def test_leaf_requiring_grad_cannot_be_written_in_place(rng):
    w = graphc.tensor(rng.uniform(-1, 1, size=3), requires_grad=True)
    expect_error(lambda: w.add_(1.0), RuntimeError, "add_", "leaf Variable that requires grad")
    with graphc.no_grad():
        w.add_(1.0)


# ---- dtype refusals ------------------------------------------------------------------------
def test_bool_arithmetic_refusals(rng, runs):
    b = graphc.tensor(rng.random(4) < 0.5)
    i = graphc.tensor(rng.integers(-5, 5, size=4))
    expect_error(lambda: b - b, RuntimeError, "sub", "Subtraction", "bool tensor")
    expect_error(lambda: i - True, RuntimeError, "sub", "bool tensor")
    expect_error(lambda: -b, RuntimeError, "neg", "Negation", "logical_not")
    expect_error(lambda: b.neg(), RuntimeError, "neg", "Negation")
    expect_error(lambda: b // b, RuntimeError, "floor_divide", "bool")
    expect_error(lambda: b % b, RuntimeError, "remainder", "bool")
    expect_error(lambda: b ** b, RuntimeError, "pow", "bool")
    expect_error(lambda: b.relu(), RuntimeError, "relu", "Boolean")
    expect_error(lambda: i ** -1, RuntimeError, "pow", "negative integer powers")
    expect_error(lambda: i // 0, RuntimeError, "floor_divide", "ZeroDivisionError")
    expect_error(lambda: i % 0, RuntimeError, "remainder", "ZeroDivisionError")
    expect_error(lambda: graphc.where(i, i, i), TypeError, "where", "bool", "int64")
    assert runs == []
    with pytest.raises(TypeError, match="bool tensors only"):
        graphc.tensor([1.0]) & graphc.tensor([2.0])


def test_mean_and_requires_grad_on_integers(rng):
    i = graphc.tensor(rng.integers(-5, 5, size=4))
    expect_error(lambda: i.mean(), RuntimeError, "mean", "floating point", "int64")
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        i.requires_grad_()


def test_empty_reductions(rng):
    e = graphc.zeros(0, 3)
    expect_error(lambda: e.max(), IndexError, "amax", "numel() == 0")
    expect_error(lambda: e.argmax(), IndexError, "argmax", "numel() == 0")
    expect_error(lambda: e.min(dim=0), IndexError, "argmin", "reduced dims to be non-empty")


# ---- conversions ----------------------------------------------------------------------------
def test_scalar_conversion_errors(rng):
    x = graphc.tensor(rng.uniform(-1, 1, size=(2, 3)))
    with pytest.raises(RuntimeError, match="a Tensor with 6 elements cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(x > 0)
    with pytest.raises(TypeError, match="only integer tensors of a single element"):
        [1, 2, 3][graphc.tensor(1.0)]
    assert [1, 2, 3][graphc.tensor(2)] == 3
    with pytest.raises(ValueError, match="ragged"):
        graphc.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match=re.escape("new(): data must be a sequence (got float)")):
        graphc.Tensor(1.5)  # graphc.Tensor(data) is PyTorch's legacy constructor (tests/test_legacy_api.py)
    w = graphc.tensor(rng.uniform(-1, 1, size=3), requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape("Use tensor.detach().numpy()")):
        w.numpy()
    np.testing.assert_array_equal(w.detach().numpy(), w.numpy(force=True))


def test_errors_are_graphc_errors():
    assert issubclass(ShapeError, GraphcError) and issubclass(ShapeError, ValueError)
    assert issubclass(GraphcError, RuntimeError)


def test_writes_into_expanded_tensors(rng):
    base = graphc.tensor(rng.uniform(-1, 1, size=(3, 1)))
    x = base.expand(3, 4)
    expect_error(lambda: x.add_(1.0), RuntimeError, "add_", "single memory location", "[3, 4]")
    expect_error(lambda: x.copy_(graphc.rand(3, 4)), RuntimeError, "copy_", "single memory location")
    expect_error(lambda: x.__setitem__(0, 1.0), RuntimeError, "copy_", "single memory location")
    expect_error(lambda: x.__setitem__(graphc.tensor([0, 2]), 1.0), RuntimeError, "index_put_",
                 "single memory location")
    value = float(rng.uniform(-1, 1))
    x.fill_(value)                            # every element agrees: allowed, as in PyTorch
    np.testing.assert_allclose(base.numpy(), np.full((3, 1), value))
    x[:, 0] = 2.0                             # a column of an expanded tensor does not overlap
    np.testing.assert_allclose(base.numpy(), np.full((3, 1), 2.0))
    x.zero_()
    np.testing.assert_array_equal(base.numpy(), np.zeros((3, 1)))


# ---- losses: labels --------------------------------------------------------------------------
def test_cross_entropy_label_mistakes(rng, runs):
    import graphc.nn.functional as F
    logits = pending(rng, 4, 3)
    float_labels = graphc.tensor(rng.integers(0, 3, size=4).astype(np.float32))
    expect_error(lambda: F.cross_entropy(logits, float_labels), TypeError, "cross_entropy",
                 "class indices (an int64 tensor)", "float32 tensor of shape [4]", "HINT: labels must be integers")
    expect_error(lambda: graphc.nn.CrossEntropyLoss()(logits, float_labels), TypeError, "cross_entropy",
                 "float32")
    wrong_batch = graphc.tensor(rng.integers(0, 3, size=(2, 2)))
    expect_error(lambda: F.cross_entropy(logits, wrong_batch), ShapeError, "cross_entropy",
                 "Expected input batch_size (4) to match target batch_size (2)", "input shape [4, 3]",
                 "target shape [2, 2]")
    extra_dim = graphc.tensor(rng.integers(0, 3, size=(4, 2)))
    expect_error(lambda: F.nll_loss(logits, extra_dim), ShapeError, "nll_loss",
                 "class-index target of shape [4]", "target shape [4, 2]")
    one_hot = graphc.tensor(np.eye(3, dtype=np.int64)[rng.integers(0, 3, size=4)])
    expect_error(lambda: F.cross_entropy(logits, one_hot), ShapeError, "cross_entropy",
                 "target shape [4, 3]", "HINT: one-hot labels?", "target.argmax(dim=1)")
    assert runs == []
    # the hint's way out gives the loss of the class indices
    labels = one_hot.argmax(dim=1)
    log_probs = logits.numpy().astype(np.float64)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(1, keepdims=True))
    np.testing.assert_allclose(F.cross_entropy(logits, labels).item(),
                               -log_probs[np.arange(4), labels.numpy()].mean(), rtol=1e-5)


def test_class_index_out_of_range_names_the_index_and_class_count(rng, runs):
    import graphc.nn.functional as F
    logits = pending(rng, 5, 4)
    labels = rng.integers(0, 4, size=5)
    labels[3] = 6
    expect_error(lambda: F.cross_entropy(logits, graphc.tensor(labels)), IndexError, "cross_entropy",
                 "Target 6 is out of bounds", "4 classes", "valid targets are 0..3")
    labels[3] = -2
    expect_error(lambda: F.nll_loss(logits.log_softmax(1), graphc.tensor(labels)), IndexError, "nll_loss",
                 "Target -2 is out of bounds", "4 classes")
    assert runs == []


# ---- autograd ---------------------------------------------------------------------------------
def test_backward_on_a_non_scalar_names_the_call_and_the_output(rng, runs):
    w = graphc.tensor(rng.uniform(-1, 1, size=(2, 3)), requires_grad=True)
    y = w * 2                                 # the output's own line is named too
    made = y._node.where
    expect_error(lambda: y.backward(), RuntimeError, "backward",
                           "grad can be implicitly created only for scalar outputs", "shape [2, 3]",
                           f"made at {made}", "HINT: pass gradient=")
    assert f"{THIS_FILE}:" in made
    expect_error(lambda: graphc.autograd.grad(y, w), RuntimeError, "autograd.grad", "scalar outputs")
    expect_error(lambda: (pending(rng, 3) * 2).sum().backward(), RuntimeError, "backward",
                 "does not require grad", "requires_grad=True")
    assert runs == []


def test_backward_twice_without_retain_graph_raises_as_pytorch(rng):
    """PyTorch frees a graph's saved tensors after backward() and raises on a second backward
    through a node that saved some, unless retain_graph=True; a second backward through nodes that
    save nothing (a sum, a mean, an add, a view) is allowed and accumulates."""
    values = rng.uniform(-1, 1, size=3)
    w = graphc.tensor(values, requires_grad=True)
    loss = (w * w * w).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(w.grad.numpy(), 3 * values ** 2, rtol=1e-6)
    loss.backward()                                    # retained: allowed, and frees
    np.testing.assert_allclose(w.grad.numpy(), 6 * values ** 2, rtol=1e-6)
    expect_error(lambda: loss.backward(), RuntimeError, "backward",
                 "Trying to backward through the graph a second time", "retain_graph=True")
    np.testing.assert_allclose(w.grad.numpy(), 6 * values ** 2, rtol=1e-6)   # nothing added
    with pytest.raises(RuntimeError, match="second time"):
        graphc.autograd.grad((w * w * w).sum() + loss, [w])   # a new graph that reuses the freed one
    linear = (w + 1).mean() + w.view(3, 1).t().sum()    # saves nothing: PyTorch allows a second pass
    w.grad = None
    linear.backward()
    linear.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * (1 / 3 + 1) * np.ones(3), rtol=1e-6)
    scaled = (w * 2).sum()                              # MulBackward0 keeps the 2, as in PyTorch
    scaled.backward()
    with pytest.raises(RuntimeError, match="second time"):
        scaled.backward()
    squared = (w * w).sum()
    graphc.autograd.grad(squared, [w], create_graph=True)   # create_graph retains by default
    (gradient,) = graphc.autograd.grad(squared, [w])
    np.testing.assert_allclose(gradient.numpy(), 2 * values, rtol=1e-6)
    with pytest.raises(RuntimeError, match="second time"):
        squared.backward()


# ---- load_state_dict ---------------------------------------------------------------------------
class _TwoLayer(graphc.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = graphc.nn.Linear(4, 3)
        self.out = graphc.nn.Linear(3, 2)


def test_load_state_dict_size_mismatch(rng):
    model = _TwoLayer()
    state = dict(model.state_dict())
    state["fc.weight"] = graphc.tensor(rng.uniform(-1, 1, size=(3, 5)).astype(np.float32))
    expect_error(lambda: model.load_state_dict(state), RuntimeError, "load_state_dict",
                 "Error(s) in loading state_dict for _TwoLayer", "size mismatch for fc.weight: copying a param "
                 "with shape graphc.Size([3, 5]) from checkpoint, the shape in current model is graphc.Size([3, 4]).")
    before = model.fc.weight.detach().numpy().copy()
    expect_error(lambda: model.load_state_dict(state, strict=False), RuntimeError, "load_state_dict",
                 "size mismatch for fc.weight")
    np.testing.assert_array_equal(model.fc.weight.detach().numpy(), before)


def test_load_state_dict_missing_and_unexpected_keys(rng):
    model, source = _TwoLayer(), _TwoLayer()
    state = dict(source.state_dict())
    del state["out.bias"]
    state["head.weight"] = graphc.tensor(rng.uniform(-1, 1, size=2).astype(np.float32))
    expect_error(lambda: model.load_state_dict(state), RuntimeError, "load_state_dict",
                 'Missing key(s) in state_dict: "out.bias".', 'Unexpected key(s) in state_dict: "head.weight".',
                 "HINT: pass strict=False")
    wrapped = {"module." + key: value for key, value in source.state_dict().items()}
    expect_error(lambda: model.load_state_dict(wrapped), RuntimeError, "load_state_dict",
                 '"module.fc.weight"', "start with 'module.'", "removeprefix")
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["out.bias"] and result.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(model.fc.weight.detach().numpy(), source.fc.weight.detach().numpy())


# ---- graphc.compile(strict=True) ---------------------------------------------------------------
def _strict_step(rng, **options):
    model = graphc.nn.Linear(4, 2)
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.1)

    def train_step(x, y):
        optimizer.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss
    return model, graphc.compile(train_step, **options)


def _numpy_loss(model, x, y):
    w, b = model.weight.detach().numpy().astype(np.float64), model.bias.detach().numpy().astype(np.float64)
    return float((((x @ w.T + b) - y) ** 2).mean())


def test_strict_compile_raises_naming_the_changed_argument(rng):
    model, step = _strict_step(rng, strict=True)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    for _ in range(3):   # the first call creates gradients: its trace is not kept, the second's is
        expected = _numpy_loss(model, x, y)
        np.testing.assert_allclose(step(graphc.tensor(x), graphc.tensor(y)).item(), expected, rtol=1e-5)
    traces = step.stats()["traces"]
    small = graphc.tensor(x[:5])
    expect_error(lambda: step(small, graphc.tensor(y[:5])), graphc.errors.RetraceError, "graphc.compile",
                 "train_step (strict=True)", "argument 0 (x).shape changed from (8, 4) to (5, 4)",
                 "HINT: strict mode never retraces")
    expect_error(lambda: step(graphc.tensor(x).double(), graphc.tensor(y)), RuntimeError, "graphc.compile",
                 "argument 0 (x).dtype changed from 'float32' to 'float64'")
    model.eval()
    expect_error(lambda: step(graphc.tensor(x), graphc.tensor(y)), RuntimeError, "graphc.compile",
                 "Linear training[0] changed from True to False")
    model.train()
    assert step.stats()["traces"] == traces   # nothing was traced again
    expected = _numpy_loss(model, x, y)       # and the program still replays
    np.testing.assert_allclose(step(graphc.tensor(x), graphc.tensor(y)).item(), expected, rtol=1e-5)


def test_strict_from_the_environment_and_not_by_default(rng, monkeypatch):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    monkeypatch.setenv("GRAPHC_STRICT", "1")
    _, strict = _strict_step(rng)
    _, relaxed = _strict_step(rng, strict=False)
    monkeypatch.delenv("GRAPHC_STRICT")
    _, default = _strict_step(rng)
    for step in (strict, relaxed, default):
        for _ in range(2):
            step(graphc.tensor(x), graphc.tensor(x[:, :2]))
    expect_error(lambda: strict(graphc.tensor(x[:1]), graphc.tensor(x[:1, :2])), RuntimeError,
                 "graphc.compile", "argument 0 (x).shape changed from (3, 4) to (1, 4)")
    for step in (relaxed, default):
        model_loss = step(graphc.tensor(x[:1]), graphc.tensor(x[:1, :2]))
        assert model_loss.shape == ()
        assert "argument 0.shape" in step.stats()["history"][-1]["reason"]
