"""Recurrent layers: `RNN`, `LSTM`, `GRU` and their one-step cells, with PyTorch's arguments,
parameter names, initialization and shapes.

The loop over time is Python: each step adds its ops to the lazy graph, so a fixed-length
sequence becomes one unrolled graph (and, under `graphc.compile`, one native call per train
step). The input projection of every time step is one matmul before the loop; a step is the
hidden projection and the gate arithmetic.

A layer's input is handled as rows: (total steps, features) with `batch_sizes`, the number of
sequences that have each step (sorted by decreasing length, as a PackedSequence holds them). A
padded batch (T, N, *) is the case where every batch size is N. At a step where fewer sequences
continue, the finished ones leave the running state (their hidden state is final); running
backwards, sequences join the state at their last step with their initial state.
"""
from __future__ import annotations

import math
import numbers
import warnings

from graphc import dtypes
from graphc.errors import ShapeError, op_error
from graphc.nn import functional as F, init
from graphc.nn.module import Module, _check_device
from graphc.nn.parameter import Parameter
from graphc.nn.utils.rnn import PackedSequence
from graphc.source_location import user_location
from graphc.tensor import Tensor

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _empty(*shape, dtype=None):
    from graphc.creation import empty
    return empty(*shape, dtype=dtype or dtypes.get_default_dtype())


def _cat(pieces: list, dim: int = 0) -> Tensor:
    from graphc.tensor_ops import cat
    return pieces[0] if len(pieces) == 1 else cat(pieces, dim)


def _rows(value: Tensor, start: int, stop: int) -> Tensor:
    return value if start == 0 and stop == value.shape[0] else value[start:stop]


# ---- one time step: `projected` is x W_ih^T + b_ih, `state` the tuple (h,) or (h, c) -----------
def _tanh_step(projected, state, weight_hh, bias_hh):
    return (F.linear(state[0], weight_hh, bias_hh).add(projected).tanh(),)


def _relu_step(projected, state, weight_hh, bias_hh):
    return (F.relu(F.linear(state[0], weight_hh, bias_hh).add(projected)),)


def _lstm_step(projected, state, weight_hh, bias_hh):
    """Gates in PyTorch's order i, f, g, o: c' = f c + i g, h' = o tanh(c')."""
    hidden, cell = state
    gates = projected + F.linear(hidden, weight_hh, bias_hh)
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, -1)
    cell = forget_gate.sigmoid() * cell + input_gate.sigmoid() * candidate.tanh()
    return output_gate.sigmoid() * cell.tanh(), cell


def _gru_step(projected, state, weight_hh, bias_hh):
    """Gates in PyTorch's order r, z, n: n = tanh(x_n + r (W_hn h + b_hn)), h' = (1 - z) n + z h."""
    hidden = state[0]
    from_input = projected.chunk(3, -1)
    from_hidden = F.linear(hidden, weight_hh, bias_hh).chunk(3, -1)
    reset = (from_input[0] + from_hidden[0]).sigmoid()
    update = (from_input[1] + from_hidden[1]).sigmoid()
    new = (from_input[2] + reset * from_hidden[2]).tanh()
    return (new + update * (hidden - new),)


_STEPS = {"RNN_TANH": _tanh_step, "RNN_RELU": _relu_step, "LSTM": _lstm_step, "GRU": _gru_step}


def _run_forward(projected, batch_sizes, start, step, weight_hh, bias_hh):
    """One direction over the rows, first step to last: (outputs per step, final state)."""
    state, finished, outputs, offset = start, [], [], 0
    for size in batch_sizes:
        if state[0].shape[0] > size:   # the sequences after the first `size` ended last step
            finished.append(tuple(s[size:] for s in state))
            state = tuple(s[:size] for s in state)
        state = step(_rows(projected, offset, offset + size), state, weight_hh, bias_hh)
        outputs.append(state[0])
        offset += size
    finished.append(state)
    # pieces that finished later hold lower rows (the sequences are sorted by decreasing length)
    final = tuple(_cat([piece[k] for piece in reversed(finished)]) for k in range(len(state)))
    return outputs, final


