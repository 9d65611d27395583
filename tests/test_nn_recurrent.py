"""Recurrent layers (RNN, LSTM, GRU, their cells) and nn.utils.rnn's packed sequences.

The reference is a NumPy float64 loop of PyTorch's documented equations, run one masked step at
a time (a sequence's state stops changing after its end); gradients are central finite
differences of that reference (and, for small cases, of graphc itself). When torch is
importable, the same weights in torch's layers give the same outputs and gradients.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc import backend
from graphc.nn.utils import rnn as rnn_utils
from nn_testing import check_grads, reference_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("reference_backend")

STEPS, BATCH, FEATURES, HIDDEN = 3, 3, 3, 3
MODES = ["tanh", "relu", "LSTM", "GRU"]


# ---- the NumPy reference ----------------------------------------------------------------------
def sigmoid(value):
    return 1.0 / (1.0 + np.exp(-value))


def np_cell(mode, x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of PyTorch's documented equations: x (N, I), state (h,) or (h, c), each (N, H)."""
    hidden = state[0]
    from_input = x @ weight_ih.T + (0.0 if bias_ih is None else bias_ih)
    from_hidden = hidden @ weight_hh.T + (0.0 if bias_hh is None else bias_hh)
    if mode == "tanh":
        return (np.tanh(from_input + from_hidden),)
    if mode == "relu":
        return (np.maximum(from_input + from_hidden, 0.0),)
    if mode == "LSTM":
        i, f, g, o = np.split(from_input + from_hidden, 4, axis=-1)
        cell = sigmoid(f) * state[1] + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(cell), cell
    x_r, x_z, x_n = np.split(from_input, 3, axis=-1)
    h_r, h_z, h_n = np.split(from_hidden, 3, axis=-1)
    r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
    n = np.tanh(x_n + r * h_n)
    return ((1.0 - z) * n + z * hidden,)