def _run_backward(projected, batch_sizes, start, step, weight_hh, bias_hh):
    """One direction over the rows, last step to first: each sequence starts at its own last
    step from its initial state."""
    offsets = [0]
    for size in batch_sizes:
        offsets.append(offsets[-1] + size)
    state, outputs, running = None, [None] * len(batch_sizes), 0
    for t in reversed(range(len(batch_sizes))):
        size = batch_sizes[t]
        if size > running:             # sequences whose last step is t join here
            joining = tuple(_rows(s, running, size) for s in start)
            state = joining if state is None else tuple(_cat([s, j]) for s, j in zip(state, joining))
            running = size
        state = step(_rows(projected, offsets[t], offsets[t + 1]), state, weight_hh, bias_hh)
        outputs[t] = state[0]
    return outputs, state


def _reset_uniform(module: Module) -> None:
    """PyTorch's recurrent init: every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -bound, bound)


def _initialize(module: Module, device) -> None:
    module.reset_parameters()
    if device is not None:
        module.to(device)  # made on the CPU, then moved where device= asks


def _options_repr(module: Module, defaults: dict) -> str:
    """"input_size, hidden_size" and each option that differs from its default, as PyTorch prints."""
    changed = "".join(f", {name}={getattr(module, name)}" for name, default in defaults.items()
                      if getattr(module, name) != default)
    return f"{module.input_size}, {module.hidden_size}{changed}"


def _number_check(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters of every layer and direction, and the loop.

    Parameters are named as PyTorch names them (`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`,
    `bias_hh_l{k}`, with `_reverse` for the backward direction), so a PyTorch state dict loads.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        _check_device(device)
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of "
                             "an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=3)
        _number_check(hidden_size, "hidden_size")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size:
            raise NotImplementedError("graphc's LSTM does not support proj_size (projected hidden states) yet")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {f"weight_ih{suffix}": (gate_size, layer_input),
                          f"weight_hh{suffix}": (gate_size, hidden_size)}
                if bias:
                    shapes.update({f"bias_ih{suffix}": (gate_size,), f"bias_hh{suffix}": (gate_size,)})
                for name, shape in shapes.items():
                    setattr(self, name, Parameter(_empty(*shape, dtype=dtype)))
                self._flat_weights_names.extend(shapes)
                self._all_weights.append(list(shapes))
        _initialize(self, device)

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        _reset_uniform(self)

    def flatten_parameters(self) -> None:
        """cuDNN's contiguous weight buffer; graphc keeps no such buffer, so this does nothing."""

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _layer_weights(self, index: int):
        names = self._all_weights[index]
        weights = [getattr(self, name) for name in names]
        return tuple(weights) if self.bias else (weights[0], weights[1], None, None)

    # ---- checks, with PyTorch's messages ---------------------------------------------------------
    def _state_count(self) -> int:
        return 2 if self.mode == "LSTM" else 1

    def _check_input(self, input: Tensor, where: str) -> None:
        if input.shape[-1] != self.input_size:
            raise op_error(self._get_name(), f"input.size(-1) must be equal to input_size. Expected "
                                             f"{self.input_size}, got {input.shape[-1]}", where, kind=ShapeError)
        weight = self.weight_ih_l0
        if input.dtype is not weight.dtype:
            raise op_error(self._get_name(), f"RNN input dtype ({input.dtype}) does not match weight dtype "
                                             f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                                             f"convert model: model.to({input.dtype})", where, kind=ValueError)

    def _check_state_dims(self, hx, batched: bool, where: str) -> None:
        wanted = 3 if batched else 2
        kind = "batched 3-D" if batched else "unbatched 2-D"
        if self.mode == "LSTM":
            if any(h.ndim != wanted for h in hx):
                raise op_error(self._get_name(), f"For {kind} input, hx and cx should also be {wanted}-D but "
                                                 f"got ({hx[0].ndim}-D, {hx[1].ndim}-D) tensors", where,
                               kind=ShapeError)
        elif hx[0].ndim != wanted:
            raise op_error(self._get_name(), f"For {kind} input, hx should also be {wanted}-D but got "
                                             f"{hx[0].ndim}-D tensor", where, kind=ShapeError)

    def _check_state_sizes(self, hx, batch: int, dtype, where: str) -> None:
        expected = (self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size)
        for k, h in enumerate(hx):
            label = f"hidden[{k}]" if self.mode == "LSTM" else "hidden"
            if tuple(h.shape) != expected:
                raise op_error(self._get_name(), f"Expected {label} size {expected}, got {list(h.shape)}", where,
                               kind=ShapeError)
            if h.dtype is not dtype:
                raise op_error(self._get_name(), f"{label} dtype ({h.dtype}) does not match input dtype "
                                                 f"({dtype})", where, kind=ValueError)

    def _states(self, hx) -> tuple:
        if hx is None:
            return None
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM expects hx as a tuple (h_0, c_0) of tensors")
            return tuple(hx)
        if not isinstance(hx, Tensor):
            raise TypeError(f"{self._get_name()} expects hx as a tensor, got {type(hx).__name__}")
        return (hx,)

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, input, hx=None):
        """input (L, N, H_in), (N, L, H_in) with batch_first, (L, H_in) unbatched, or a
        PackedSequence; hx (h_0, or (h_0, c_0) for LSTM) of shape (D * num_layers, N, H) or
        (D * num_layers, H) unbatched, zeros when not given. Returns (output, h_n) or
        (output, (h_n, c_n)); output is (L, N, D * H) (batch_first: (N, L, D * H)) or a
        PackedSequence when the input is one."""
        where = user_location()
        hx = self._states(hx)
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx, where)
        if not isinstance(input, Tensor):
            raise TypeError(f"{self._get_name()}: expected a graphc.Tensor or a PackedSequence as input, got "
                            f"{type(input).__name__}")
        if input.ndim not in (2, 3):
            raise op_error(self._get_name(), f"{self._get_name()}: Expected input to be 2D or 3D, got "
                                             f"{input.ndim}D instead", where, kind=ShapeError)
        batched = input.ndim == 3
        if hx is not None:
            self._check_state_dims(hx, batched, where)
        if not batched:
            input = input.unsqueeze(1)
            hx = None if hx is None else tuple(h.unsqueeze(1) for h in hx)
        elif self.batch_first:
            input = input.transpose(0, 1)
        self._check_input(input, where)
        steps, batch = input.shape[0], input.shape[1]
        hx = self._initial_states(hx, batch, input, where)
        rows = input.reshape(steps * batch, self.input_size)
        output, final = self._run(rows, [batch] * steps, hx)
        output = output.reshape(steps, batch, output.shape[-1])
        if not batched:
            output, final = output.squeeze(1), tuple(h.squeeze(1) for h in final)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (final if self.mode == "LSTM" else final[0])

    def _forward_packed(self, packed: PackedSequence, hx, where: str):
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        sizes = [int(size) for size in batch_sizes.tolist()]
        if data.ndim != 2:
            raise op_error(self._get_name(), f"input must have 2 dimensions, got {data.ndim}", where,
                           kind=ShapeError)
        if hx is not None:
            self._check_state_dims(hx, True, where)
        self._check_input(data, where)
        if hx is not None and sorted_indices is not None:
            hx = tuple(h[:, sorted_indices] for h in hx)   # the initial states in packed order
        hx = self._initial_states(hx, sizes[0], data, where)
        output, final = self._run(data, sizes, hx)
        if unsorted_indices is not None:
            final = tuple(h[:, unsorted_indices] for h in final)   # back in the caller's order
        output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
        return output, (final if self.mode == "LSTM" else final[0])

    def _initial_states(self, hx, batch: int, input: Tensor, where: str) -> tuple:
        if hx is None:
            from graphc.creation import zeros
            shape = (self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size)
            return tuple(zeros(*shape, dtype=input.dtype, device=input.device) for _ in range(self._state_count()))
        self._check_state_sizes(hx, batch, input.dtype, where)
        return hx

    def _run(self, rows: Tensor, batch_sizes: list, hx: tuple):
        """Every layer and direction over `rows`: (the last layer's output rows, final states
        stacked (D * num_layers, N, H))."""
        step = _STEPS[self.mode]
        directions = 2 if self.bidirectional else 1
        finals = [[] for _ in hx]
        layer_input = rows
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                weight_ih, weight_hh, bias_ih, bias_hh = self._layer_weights(index)
                projected = F.linear(layer_input, weight_ih, bias_ih)   # every time step in one matmul
                run = _run_backward if direction else _run_forward
                steps, final = run(projected, batch_sizes, tuple(h[index] for h in hx), step, weight_hh, bias_hh)
                outputs.append(_cat(steps, 0))
                for collected, state in zip(finals, final):
                    collected.append(state)
            layer_input = _cat(outputs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        from graphc.tensor_ops import stack
        return layer_input, tuple(stack(collected, 0) for collected in finals)

    def extra_repr(self) -> str:
        return _options_repr(self, {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False,
                                    "dropout": 0, "bidirectional": False})


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).

    >>> rnn = graphc.nn.RNN(10, 20, 2)
    >>> output, h_n = rnn(graphc.randn(5, 3, 10))      # (5, 3, 20), (2, 3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(modes[nonlinearity], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory, PyTorch's equations (gates i, f, g, o):
    c_t = f c_{t-1} + i g, h_t = o tanh(c_t). Returns (output, (h_n, c_n)). proj_size is refused.

    >>> lstm = graphc.nn.LSTM(10, 20, batch_first=True)
    >>> output, (h_n, c_n) = lstm(graphc.randn(3, 5, 10))
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit, PyTorch's equations (gates r, z, n):
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1}.

    >>> gru = graphc.nn.GRU(10, 20, bidirectional=True)
    >>> output, h_n = gru(graphc.randn(5, 3, 10))      # (5, 3, 40), (2, 3, 20)
    """

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)


# ---- cells ------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """One time step of a recurrent layer: weight_ih (chunks * H, H_in), weight_hh (chunks * H, H),
    bias_ih and bias_hh (chunks * H), all ~ U(-1/sqrt(H), 1/sqrt(H))."""

    _mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None, dtype=None):
        super().__init__()
        _check_device(device)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(_empty(num_chunks * hidden_size, input_size, dtype=dtype))
        self.weight_hh = Parameter(_empty(num_chunks * hidden_size, hidden_size, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(_empty(num_chunks * hidden_size, dtype=dtype))
            self.bias_hh = Parameter(_empty(num_chunks * hidden_size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        _initialize(self, device)

    def reset_parameters(self) -> None:
        _reset_uniform(self)

    def extra_repr(self) -> str:
        return _options_repr(self, {"bias": True, "nonlinearity": "tanh"} if hasattr(self, "nonlinearity")
                             else {"bias": True})

    def _step(self, input, hx, count: int):
        """Check input and the states in hx (a tuple, or None for zeros), run one step; unbatched
        (1-D) input gives 1-D states back."""
        where = user_location()
        name = self._get_name()
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a graphc.Tensor as input, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise op_error(name, f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead", where,
                           kind=ShapeError)
        batched = input.ndim == 2
        if hx is not None:
            for h in hx:
                if h.ndim not in (1, 2):
                    raise op_error(name, f"{name}: Expected hidden to be 1D or 2D, got {h.ndim}D instead", where,
                                   kind=ShapeError)
                if h.ndim != input.ndim:
                    raise op_error(name, f"{'batched 2-D' if batched else 'unbatched 1-D'} input needs "
                                         f"{input.ndim}-D hidden states, got a {h.ndim}-D one", where,
                                   kind=ShapeError)
        if not batched:
            input = input.unsqueeze(0)
            hx = None if hx is None else tuple(h.unsqueeze(0) for h in hx)
        if input.shape[1] != self.input_size:
            raise op_error(name, f"input has inconsistent input_size: got {input.shape[1]} expected "
                                 f"{self.input_size}", where, kind=ShapeError)
        if input.dtype is not self.weight_ih.dtype:
            raise op_error(name, f"input dtype ({input.dtype}) does not match weight dtype "
                                 f"({self.weight_ih.dtype})", where, kind=ValueError)
        if hx is None:
            from graphc.creation import zeros
            hx = tuple(zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
                       for _ in range(count))
        for k, h in enumerate(hx):
            if h.shape[0] != input.shape[0]:
                raise op_error(name, f"Input batch size {input.shape[0]} doesn't match hidden{k} batch size "
                                     f"{h.shape[0]}", where, kind=ShapeError)
            if h.shape[1] != self.hidden_size:
                raise op_error(name, f"hidden{k} has inconsistent hidden_size: got {h.shape[1]}, expected "
                                     f"{self.hidden_size}", where, kind=ShapeError)
        projected = F.linear(input, self.weight_ih, self.bias_ih)
        state = _STEPS[self._mode_now()](projected, hx, self.weight_hh, self.bias_hh)
        return state if batched else tuple(h.squeeze(0) for h in state)

    def _mode_now(self) -> str:
        return self._mode


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def _mode_now(self) -> str:
        if self.nonlinearity not in ("tanh", "relu"):
            raise op_error("RNNCell", f"Unknown nonlinearity: {self.nonlinearity}", user_location())
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def forward(self, input, hx=None):
        return self._step(input, None if hx is None else (hx,), 1)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c'); hx is (h, c) or None for zeros."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("LSTMCell expects hx as a tuple (h_0, c_0) of tensors")
        return self._step(input, None if hx is None else tuple(hx), 2)


class GRUCell(RNNCellBase):
    """One GRU step: returns h'."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, None if hx is None else (hx,), 1)[0]