def np_layers(mode, x, states, params, num_layers, directions, lengths, zero_between_layers=False):
    """x (T, N, I) time-major, states tuple of (layers * directions, N, H), params by PyTorch's
    names. Sequence b runs for lengths[b] steps; its outputs after that are zero."""
    steps, batch = x.shape[:2]
    active = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]
    layer_input, finals = x, [[] for _ in states]
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            weights = [params.get(name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            state = tuple(s[layer * directions + direction] for s in states)
            output = np.zeros((steps, batch, state[0].shape[-1]))
            for t in (reversed(range(steps)) if direction else range(steps)):
                new = np_cell(mode, layer_input[t], state, *weights)
                keep = active[t][:, None]
                state = tuple(np.where(keep, n, s) for n, s in zip(new, state))
                output[t] = np.where(keep, new[0], 0.0)
            outputs.append(output)
            for collected, s in zip(finals, state):
                collected.append(s)
        layer_input = np.concatenate(outputs, -1)
        if zero_between_layers and layer < num_layers - 1:
            layer_input = np.zeros_like(layer_input)
    return layer_input, tuple(np.stack(collected) for collected in finals)


def numeric_gradient(loss, arrays: dict, name: str, epsilon=1e-6) -> np.ndarray:
    """d loss(arrays) / d arrays[name], by central differences (arrays[name] is perturbed in place)."""
    target = arrays[name]
    flat = target.reshape(-1)
    gradient = np.zeros(flat.size)
    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + epsilon
        plus = loss(arrays)
        flat[k] = original - epsilon
        minus = loss(arrays)
        flat[k] = original
        gradient[k] = (plus - minus) / (2 * epsilon)
    return gradient.reshape(target.shape)


# ---- one runner for graphc and torch (the same program, with `lib` for the framework) -----------
# each is one graph structure per mode, compiled once (the torch comparison reuses it): together
# they cover 1 and 2 layers, both directions, batch_first, unbatched, h0 given and not, no bias,
# and packed batches sorted and unsorted (time-major padded input is the dropout test's)
CONFIGS = {
    "stacked_bidirectional_batch_first_h0": dict(num_layers=2, bidirectional=True, batch_first=True, h0=True),
    "unbatched_h0_no_bias": dict(num_layers=2, bidirectional=True, unbatched=True, h0=True, bias=False),
    "packed_unsorted_h0": dict(num_layers=2, bidirectional=True, packed=[2, 3, 1], h0=True),
    "packed_sorted_batch_first": dict(num_layers=1, bidirectional=False, batch_first=True, packed=[3, 3, 1]),
}


def make_layer(lib, mode, config, input_size=FEATURES, hidden=HIDDEN, dtype="float64"):
    arguments = dict(num_layers=config["num_layers"], bidirectional=config["bidirectional"],
                     batch_first=config.get("batch_first", False), bias=config.get("bias", True),
                     dtype=getattr(lib, dtype))
    if mode in ("tanh", "relu"):
        return lib.nn.RNN(input_size, hidden, nonlinearity=mode, **arguments)
    return getattr(lib.nn, mode)(input_size, hidden, **arguments)


def layer_case(rng, mode, config):
    """Fresh random weights (by PyTorch's names), input, initial states and loss weights."""
    directions = 2 if config["bidirectional"] else 1
    batch = 1 if config.get("unbatched") else BATCH
    params = {}
    for layer in range(config["num_layers"]):
        layer_input = FEATURES if layer == 0 else HIDDEN * directions
        gates = {"LSTM": 4, "GRU": 3}.get(mode, 1) * HIDDEN
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            params["weight_ih" + suffix] = rng.uniform(-0.9, 0.9, (gates, layer_input))
            params["weight_hh" + suffix] = rng.uniform(-0.9, 0.9, (gates, HIDDEN))
            if config.get("bias", True):
                params["bias_ih" + suffix] = rng.uniform(-0.9, 0.9, gates)
                params["bias_hh" + suffix] = rng.uniform(-0.9, 0.9, gates)
    state_shape = (config["num_layers"] * directions, batch, HIDDEN)
    count = 2 if mode == "LSTM" else 1
    states = [rng.standard_normal(state_shape) for _ in range(count)] if config.get("h0") else []
    return dict(params=params, x=rng.standard_normal((STEPS, batch, FEATURES)), states=states,
                output_weights=rng.standard_normal((STEPS, batch, HIDDEN * directions)),
                state_weights=[rng.standard_normal(state_shape) for _ in range(count)])


def run_layer(lib, mode, config, case):
    """Run the layer in `lib` as a user would (batch_first, unbatched or packed as configured),
    then backward() a weighted sum of the output and final states. Returns time-major
    (output, final states, gradients by name)."""
    layer = make_layer(lib, mode, config)
    layer.load_state_dict({name: lib.tensor(value) for name, value in case["params"].items()})
    batch_first, unbatched = config.get("batch_first", False), config.get("unbatched", False)

    def user_layout(array):       # from time-major (T, N, *) to the layout the layer takes
        return array[:, 0] if unbatched else array.transpose(1, 0, 2) if batch_first else array

    x = lib.tensor(np.ascontiguousarray(user_layout(case["x"])), requires_grad=True)
    states = [lib.tensor(s[:, 0] if unbatched else s, requires_grad=True) for s in case["states"]]
    hx = None if not states else tuple(states) if mode == "LSTM" else states[0]
    if config.get("packed"):
        lengths = config["packed"]
        in_order = lengths == sorted(lengths, reverse=True)   # else the packing sorts the batch
        packed = lib.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=in_order)
        output, final = layer(packed, hx)
        assert isinstance(output, lib.nn.utils.rnn.PackedSequence)
        output, unpacked_lengths = lib.nn.utils.rnn.pad_packed_sequence(output, batch_first=batch_first)
        assert unpacked_lengths.tolist() == lengths
    else:
        output, final = layer(x, hx)
    final = final if mode == "LSTM" else (final,)
    if unbatched:
        output, final = output.unsqueeze(1), tuple(f.unsqueeze(1) for f in final)
    elif batch_first:
        output = output.transpose(0, 1)
    loss = (output * lib.tensor(case["output_weights"])).sum()
    for f, weights in zip(final, case["state_weights"]):
        loss = loss + (f * lib.tensor(weights)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    grads["x"] = x.grad.numpy()[:, None] if unbatched else x.grad.numpy()
    if batch_first and not unbatched:
        grads["x"] = grads["x"].transpose(1, 0, 2)
    for k, s in enumerate(states):
        grads[f"state{k}"] = s.grad.numpy()[:, None] if unbatched else s.grad.numpy()
    return output.detach().numpy(), [f.detach().numpy() for f in final], grads


def reference_loss(mode, config, case):
    """The reference's loss as a function of arrays by name (x, state0/1, each parameter)."""
    directions = 2 if config["bidirectional"] else 1
    steps, batch = case["x"].shape[:2]
    lengths = config.get("packed") or [steps] * batch
    shape = (config["num_layers"] * directions, batch, HIDDEN)
    count = 2 if mode == "LSTM" else 1

    def forward(arrays):
        states = tuple(arrays.get(f"state{k}", np.zeros(shape)) for k in range(count))
        params = {name: value for name, value in arrays.items() if name.startswith(("weight", "bias"))}
        return np_layers(mode, arrays["x"], states, params, config["num_layers"], directions, lengths)

    def loss(arrays):
        output, final = forward(arrays)
        total = np.sum(output * case["output_weights"])
        return total + sum(np.sum(f * w) for f, w in zip(final, case["state_weights"]))

    arrays = dict(case["params"], x=case["x"].copy())
    arrays.update({f"state{k}": s.copy() for k, s in enumerate(case["states"])})
    return forward, loss, arrays


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_the_numpy_equations_and_their_finite_differences(rng, mode, config_name):
    config = CONFIGS[config_name]
    case = layer_case(rng, mode, config)
    output, final, grads = run_layer(graphc, mode, config, case)
    forward, loss, arrays = reference_loss(mode, config, case)
    expected_output, expected_final = forward(arrays)
    np.testing.assert_allclose(output, expected_output, rtol=1e-10, atol=1e-12)
    for got, expected in zip(final, expected_final):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert sorted(grads) == sorted(arrays)
    for name in arrays:
        np.testing.assert_allclose(grads[name], numeric_gradient(loss, arrays, name), rtol=1e-5, atol=1e-7,
                                   err_msg=name)


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_torch_with_the_same_weights(rng, mode, config_name):
    torch = pytest.importorskip("torch")
    config = CONFIGS[config_name]
    case = layer_case(rng, mode, config)
    output, final, grads = run_layer(graphc, mode, config, case)
    torch_output, torch_final, torch_grads = run_layer(torch, mode, config, case)
    np.testing.assert_allclose(output, torch_output, rtol=1e-10, atol=1e-12)
    for got, expected in zip(final, torch_final):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert sorted(grads) == sorted(torch_grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-9, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_layer_gradients_by_graphc_finite_differences(rng, mode):
    """graphc's own forward, perturbed element by element (float64), against its backward()."""
    config = dict(num_layers=1, bidirectional=True)
    layer = make_layer(graphc, mode, config, input_size=2, hidden=2)
    count = 2 if mode == "LSTM" else 1

    def function(x, *states):
        hx = None if not states else states if mode == "LSTM" else states[0]
        output, final = layer(x, hx)
        final = final if mode == "LSTM" else (final,)
        return graphc.cat([output.reshape(-1)] + [f.reshape(-1) for f in final])

    arrays = [rng.standard_normal((3, 2, 2))] + [rng.standard_normal((2, 2, 2)) for _ in range(count)]
    check_grads(function, arrays, rng, module=layer)


# ---- parameters, initialization, state dicts ----------------------------------------------------
def test_parameter_names_and_shapes_are_pytorchs():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    shapes = {name: tuple(p.shape) for name, p in lstm.named_parameters()}
    assert list(shapes) == [f"{kind}_l{layer}{suffix}" for layer in range(2) for suffix in ("", "_reverse")
                            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert shapes["weight_ih_l0"] == (16, 3) and shapes["weight_ih_l1_reverse"] == (16, 8)
    assert shapes["weight_hh_l1"] == (16, 4) and shapes["bias_hh_l0_reverse"] == (16,)
    assert lstm._flat_weights_names == list(shapes) and len(lstm.all_weights) == 4
    gru = nn.GRU(5, 2, bias=False)
    assert [(n, tuple(p.shape)) for n, p in gru.named_parameters()] == [("weight_ih_l0", (6, 5)),
                                                                        ("weight_hh_l0", (6, 2))]
    cell = nn.LSTMCell(3, 2)
    assert [(n, tuple(p.shape)) for n, p in cell.named_parameters()] == [
        ("weight_ih", (8, 3)), ("weight_hh", (8, 2)), ("bias_ih", (8,)), ("bias_hh", (8,))]
    assert nn.GRUCell(3, 2, bias=False).bias_ih is None


def test_default_init_is_uniform_within_one_over_sqrt_hidden():
    graphc.manual_seed(0)
    layer = nn.LSTM(8, 25, num_layers=2)
    bound = 1 / math.sqrt(25)
    values = np.concatenate([p.detach().numpy().ravel() for p in layer.parameters()])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.95 * bound
    assert abs(values.std() - bound / math.sqrt(3)) < 0.05 * bound   # U(-a, a) has std a / sqrt(3)
    cell = nn.GRUCell(4, 16)
    assert all(np.abs(p.detach().numpy()).max() <= 0.25 for p in cell.parameters())


def test_torch_state_dict_loads_by_name(rng):
    torch = pytest.importorskip("torch")
    for make in (lambda lib: lib.nn.LSTM(3, 4, 2, bidirectional=True, batch_first=True),
                 lambda lib: lib.nn.GRUCell(3, 4), lambda lib: lib.nn.RNN(3, 4, nonlinearity="relu")):
        reference, layer = make(torch), make(graphc)
        result = layer.load_state_dict({k: graphc.tensor(v.numpy()) for k, v in reference.state_dict().items()})
        assert not result.missing_keys and not result.unexpected_keys
        x = rng.standard_normal((2, 5, 3)).astype(np.float32)
        expected = reference(torch.tensor(x if not isinstance(reference, torch.nn.GRUCell) else x[0]))
        got = layer(graphc.tensor(x if not isinstance(layer, nn.GRUCell) else x[0]))
        expected = expected[0] if isinstance(expected, tuple) else expected
        got = got[0] if isinstance(got, tuple) else got
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_repr_is_pytorchs():
    assert repr(nn.RNN(4, 5, nonlinearity="relu")) == "RNN(4, 5)"
    assert repr(nn.RNN(4, 5, 2, "relu", False, True, 0.5, True)) == \
        "RNN(4, 5, num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)"
    assert repr(nn.LSTM(4, 5, bias=False)) == "LSTM(4, 5, bias=False)"
    assert repr(nn.GRU(3, 3, batch_first=True)) == "GRU(3, 3, batch_first=True)"
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity=relu)"
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"
    assert repr(nn.GRUCell(3, 4)) == "GRUCell(3, 4)"


# ---- cells --------------------------------------------------------------------------------------
def make_cell(lib, mode, input_size=3, hidden=4, dtype="float64"):
    if mode in ("tanh", "relu"):
        return lib.nn.RNNCell(input_size, hidden, nonlinearity=mode, dtype=getattr(lib, dtype))
    return getattr(lib.nn, mode + "Cell")(input_size, hidden, dtype=getattr(lib, dtype))


@pytest.mark.parametrize("mode", MODES)
def test_cells_match_the_equations_batched_unbatched_and_without_state(rng, mode):
    cell = make_cell(graphc, mode)
    params = {name: p.detach().numpy().copy() for name, p in cell.named_parameters()}
    weights = [params[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    count = 2 if mode == "LSTM" else 1
    x = rng.standard_normal((5, 3))
    states = [rng.standard_normal((5, 4)) for _ in range(count)]

    def call(x, states):
        hx = None if states is None else tuple(graphc.tensor(s) for s in states)
        result = cell(graphc.tensor(x), hx if mode == "LSTM" or hx is None else hx[0])
        return [r.detach().numpy() for r in (result if mode == "LSTM" else (result,))]

    for got, expected in zip(call(x, states), np_cell(mode, x, states, *weights)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for got, expected in zip(call(x[1], [s[1] for s in states]), np_cell(mode, x[1:2], [s[1:2] for s in states],
                                                                         *weights)):
        assert got.shape == (4,)
        np.testing.assert_allclose(got, expected[0], rtol=1e-12, atol=1e-12)
    zeros = [np.zeros((5, 4))] * count
    for got, expected in zip(call(x, None), np_cell(mode, x, zeros, *weights)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_cell_gradients_by_finite_differences(rng, mode):
    cell = make_cell(graphc, mode, input_size=3, hidden=2)
    count = 2 if mode == "LSTM" else 1

    def function(x, *states):
        result = cell(x, states if mode == "LSTM" else states[0])
        return graphc.cat(list(result), -1) if mode == "LSTM" else result

    check_grads(function, [rng.standard_normal((2, 3))] + [rng.standard_normal((2, 2)) for _ in range(count)],
                rng, module=cell)


@pytest.mark.parametrize("mode", MODES)
def test_cells_match_torch(rng, mode):
    torch = pytest.importorskip("torch")
    cell, reference = make_cell(graphc, mode), make_cell(torch, mode)
    cell.load_state_dict({k: graphc.tensor(v.numpy()) for k, v in reference.state_dict().items()})
    x = rng.standard_normal((5, 3))
    states = [rng.standard_normal((5, 4)) for _ in range(2 if mode == "LSTM" else 1)]
    results = []
    for lib, layer in ((graphc, cell), (torch, reference)):
        inputs = [lib.tensor(a, requires_grad=True) for a in [x] + states]
        out = layer(inputs[0], tuple(inputs[1:]) if mode == "LSTM" else inputs[1])
        out = out if mode == "LSTM" else (out,)
        sum((o * o.detach() * 0.5 + o).sum() for o in out).backward()
        results.append([o.detach().numpy() for o in out] + [i.grad.numpy() for i in inputs]
                       + [p.grad.numpy() for p in layer.parameters()])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ---- dropout between layers ---------------------------------------------------------------------
def test_dropout_only_between_layers_and_only_in_training(rng):
    graphc.manual_seed(3)
    layer = nn.GRU(3, 3, num_layers=2, dropout=1.0).double()   # p=1 zeroes the first layer's output
    x = rng.standard_normal((4, 2, 3))
    params = {name: p.detach().numpy() for name, p in layer.named_parameters()}
    zeros = (np.zeros((2, 2, 3)),)
    output, h_n = layer(graphc.tensor(x))
    expected_output, expected_final = np_layers("GRU", x, zeros, params, 2, 1, [4, 4], zero_between_layers=True)
    np.testing.assert_allclose(output.detach().numpy(), expected_output, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n.detach().numpy(), expected_final[0], rtol=1e-10, atol=1e-12)
    layer.eval()
    output, _ = layer(graphc.tensor(x))
    np.testing.assert_allclose(output.detach().numpy(), np_layers("GRU", x, zeros, params, 2, 1, [4, 4])[0],
                               rtol=1e-10, atol=1e-12)
    layer = nn.LSTM(3, 3, num_layers=2, dropout=0.5).double()
    layer.train()
    graphc.manual_seed(7)
    first = layer(graphc.tensor(x))[0].detach().numpy()
    graphc.manual_seed(7)
    again = layer(graphc.tensor(x))[0].detach().numpy()
    layer.eval()
    evaluated = layer(graphc.tensor(x))[0].detach().numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, evaluated)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(3, 3, dropout=0.2)


# ---- nn.utils.rnn -------------------------------------------------------------------------------
def sequences(rng, lengths, features=2):
    return [rng.standard_normal((length, features)) for length in lengths]


def test_pad_sequence_sides_values_and_layouts(rng):
    arrays = sequences(rng, [2, 4, 1])
    padded = rnn_utils.pad_sequence([graphc.tensor(a) for a in arrays], padding_value=-3.0).numpy()
    assert padded.shape == (4, 3, 2)
    for b, a in enumerate(arrays):
        np.testing.assert_array_equal(padded[:len(a), b], a)
        assert (padded[len(a):, b] == -3.0).all()
    left = rnn_utils.pad_sequence([graphc.tensor(a) for a in arrays], batch_first=True, padding_side="left").numpy()
    assert left.shape == (3, 4, 2)
    for b, a in enumerate(arrays):
        np.testing.assert_array_equal(left[b, 4 - len(a):], a)
        assert (left[b, :4 - len(a)] == 0).all()
    with pytest.raises(RuntimeError, match="Expected padding_side to be one of left or right, but got middle."):
        rnn_utils.pad_sequence([graphc.tensor(a) for a in arrays], padding_side="middle")
    with pytest.raises(ValueError, match="same size after its first dim"):
        rnn_utils.pad_sequence([graphc.zeros(2, 3), graphc.zeros(2, 4)])


def test_pack_padded_sequence_layout_and_round_trip(rng):
    lengths = [2, 5, 1, 3]
    arrays = sequences(rng, lengths)
    padded = rnn_utils.pad_sequence([graphc.tensor(a) for a in arrays])
    packed = rnn_utils.pack_padded_sequence(padded, lengths, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == [4, 3, 2, 1, 1] and packed.batch_sizes.dtype is graphc.int64
    assert packed.sorted_indices.tolist() == [1, 3, 0, 2] and packed.unsorted_indices.tolist() == [2, 0, 3, 1]
    order = [1, 3, 0, 2]
    expected = np.concatenate([np.stack([arrays[b][t] for b in order if lengths[b] > t]) for t in range(5)])
    np.testing.assert_array_equal(packed.data.numpy(), expected)
    unpacked, got_lengths = rnn_utils.pad_packed_sequence(packed, batch_first=True, padding_value=9.0,
                                                          total_length=6)
    assert got_lengths.tolist() == lengths and got_lengths.dtype is graphc.int64
    assert unpacked.shape == (4, 6, 2)
    for b, a in enumerate(arrays):
        np.testing.assert_array_equal(unpacked.numpy()[b, :len(a)], a)
        assert (unpacked.numpy()[b, len(a):] == 9.0).all()
    sorted_lengths = sorted(lengths, reverse=True)
    batch_first = graphc.tensor(np.stack([np.pad(a, ((0, 5 - len(a)), (0, 0))) for a in
                                          sorted((a for a in arrays), key=len, reverse=True)]))
    packed_sorted = rnn_utils.pack_padded_sequence(batch_first, graphc.tensor(sorted_lengths), batch_first=True)
    assert packed_sorted.sorted_indices is None and packed_sorted.unsorted_indices is None
    np.testing.assert_array_equal(packed_sorted.data.numpy(), expected)
    for got, a in zip(rnn_utils.unpack_sequence(rnn_utils.pack_sequence([graphc.tensor(a) for a in arrays],
                                                                         enforce_sorted=False)), arrays):
        np.testing.assert_array_equal(got.numpy(), a)
    for got, a in zip(rnn_utils.unpad_sequence(padded, graphc.tensor(lengths)), arrays):
        np.testing.assert_array_equal(got.numpy(), a)


def test_packed_sequence_is_pytorchs_named_tuple(rng):
    packed = rnn_utils.pack_sequence([graphc.tensor(a.astype(np.float32)) for a in sequences(rng, [3, 1])])
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    assert packed._fields == ("data", "batch_sizes", "sorted_indices", "unsorted_indices")
    assert sorted_indices is None and unsorted_indices is None and batch_sizes.tolist() == [2, 1, 1]
    assert packed.double().data.dtype is graphc.float64 and packed.to(graphc.float64).batch_sizes is batch_sizes
    assert not packed.is_cuda
    rebuilt = rnn_utils.PackedSequence(data, batch_sizes, graphc.tensor([1, 0]))
    assert rebuilt.unsorted_indices.tolist() == [1, 0]
    assert rnn_utils.invert_permutation(graphc.tensor([2, 0, 1])).tolist() == [1, 2, 0]


def test_gradient_flows_through_pack_and_pad(rng):
    lengths = [3, 1, 2]
    x = rng.standard_normal((3, 3, 2))
    weights = rng.standard_normal((3, 3, 2))
    tensor = graphc.tensor(x, requires_grad=True)
    packed = rnn_utils.pack_padded_sequence(tensor * 2.0, lengths, enforce_sorted=False)
    padded, _ = rnn_utils.pad_packed_sequence(packed)
    (padded * graphc.tensor(weights)).sum().backward()
    mask = np.arange(3)[:, None, None] < np.asarray(lengths)[None, :, None]
    np.testing.assert_allclose(tensor.grad.numpy(), np.where(mask, 2.0 * weights, 0.0), rtol=1e-12)


def test_utils_match_torch(rng):
    torch = pytest.importorskip("torch")
    arrays = sequences(rng, [3, 5, 2, 4])
    results = []
    for lib in (graphc, torch):
        utils = lib.nn.utils.rnn
        padded = utils.pad_sequence([lib.tensor(a) for a in arrays], batch_first=True, padding_value=0.5)
        packed = utils.pack_padded_sequence(padded, [3, 5, 2, 4], batch_first=True, enforce_sorted=False)
        back, lengths = utils.pad_packed_sequence(packed, padding_value=-1.0, total_length=6)
        left = utils.pad_sequence([lib.tensor(a) for a in arrays], padding_side="left")
        results.append([padded.numpy(), packed.data.numpy(), packed.batch_sizes.numpy(),
                        packed.sorted_indices.numpy(), packed.unsorted_indices.numpy(), back.numpy(),
                        lengths.numpy(), left.numpy()])
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)


def test_packing_errors_say_what_pytorch_says():
    padded = graphc.zeros(3, 3, 2)
    with pytest.raises(RuntimeError, match="`lengths` array must be sorted in decreasing order when "
                                           "`enforce_sorted` is True"):
        rnn_utils.pack_padded_sequence(padded, [2, 3, 1])
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        rnn_utils.pack_padded_sequence(padded, [2, 0, 1], enforce_sorted=False)
    with pytest.raises(RuntimeError, match=r"Expected `len\(lengths\)` to be equal to batch_size, but got 2 "
                                           r"\(batch_size=3\)"):
        rnn_utils.pack_padded_sequence(padded, [2, 1])
    with pytest.raises(ValueError, match="longer than the padded input's 3 time steps"):
        rnn_utils.pack_padded_sequence(padded, [4, 1, 1])
    packed = rnn_utils.pack_padded_sequence(padded, [3, 2, 1])
    with pytest.raises(ValueError, match="Expected total_length to be at least the length of the longest "
                                         "sequence in input, but got total_length=2 and max sequence length "
                                         "being 3"):
        rnn_utils.pad_packed_sequence(packed, total_length=2)


# ---- bad input, with PyTorch's messages -----------------------------------------------------------
def test_layer_input_errors_say_what_pytorch_says():
    lstm, gru = nn.LSTM(4, 5, 2), nn.GRU(4, 5, 2)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. Expected 4, got 3"):
        lstm(graphc.randn(3, 2, 3))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 2, 5\), got \[2, 2, 4\]"):
        lstm(graphc.randn(3, 2, 4), (graphc.randn(2, 2, 4), graphc.randn(2, 2, 5)))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(2, 2, 5\), got \[2, 3, 5\]"):
        lstm(graphc.randn(3, 2, 4), (graphc.randn(2, 2, 5), graphc.randn(2, 3, 5)))
    with pytest.raises(RuntimeError, match=r"For batched 3-D input, hx and cx should also be 3-D but got "
                                           r"\(2-D, 2-D\) tensors"):
        lstm(graphc.randn(3, 2, 4), (graphc.randn(2, 5), graphc.randn(2, 5)))
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D instead"):
        lstm(graphc.randn(3, 2, 4, 1))
    with pytest.raises(ValueError, match=r"RNN input dtype \(graphc.float64\) does not match weight dtype "
                                         r"\(graphc.float32\)"):
        lstm(graphc.randn(3, 2, 4, dtype=graphc.float64))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 2, 5\), got \[2, 3, 5\]"):
        gru(graphc.randn(3, 2, 4), graphc.randn(2, 3, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 1, 5\), got \[2, 1, 4\]"):
        gru(graphc.randn(3, 4), graphc.randn(2, 4))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"):
        gru(graphc.randn(3, 4), graphc.randn(2, 1, 5))
    packed = rnn_utils.pack_padded_sequence(graphc.randn(3, 2, 4), [3, 2])
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 2, 5\), got \[2, 3, 5\]"):
        gru(packed, graphc.randn(2, 3, 5))


def test_constructor_errors_say_what_pytorch_says():
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sig'. Select from 'tanh' or 'relu'."):
        nn.RNN(4, 5, nonlinearity="sig")
    with pytest.raises(TypeError, match="hidden_size should be of type int, got: float"):
        nn.RNN(4, 5.0)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.GRU(4, 0)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        nn.LSTM(4, 5, 0)
    with pytest.raises(ValueError, match=r"dropout should be a number in range \[0, 1\]"):
        nn.LSTM(4, 5, dropout=1.5)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        nn.GRU(4, 5, proj_size=2)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(4, 5, proj_size=2)


def test_cell_errors_say_what_pytorch_says():
    lstm_cell, gru_cell = nn.LSTMCell(4, 5), nn.GRUCell(4, 5)
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 3 expected 4"):
        lstm_cell(graphc.randn(2, 3))
    with pytest.raises(RuntimeError, match="Input batch size 2 doesn't match hidden0 batch size 3"):
        lstm_cell(graphc.randn(2, 4), (graphc.randn(3, 5), graphc.randn(3, 5)))
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size: got 4, expected 5"):
        lstm_cell(graphc.randn(2, 4), (graphc.randn(2, 4), graphc.randn(2, 5)))
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D, got 3D instead"):
        lstm_cell(graphc.randn(2, 4, 1))
    with pytest.raises(ValueError, match="GRUCell: Expected hidden to be 1D or 2D, got 3D instead"):
        gru_cell(graphc.randn(2, 4), graphc.randn(2, 5, 1))
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: x"):
        nn.RNNCell(3, 4, nonlinearity="x")(graphc.randn(3))


# ---- training, eager and compiled -----------------------------------------------------------------
class SequenceRegressor(nn.Module):
    """An LSTM reading a sequence, a Linear head on its last output."""

    def __init__(self, features=2, hidden=8):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        output, (h_n, c_n) = self.lstm(x)
        return self.head(output[:, -1])


def sum_task(rng, batch=16, steps=5):
    """Predict the sum of the first feature over the sequence (a task that needs memory)."""
    x = rng.uniform(-1, 1, (batch, steps, 2)).astype(np.float32)
    return x, x[:, :, :1].sum(1) * 0.5


def test_a_few_sgd_steps_on_a_sequence_task_lower_the_loss(rng):
    graphc.manual_seed(5)
    model = SequenceRegressor()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    criterion = nn.MSELoss()
    x, y = sum_task(rng)
    losses = []
    for _ in range(30):   # over 100 seeds the last loss was at most 0.39 of the first
        optimizer.zero_grad()
        loss = criterion(model(graphc.tensor(x)), graphc.tensor(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_compiled_lstm_train_step_replays_with_the_uncompiled_gradients(rng):
    graphc.manual_seed(11)
    compiled_model, eager_model = SequenceRegressor(), SequenceRegressor()
    eager_model.load_state_dict(compiled_model.state_dict())

    def train_step(model, optimizer):
        def step(x, y):
            optimizer.zero_grad()
            loss = nn.MSELoss()(model(x), y)
            loss.backward()
            optimizer.step()
            return loss.detach()
        return step

    # the training test's optimizer and batch: the uncompiled twin reuses that test's programs
    compiled_optimizer = graphc.optim.SGD(compiled_model.parameters(), lr=0.2, momentum=0.9)
    eager_optimizer = graphc.optim.SGD(eager_model.parameters(), lr=0.2, momentum=0.9)
    compiled = graphc.compile(train_step(compiled_model, compiled_optimizer))
    eager = train_step(eager_model, eager_optimizer)
    calls = 5
    for call in range(calls):
        x, y = sum_task(rng)
        inputs = graphc.tensor(x), graphc.tensor(y)
        realized_before = dict(backend.stats)
        loss = compiled(*inputs).item()
        if call >= 2:   # a replay runs its program and nothing else (no graph realized beside it)
            assert dict(backend.stats) == realized_before, f"call {call} realized graphs outside the program"
        expected = eager(graphc.tensor(x), graphc.tensor(y)).item()
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-7)
        for (name, p), q in zip(compiled_model.named_parameters(), eager_model.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7,
                                       err_msg=f"call {call}: {name}.grad")
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-7,
                                       err_msg=f"call {call}: {name}")
    stats = compiled.stats()
    # the first call traces with every .grad None and is traced again once they exist (a guard on
    # the state layout); every later call replays that one variant
    reasons = [entry["reason"] for entry in stats["history"]]
    assert len(reasons) == 2 and reasons[0] == "first call" and ".grad" in reasons[1], reasons
    assert stats["variants"] == 1 and stats["calls"] == [calls - 1], stats
    assert not any(entry.get("uncompiled") for entry in stats["history"]), stats
