"""`CompiledFunction`: trace a function per input signature, compile the graph, replay it.

A replay binds the graph's inputs (the call's tensors, and the parameters, gradients, buffers and
optimizer state the trace read, found again through their owners), runs the compiled program
once, and writes the new values of everything the function updated back into those tensors'
memory, so `model.state_dict()`, `p.grad` and `optimizer.state` stay true after every step.
"""
from __future__ import annotations

import inspect
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from graphc import backend as backend_module
from graphc import lazy, realize
from graphc.compile import guards as guard_module
from graphc.compile.tracer import TraceContext, TraceError
from graphc.errors import RetraceError, op_error
from graphc.lazy import Storage, strided_view
from graphc.schedule import build_graph
from graphc.size import CPU
from graphc.tensor import Tensor

MAX_VARIANTS = 8


# ---- where a storage is found again at replay ------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Locator:
    """How to find a tensor's storage at replay: through the object that owns the tensor."""
    kind: str          # 'tensor' | 'grad' | 'state' | 'buffer' | 'storage'
    owner: object      # a Parameter, a captured Tensor, an ArgumentSlot, (optimizer, p), a Module, a Storage
    key: object = None

    def _identity(self) -> tuple:
        owners = self.owner if isinstance(self.owner, tuple) else (self.owner,)
        return (self.kind, tuple(id(o) for o in owners), self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Locator) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def storage(self) -> Storage:
        """The storage now, with a value (`p.data = lazy_value` between calls leaves it pending)."""
        kind = self.kind
        if kind == "tensor":
            storage = self.owner._storage
        elif kind == "grad":
            storage = self.owner.grad._storage
        elif kind == "state":
            optimizer, parameter = self.owner
            storage = optimizer.state[parameter][self.key]._storage
        elif kind == "buffer":
            storage = self.owner._buffers[self.key]._storage
        else:
            storage = self.owner
        if storage.array is None:
            realize.realize_storages([storage])
        return storage

    def current_tensor(self):
        """The tensor object a 'tensor' or 'grad' locator stands for now."""
        if self.kind == "grad":
            return self.owner.grad
        return self.owner.tensor if isinstance(self.owner, ArgumentSlot) else self.owner

    def output_storage(self, shape, dtype) -> Storage:
        """Where a state made afresh by the step goes: for a gradient, the owner's current `.grad`
        when it has the layout the step writes, else a new tensor that becomes the owner's `.grad`
        (as `backward()` creates one when `.grad` is None)."""
        if self.kind == "grad":
            grad = self.owner.grad
            # a `.grad` someone else holds (`previous = p.grad`) keeps its value, as in PyTorch: the
            # references are the owner's, this function's and getrefcount's
            if (grad is None or sys.getrefcount(grad) > 3 or grad._shape != tuple(shape)
                    or grad._storage.dtype.numpy != np.dtype(dtype)
                    or grad._offset != 0 or grad._storage.size != math.prod(shape)
                    or grad._strides != lazy.contiguous_strides(grad._shape)):
                device = self.owner._storage.device
                if device.type == "cpu":
                    grad = Tensor._adopt(np.empty(shape, dtype))
                else:
                    from graphc import devices
                    grad = Tensor._on_device(devices.arrays_for(device).xp.empty(shape, dtype), device)
                self.owner.grad = grad
                return grad._storage
        return self.storage()

    def describe(self) -> str:
        from graphc.nn.parameter import Parameter
        if isinstance(self.owner, ArgumentSlot):
            return (f"tensor argument {self.owner.position}" if self.kind == "tensor"
                    else f"the gradient of tensor argument {self.owner.position}")
        if self.kind in ("tensor", "grad") and not isinstance(self.owner, Parameter):
            return "a captured tensor" if self.kind == "tensor" else "the gradient of a captured tensor"
        return {"tensor": "a parameter", "grad": "a gradient", "state": f"optimizer state {self.key!r}",
                "buffer": f"buffer {self.key!r}", "storage": "captured memory"}[self.kind]


class ArgumentSlot:
    """Tensor argument `position` of the call being run. An argument's gradient is found through
    it (`Locator('grad', slot)`): a call with fresh tensors gets their `.grad` set."""

    __slots__ = ("calls", "position")

    def __init__(self, calls: "CompiledFunction", position: int):
        self.calls, self.position = calls, position

    @property
    def tensor(self) -> Tensor:
        return self.calls._call_arguments[self.position]

    @property
    def _storage(self) -> Storage:
        return self.tensor._storage

    @property
    def grad(self):
        return self.tensor.grad

    @grad.setter
    def grad(self, value) -> None:
        self.tensor.grad = value


def tensor_arguments(args, kwargs) -> list:
    """The call's tensor arguments in guard order: positional, then keywords sorted by name."""
    values = list(args) + [kwargs[k] for k in sorted(kwargs)] if kwargs else args
    return [a for a in values if isinstance(a, Tensor)]


def _owners(captured, slots) -> dict:
    """storage -> Locator for every persistent tensor the function can reach: optimizer state,
    module buffers and parameters, captured tensors, and the gradients of all of these and of the
    tensor arguments (`slots`: (ArgumentSlot, tensor) pairs)."""
    found = {}
    for slot, tensor in slots:   # first: a write into an argument goes to this call's argument
        found.setdefault(tensor._storage, Locator("tensor", slot))
    for optimizer in captured.optimizers:
        for parameter, entry in optimizer.state.items():
            for key, value in entry.items():
                if isinstance(value, Tensor):
                    found.setdefault(value._storage, Locator("state", (optimizer, parameter), key))
    holders = []
    for module in captured.modules:
        for sub in module.modules():
            for name, buffer in sub._buffers.items():
                if buffer is not None:
                    found.setdefault(buffer._storage, Locator("buffer", sub, name))
        holders.extend(module.parameters())
    for optimizer in captured.optimizers:
        for group in optimizer.param_groups:
            holders.extend(group["params"])
    holders.extend(captured.tensors)
    for holder in holders:
        found.setdefault(holder._storage, Locator("tensor", holder))
        if holder.grad is not None:
            found.setdefault(holder.grad._storage, Locator("grad", holder))
    for slot, tensor in slots:
        if tensor.grad is not None:
            found.setdefault(tensor.grad._storage, Locator("grad", slot))
    return found


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- pytrees of results -------------------------------------------------------------------------------
def _flatten(value, leaves):
    if isinstance(value, Tensor):
        leaves.append(value)
        return ("tensor", len(leaves) - 1)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_flatten(v, leaves) for v in value])
    if isinstance(value, dict):
        return ("dict", [(k, _flatten(v, leaves)) for k, v in value.items()])
    if isinstance(value, (int, float, bool, str, type(None))):
        return ("constant", value)
    raise TraceError(f"graphc.compile: a compiled function may return tensors, numbers and "
                     f"lists/tuples/dicts of them, not {type(value).__name__}")


def _rebuild(spec, tensors):
    kind, payload = spec
    if kind == "tensor":
        return tensors[payload]
    if kind in ("list", "tuple"):
        items = [_rebuild(s, tensors) for s in payload]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _rebuild(s, tensors) for k, s in payload}
    return payload


# ---- one traced variant ---------------------------------------------------------------------------
@dataclass
class Variant:
    guards: dict
    graph: object                  # the traced Graph
    sources: dict                  # placeholder name -> ('argument', k, layout) | ('locator', Locator, layout) | ('scalar', i) | ('random', i)
    destinations: list             # per graph output: ('result', k) | ('write', Locator, layout)
    result_spec: object
    scalar_getters: list
    random_keys: list              # (relative offset, generator)
    random_count: int
    reason: str
    program: object = None         # CompiledGraph, or None for the NumPy backend
    trace_seconds: float = 0.0
    compile_seconds: float = 0.0
    calls: int = 0
    events: list = field(default_factory=list)
    read_locators: set = field(default_factory=set)   # locators whose old value the graph reads
    shared_results: list = field(default_factory=list)  # (grad locator, result position) set after a run
    state_results: list = field(default_factory=list)   # (result position, locator): returned as the state
    device: object = CPU           # where the graph's values live (a GPU: the CUDA backend runs it)
    # GPU variants: device views of inputs and destinations, device cells for scalars and random
    # keys, scratch outputs, kept from call to call (see CompiledFunction._run_on_device)
    device_views: dict = field(default_factory=dict)
    uncompiled: str = ""           # why calls under these guards run the function uncompiled


class CompiledFunction:
    """The callable `graphc.compile` returns."""

    def __init__(self, function, backend=None, max_variants: int = MAX_VARIANTS, check: bool = False,
                 strict: bool | None = None):
        self.function = function
        # strict: once a trace is kept, a call it does not cover raises instead of retracing
        self.strict = os.environ.get("GRAPHC_STRICT", "0") not in ("", "0") if strict is None else strict
        self.backend = backend
        self.check = check   # run each kernel beside the reference interpreter (graphc.check)
        self.max_variants = max_variants
        self.variants: list[Variant] = []
        self.history: list[dict] = []   # every trace: when, why, how long
        self.fallbacks = 0
        self._fast = None   # FastReplay of the variant that ran last
        self._call_arguments = []   # the tensor arguments of the call being run (see ArgumentSlot)
        self._warned_uncompiled = False
        self._graph_only = False   # graphc.trace: build the graph, change nothing
        self._slots = []            # ArgumentSlot per tensor argument position, made once
        self.__name__ = getattr(function, "__name__", type(function).__name__)
        self.__doc__ = getattr(function, "__doc__", None)
        self.__wrapped__ = function

    # ---- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # one call at a time: a program's arena, result buffers and bound arrays are shared
        with lazy.ENGINE_LOCK:
            try:
                return self._call(args, kwargs)
            finally:
                self._call_arguments = ()   # do not keep the call's inputs alive

    def _call(self, args, kwargs):
        fast = self._fast
        if fast is not None and fast.matches(args, kwargs):
            return self._replay_fast(fast, args, kwargs)
        captured = guard_module.discover(self.function, args, kwargs)
        guards = guard_module.signature(args, kwargs, captured)
        for variant in self.variants:
            if variant.guards == guards:
                if variant.uncompiled:
                    variant.calls += 1
                    return self.function(*args, **kwargs)
                if variant.program is not None:
                    from graphc.compile.fast_path import DeviceReplay, FastReplay
                    replay = FastReplay if variant.device.type == "cpu" else DeviceReplay
                    self._fast = replay(self, variant, self.function, args, kwargs, captured)
                return self._replay(variant, args, kwargs)
        if self.strict and self.variants:
            raise self._strict_error(guards)
        reason = self._reason(guards)
        if len(self.variants) >= self.max_variants:
            warnings.warn(f"graphc.compile: {self.__name__} was traced {len(self.variants)} times "
                          f"(limit {self.max_variants}); this call runs lazily, uncompiled. Last "
                          f"reason: {reason}", RuntimeWarning, stacklevel=2)
            self.fallbacks += 1
            return self.function(*args, **kwargs)
        return self._trace_and_run(args, kwargs, captured, guards, reason)

    def _reason(self, guards) -> str:
        previous = self.variants[-1].guards if self.variants else getattr(self, "_last_guards", None)
        if previous is None:
            return "first call"
        difference = guard_module.first_difference(previous, guards)
        if difference is None:
            return "the previous trace changed the state it was traced under"
        name, old, new = difference
        return f"guard '{name}' changed: {_short(old)} -> {_short(new)}"

    def _strict_error(self, guards) -> RetraceError:
        """What changed since the trace, for a strict function (the first differing guard)."""
        from graphc.source_location import user_location
        name, old, new = guard_module.first_difference(self.variants[0].guards, guards)
        if name.startswith("argument "):   # "argument 0.shape" -> "argument 0 (x).shape"
            number = name[len("argument "):].split(".")[0].split("[")[0]
            name = self._argument_label(int(number)) + name[len("argument ") + len(number):]
        return op_error(
            "graphc.compile", f"{self.__name__} (strict=True) was traced for one signature and called "
                              f"with another: {name} changed from {_short(old)} to {_short(new)}",
            user_location(), kind=RetraceError,
            hint="strict mode never retraces: call it with the same shapes, dtypes, modes and state "
                 "layout as the first call, or compile without strict=True (a changed call then traces "
                 f"again; {self.__name__}.stats() lists why)")

    def _argument_label(self, position: int) -> str:
        """'argument 0 (x)': the guard's position with the parameter's name when it is known."""
        try:
            parameters = [p.name for p in inspect.signature(self.function).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            parameters = []
        return f"argument {position}" + (f" ({parameters[position]})" if position < len(parameters) else "")

    # ---- tracing ---------------------------------------------------------------------------------
    def slots_for(self, arguments) -> list:
        """(ArgumentSlot, tensor) for each tensor argument of this call."""
        while len(self._slots) < len(arguments):
            self._slots.append(ArgumentSlot(self, len(self._slots)))
        self._call_arguments = arguments
        return list(zip(self._slots, arguments))

    def _trace_and_run(self, args, kwargs, captured, guards, reason):
        modules, optimizers = captured.modules, captured.optimizers  # noqa: F841 (graphc dump reads `modules`)
        realize.realize_all_pending()           # everything the trace reads exists in memory
        started = time.perf_counter()
        arguments = tensor_arguments(args, kwargs)
        for argument in arguments:
            argument._realize()
        argument_storages = {}
        for k, a in enumerate(arguments):
            argument_storages.setdefault(a._storage, k)
        slots = self.slots_for(arguments)
        owners_before = _owners(captured, slots)   # who held each storage the trace reads
        pending_before = set(id(s) for s in lazy.pending_storages())
        saved_options = {}   # (id(group), key) -> [group, key, the option's latest Python value]
        first_values = []    # the value each scalar input had when the trace read it
        with TraceContext() as context:
            def substitute(group, key):
                value = float(group[key])
                saved_options[(id(group), key)] = [group, key, group[key]]
                first_values.append(value)
                group[key] = context.scalar_input(value, lambda g=group, k=key: g[k])

            def restore(groups=None):
                for group, key, value in saved_options.values():
                    if groups is None or any(group is g for g in groups):
                        group[key] = value

            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    for key in guard_module.RUNTIME_OPTIONS:
                        if key in group and isinstance(group[key], (int, float)):
                            substitute(group, key)
            with _schedulers_recorded(context, substitute, restore):
                try:
                    result = self.function(*args, **kwargs)
                finally:
                    restore()
        leaves: list = []
        result_spec = _flatten(result, leaves)
        owners = _owners(captured, slots)          # who holds each storage after the call
        end_guards = guard_module.signature(args, kwargs, guard_module.discover(self.function, args, kwargs))
        # the call's own arguments getting a .grad does not make the trace unfit for later calls:
        # those bring arguments of their own, guarded when they come
        end_guards.update((name, value) for name, value in guards.items() if guard_module.is_argument_guard(name))
        why = "" if self._graph_only else _replay_impossible(context, leaves, owners)
        if why:
            return self._finish_lazily(context, result, guards, end_guards, reason, why, started)

        # outputs: the results, every storage written in place, every new tensor that outlives the trace
        output_nodes, destinations = [], []
        state_results = []    # (result position, locator): the function returned a state tensor itself
        for position, tensor in enumerate(leaves):
            # (outside the trace, a tensor written in place inside it still reads its old value)
            output_nodes.append(context.current_value(tensor) or tensor._node)
            destinations.append(("result", position))
            held = owners_before.get(tensor._storage)
            if held is not None and held.kind in ("tensor", "grad") and held.current_tensor() is tensor:
                state_results.append((position, held))
        result_storages = {t._storage for t in leaves}
        for storage, (node, shape, strides, offset) in context.written.items():
            locator = owners_before.get(storage) or owners.get(storage, Locator("storage", storage))
            output_nodes.append(node)
            destinations.append(("write", locator, (shape, strides, offset), storage))
        pending_now = {id(s) for s in lazy.pending_storages()}
        result_of = {}
        for position, tensor in enumerate(leaves):
            result_of.setdefault(tensor._storage, position)
        shared_results = []   # (gradient locator, result position): `.grad` is the returned tensor
        for storage, locator in owners.items():   # owners' order is the modules' order: deterministic
            if id(storage) not in pending_now or id(storage) in pending_before:
                continue  # (pending storages nothing owns are temporaries nobody reaches after the call)
            if storage in result_storages:
                if locator.kind == "grad":
                    shared_results.append((locator, result_of[storage]))
                continue
            output_nodes.append(storage.lazy_node)
            destinations.append(("new", locator, storage))
        # `p.grad.zero_()` and then backward() making a new p.grad: p holds the new gradient
        # afterwards, and the zeroed one matters only to whoever still holds it ("replaced": written
        # at replay only when the new gradient did not reuse the old one's memory)
        replaced = {d[1] for d in destinations if d[0] == "new"}
        destinations = [("replaced",) + d[1:] if d[0] == "write" and d[1] in replaced else d
                        for d in destinations]
        build = build_graph(output_nodes)
        self._last_graph = build.graph
        self._tracing_device = _trace_device(build)

        sources = {}
        scalar_index = {id(s): i for i, (s, _) in enumerate(context.scalar_inputs)}
        random_index = {id(s): i for i, (s, _, _) in enumerate(context.random_keys)}
        for node_id, lazy_node in build.node_of.items():
            node = build.graph.node(node_id)
            if node.op != "input" or lazy_node.buffer is None:
                continue
            storage, shape, strides, offset = lazy_node.buffer[:4]
            layout = (shape, strides, offset)
            if id(storage) in scalar_index:
                sources[node.name] = ("scalar", scalar_index[id(storage)])
            elif id(storage) in random_index:
                sources[node.name] = ("random", random_index[id(storage)])
            elif storage in argument_storages:
                sources[node.name] = ("argument", argument_storages[storage], layout)
            else:
                locator = owners_before.get(storage) or owners.get(storage, Locator("storage", storage))
                sources[node.name] = ("locator", locator, layout)
        variant = Variant(guards, build.graph, sources, destinations, result_spec,
                          [getter for _, getter in context.scalar_inputs],
                          [(offset, generator) for _, offset, generator in context.random_keys],
                          context.random_count, reason, trace_seconds=time.perf_counter() - started)
        variant.read_locators = {source[1] for source in sources.values() if source[0] == "locator"}
        variant.read_locators |= {Locator("tensor", slots[source[1]][0]) for source in sources.values()
                                  if source[0] == "argument"}   # an argument written in place
        variant.shared_results = shared_results
        variant.state_results = state_results
        variant.device = self._tracing_device
        # the trace advanced the generators; the first run reads the same counters again
        for offset, generator in variant.random_keys[:1]:
            generator.offset -= context.random_count
        steady = end_guards == guards
        self._last_guards = guards
        compile_started = time.perf_counter()
        # a trace that changed the watched state is not kept: run it once on the interpreter,
        # unless an earlier process already compiled it (then loading it is faster)
        aliases = _alias_candidates(variant)
        if variant.device.type != "cpu":   # a CPU state read by a GPU program is bound as a copy
            aliases = {position: name for position, name in aliases.items()
                       if variant.sources[name][1].storage().device == variant.device}
        if steady or variant.device.type != "cpu" or self._already_compiled(build.graph, aliases):
            variant.program = self._compile(build.graph, aliases)
        variant.compile_seconds = time.perf_counter() - compile_started
        variant.events = list(context.events)
        outcome = self._run(variant, arguments, first_values, build.bindings)
        if not steady:
            # the call changed the state the guards watch (e.g. created gradients or optimizer
            # buffers): this trace is not what later calls need, so do not keep it
            difference = guard_module.first_difference(guards, end_guards)
            self.history.append({"reason": reason, "kept": False, "trace_seconds": variant.trace_seconds,
                                 "compile_seconds": variant.compile_seconds,
                                 "note": f"state changed during the call ({difference[0]}); traced again next time"})
        else:
            self.variants.append(variant)
            self.history.append({"reason": reason, "kept": True, "trace_seconds": variant.trace_seconds,
                                 "compile_seconds": variant.compile_seconds,
                                 "cache_hit": getattr(variant.program, "cache_hit", None)})
        return outcome

    def _finish_lazily(self, context, result, guards, end_guards, reason, why, started):
        """Complete a traced call as the uncompiled function would have run: its results are the
        traced lazy tensors (with their autograd history), its in-place writes are computed and
        stored now. Later calls under the same guards run the function uncompiled."""
        written = list(context.written.items())
        values = realize.realize_all_pending(extra=[node for _, (node, *_) in written])
        for (storage, (_, shape, strides, offset)), value in zip(written, values):
            _copy_into(strided_view(storage, shape, strides, offset), value, storage.device,
                       storage.device)
            storage.version += 1
        entry = {"reason": reason, "kept": end_guards == guards, "uncompiled": why,
                 "trace_seconds": time.perf_counter() - started, "compile_seconds": 0.0}
        self.history.append(entry)
        if end_guards == guards:
            self.variants.append(Variant(guards, None, {}, [], None, [], [], 0, reason, uncompiled=why,
                                         trace_seconds=entry["trace_seconds"]))
        if not self._warned_uncompiled:
            self._warned_uncompiled = True
            warnings.warn(f"graphc.compile: {self.__name__} runs uncompiled (lazily): {why}",
                          RuntimeWarning, stacklevel=5)
        return result

    def _already_compiled(self, graph, aliases) -> bool:
        if (self.backend or backend_module.get_default()) == "numpy":
            return False
        from graphc.backends.c import _pipeline_path
        return _pipeline_path(graph, aliases).exists()

    def _compile(self, graph, aliases=None):
        device = getattr(self, "_tracing_device", CPU)
        if device.type != "cpu":
            from graphc import devices
            # replay: an unchanged step runs as one captured CUDA graph
            return devices.arrays_for(device).compiled_graph()(graph, aliases, replay=True)
        name = self.backend or backend_module.get_default()
        if name == "numpy":
            return None
        from graphc.backends.c import CompiledGraph
        return CompiledGraph(graph, aliases, check=self.check)

    # ---- running ---------------------------------------------------------------------------------
    def _scalars(self, variant: Variant) -> list:
        scalars = [None] * len(variant.scalar_getters)
        for kind, item in variant.events:
            if kind == "scalar":
                scalars[item] = variant.scalar_getters[item]()
            else:
                item.step()   # a scheduler stepped inside the function: its Python logic runs here
        return scalars

    def _replay_fast(self, fast, args, kwargs):
        return fast.run(args, kwargs, self._scalars(fast.variant))

    def _replay(self, variant: Variant, args, kwargs):
        arguments = tensor_arguments(args, kwargs)
        for argument in arguments:
            argument._realize()
        return self._run(variant, arguments, self._scalars(variant), None)

    def _run(self, variant: Variant, arguments, scalars, trace_bindings):
        self._call_arguments = arguments
        if variant.device.type != "cpu":
            return self._run_on_device(variant, arguments, scalars, trace_bindings)
        bindings = {}
        for name, source in variant.sources.items():
            kind = source[0]
            if kind == "argument":
                tensor = arguments[source[1]]
                bindings[name] = strided_view(tensor._storage, *source[2])
            elif kind == "locator":
                if trace_bindings is not None and name in trace_bindings:
                    # the run right after the trace reads what the trace read: the owner may
                    # already hold the traced new value (p.grad after backward)
                    bindings[name] = trace_bindings[name]
                else:
                    bindings[name] = strided_view(source[1].storage(), *source[2])
            elif kind == "scalar":
                bindings[name] = np.array(float(scalars[source[1]]), dtype=np.float64)
            else:
                offset, generator = variant.random_keys[source[1]]
                bindings[name] = np.array([generator.seed, generator.offset + offset], dtype=np.int64)
        if variant.random_keys:
            variant.random_keys[0][1].offset += variant.random_count
        program = variant.program
        first_run = trace_bindings is not None   # right after the trace: owners may hold traced values
        held = _replaced_storages(variant, first_run)
        direct = {}   # distinct output position -> the storage memory it is written into
        if program is None:
            from graphc import check, interpreter
            from graphc.autograd import anomaly
            watch = check.nan_watch() if anomaly.is_anomaly_enabled() else None
            results = interpreter.evaluate(variant.graph, bindings, on_node=watch)
            # (an output may be an input's own array: copied before any write changes that input)
            results = [np.array(value) if destination[0] != "result" else value
                       for destination, value in zip(variant.destinations, results)]
        else:
            # (right after the trace, a new state's storage is still the trace's own: not direct)
            writers = in_place_writers(variant, program.layout,
                                       lambda d: d[0] == "write" or d[2].array is not None)
            for position, graph_position in writers.items():
                destination = variant.destinations[graph_position]
                if position in program.layout.aliased:
                    continue
                if destination[0] == "write":
                    direct[position] = strided_view(_written_storage(destination, first_run), *destination[2])
                else:
                    _, shape, dtype = program.layout.outputs[position]
                    storage = destination[1].output_storage(shape, dtype)
                    direct[position] = storage.array[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
            early = _early_copies(program.layout, bindings, np.array)
            results = program(bindings, out=direct)
            results = _pass_through_snapshots(variant, program.layout, results, np.array, early)
        variant.calls += 1
        writers = writers if program is not None else {}
        tensors = []
        for graph_position, (destination, value) in enumerate(zip(variant.destinations, results)):
            kind = destination[0]
            position = program.layout.results[graph_position] if program is not None else ("input", None)
            written = position[0] == "output" and writers.get(position[1]) == graph_position
            if kind == "result":
                shared = position[0] == "output" and (position[1] in writers or position[1] in program.layout.aliased)
                array = np.array(value) if shared or np.asarray(value).base is not None else np.asarray(value)
                tensors.append(Tensor._from_array(array, share=True))
            elif kind == "write":
                storage = _written_storage(destination, first_run)
                if not written:
                    np.copyto(strided_view(storage, *destination[2]), value)
                storage.version += 1
            elif kind == "replaced":
                continue   # (written after the new states below, if still needed)
            else:
                storage = destination[2] if destination[2].array is None else \
                    destination[1].output_storage(np.shape(value), np.asarray(value).dtype)
                if storage.array is None:
                    storage.store(np.array(value))
                else:
                    if not written:
                        np.copyto(storage.array.reshape(np.shape(value)), value)
                    storage.version += 1
        for locator, position in variant.shared_results:
            locator.owner.grad = tensors[position]
        _return_states(variant, tensors)
        _write_replaced(variant, held, lambda graph_position: results[graph_position])
        return _rebuild(variant.result_spec, tensors)

    def _run_on_device(self, variant: Variant, arguments, scalars, trace_bindings=None):
        """`_run` for a graph compiled for a GPU: inputs are bound from device memory (Python
        numbers, random keys and CPU tensors copied over), updates are written straight into
        their tensors' memory (in place over the inputs the layout allows, else into the
        destination's storage, else copied), and results stay on the device.

        The device views of tensors and destinations are kept from call to call while their
        storages hold the same arrays, so an unchanged step binds the same arrays and the
        program reuses its prepared launches."""
        from graphc import devices
        device = variant.device
        xp = devices.arrays_for(device).xp
        program = variant.program
        views = variant.device_views
        bindings = {}
        for name, source in variant.sources.items():
            kind = source[0]
            if kind == "locator" and trace_bindings is not None and name in trace_bindings:
                bindings[name] = trace_bindings[name]   # as in _run: what the trace read
                continue
            if kind in ("argument", "locator"):
                storage = arguments[source[1]]._storage if kind == "argument" else source[1].storage()
                cached = views.get(name)
                if cached is not None and cached[0] is storage and cached[1] is storage.array:
                    bindings[name] = cached[2]
                    continue
                value = strided_view(storage, *source[2])
                if storage.device != device:     # a CPU tensor (a 0-dim one, as PyTorch allows)
                    bindings[name] = _device_cell(views, name, value, device)
                    continue
                views[name] = (storage, storage.array, value)
                bindings[name] = value
            elif kind == "scalar":
                bindings[name] = _device_cell(views, name, np.array(float(scalars[source[1]]), dtype=np.float64),
                                              device)
            else:
                offset, generator = variant.random_keys[source[1]]
                key = np.array([generator.seed, generator.offset + offset], dtype=np.int64)
                bindings[name] = _device_cell(views, name, key, device)
        if variant.random_keys:
            variant.random_keys[0][1].offset += variant.random_count
        first_run = trace_bindings is not None
        held = _replaced_storages(variant, first_run)
        direct = {}   # distinct output position -> the device memory of the state it updates
        writer_of = {}   # distinct output position -> the graph position whose memory that is
        layout = program.layout
        for graph_position, destination in enumerate(variant.destinations):
            kind, position = destination[0], layout.results[graph_position]
            if kind == "result" or position[0] != "output" or position[1] in layout.aliased:
                continue
            if destination[1] in variant.read_locators or kind == "replaced":
                continue  # the graph reads the old value: write elsewhere, then copy
            if kind == "new" and getattr(program, "replay", False):
                continue  # state made afresh each call (gradients after zero_grad) moves: copy it out
            if kind == "write":
                storage = _written_storage(destination, first_run)
            elif destination[2].array is not None:
                _, shape, dtype = layout.outputs[position[1]]
                storage = destination[1].output_storage(shape, dtype)
            else:
                storage = None
            if storage is None or storage.device != device or position[1] in direct:
                continue   # (an output several destinations share is written into the first's memory)
            writer_of[position[1]] = graph_position
            cached = views.get(("out", graph_position))
            if cached is None or cached[0] is not storage or cached[1] is not storage.array:
                shape = layout.outputs[position[1]][1]
                view = storage.array[:int(np.prod(shape, dtype=np.int64))].reshape(shape) if kind == "new" \
                    else strided_view(storage, *destination[2])
                cached = views[("out", graph_position)] = (storage, storage.array, view)
            direct[position[1]] = cached[2]
        # every other state output goes to a scratch buffer kept from call to call, then is copied:
        # with all addresses fixed, an unchanged step replays as one CUDA graph
        scratch = {}
        for graph_position, destination in enumerate(variant.destinations):
            position = layout.results[graph_position]
            if destination[0] in ("result", "replaced") or position[0] != "output" \
                    or position[1] in layout.aliased or position[1] in direct:
                continue
            array = views.get(("scratch", position[1]))
            if array is None:
                _, shape, dtype = layout.outputs[position[1]]
                array = views[("scratch", position[1])] = xp.empty(shape, dtype=dtype)
            scratch[position[1]] = array
        device_copy = lambda value: xp.array(value, order="C")   # noqa: E731
        early = _early_copies(layout, bindings, device_copy)
        results = program(bindings, out={**direct, **scratch})
        results = _pass_through_snapshots(variant, layout, results, device_copy, early)
        variant.calls += 1
        tensors = []
        for graph_position, (destination, value) in enumerate(zip(variant.destinations, results)):
            kind = destination[0]
            position = layout.results[graph_position]
            in_memory = position[0] == "output" and (position[1] in layout.aliased or position[1] in direct)
            if in_memory and (kind == "result" or position[1] in layout.aliased
                              or writer_of.get(position[1]) == graph_position):
                if kind == "result":    # also written into a state: the result is its own copy
                    tensors.append(Tensor._on_device(xp.array(value, order="C"), device))
                elif kind == "write":
                    _written_storage(destination, first_run).version += 1
                else:
                    storage = destination[2] if destination[2].array is None else destination[1].storage()
                    storage.version += 1
                continue
            if kind == "result":        # a fresh output array; inputs and the program's own buffers are copied
                fresh = position[0] == "output" and position[1] not in scratch \
                    and position[1] not in getattr(program, "persistent", ())
                tensors.append(Tensor._on_device(value if fresh else xp.array(value, order="C"), device))
            elif kind == "write":
                storage = _written_storage(destination, first_run)
                _copy_into(strided_view(storage, *destination[2]), value, storage.device, device)
                storage.version += 1
            elif kind == "replaced":
                continue
            else:
                storage = destination[2] if destination[2].array is None else \
                    destination[1].output_storage(value.shape, value.dtype)
                if storage.array is None:     # the scratch buffer is the program's: store a copy
                    storage.store(xp.array(value, order="C") if storage.device == device
                                  else devices.to_host(value, device))
                else:
                    _copy_into(storage.array.reshape(value.shape), value, storage.device, device)
                    storage.version += 1
        for locator, position in variant.shared_results:
            locator.owner.grad = tensors[position]
        _return_states(variant, tensors)
        _write_replaced(variant, held, lambda graph_position: results[graph_position], device)
        return _rebuild(variant.result_spec, tensors)

    # ---- inspection ------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Traces, their reasons and costs, and how often each variant ran."""
        return {"traces": len(self.history), "variants": len(self.variants), "fallbacks": self.fallbacks,
                "history": list(self.history),
                "calls": [v.calls for v in self.variants]}

    def graphs(self) -> list:
        return [v.graph for v in self.variants]


def overwritten_pass_through(layout) -> set:
    """Names of inputs that are also returned unchanged (a result, or a state's new value such as
    `x.grad` being `w`) while the program updates them in place: their old value must be copied
    before the program runs."""
    aliased = set((layout.aliased or {}).values())
    return {where[1] for where in layout.results if where[0] == "input" and where[1] in aliased}


def _early_copies(layout, bindings, copy) -> dict:
    return {name: copy(bindings[name]) for name in overwritten_pass_through(layout)}


def _pass_through_snapshots(variant, layout, results, copy, early) -> list:
    """A state whose new value is an input unchanged (`y.grad` is x, d(x * y)/dy) must take the
    input's value before the writes after the run change that input: those get a copy (taken
    before the run where the program itself writes over the input)."""
    snapshots = []
    for destination, where, value in zip(variant.destinations, layout.results, results):
        if where[0] == "input" and where[1] in early:
            value = copy(early[where[1]])
        elif destination[0] != "result" and where[0] == "input":
            value = copy(value)
        snapshots.append(value)
    return snapshots


def _written_storage(destination, first_run: bool) -> Storage:
    """The storage an in-place write goes to: the one written during the trace on the run right
    after it (its owner may already hold a traced new value), else the owner's current one."""
    return destination[3] if first_run else destination[1].storage()


def _return_states(variant, tensors) -> None:
    """A function that returns a tensor it found (`return w.grad` where w.grad existed, `return
    model.weight`) returns that very tensor, as the Python does, not a copy of its value."""
    for position, locator in variant.state_results:
        tensors[position] = locator.current_tensor()


def _replaced_storages(variant, first_run: bool) -> list:
    """(graph position, the storage now behind the locator) for each "replaced" write, taken before
    the run resolves the new states (which may give the owner a new tensor)."""
    return [(position, destination, _written_storage(destination, first_run))
            for position, destination in enumerate(variant.destinations) if destination[0] == "replaced"]


def _write_replaced(variant, held, value_of, device=CPU) -> None:
    """A state written in place and then replaced by a new tensor (`p.grad.zero_()` before
    backward()): when the owner now holds other memory, the old tensor (someone still holds it)
    gets the written value, as the Python run would leave it."""
    for position, destination, storage in held:
        if destination[1].storage() is storage:
            continue   # the new value reused the memory: the write is overwritten anyway
        _copy_into(strided_view(storage, *destination[2]), value_of(position), storage.device, device)
        storage.version += 1


def _device_cell(views: dict, name, host_value: np.ndarray, device):
    """A device array holding `host_value`, the same array from call to call (its contents
    replaced), so a step's bindings keep their addresses and its CUDA graph can be replayed."""
    from graphc import devices
    cell = views.get(("cell", name))
    if cell is None or cell.shape != host_value.shape or cell.dtype != host_value.dtype:
        cell = views[("cell", name)] = devices.from_host(np.array(host_value, order="C"), device)
    else:
        devices.copy_from_host(cell, host_value, device)
    return cell


def _copy_into(target, value, target_device, value_device) -> None:
    """Copy a GPU program's result (on `value_device`) into a state's memory, which may live on
    the CPU (Adam's step count is a CPU tensor in PyTorch's layout)."""
    from graphc import devices
    if target_device.type == "cpu":
        np.copyto(target, devices.to_host(value, value_device))
    else:
        devices.arrays_for(target_device).xp.copyto(target, value)


class _schedulers_recorded:
    """While tracing, an LR scheduler's step() runs for real on Python floats, is recorded (a replay
    calls it again at the same point) and its new learning rates become new runtime inputs."""

    def __init__(self, context, substitute, restore):
        self.context, self.substitute, self.restore = context, substitute, restore

    def __enter__(self):
        from graphc.optim.lr_scheduler import LRScheduler
        self.original = original = LRScheduler.step
        context, substitute, restore = self.context, self.substitute, self.restore

        def recorded_step(scheduler, *args, **kwargs):
            restore(scheduler.optimizer.param_groups)
            result = original(scheduler, *args, **kwargs)
            context.events.append(("scheduler", scheduler))
            for group in scheduler.optimizer.param_groups:
                for key in guard_module.RUNTIME_OPTIONS:
                    if key in group and isinstance(group[key], (int, float)):
                        substitute(group, key)
            return result
        LRScheduler.step = recorded_step
        return self

    def __exit__(self, *exc):
        from graphc.optim.lr_scheduler import LRScheduler
        LRScheduler.step = self.original
        return False


def _replay_impossible(context, leaves, owners) -> str:
    """Why a replay could not compute what this traced call computes, or ''."""
    if context.backward_calls == 0 and any(t.requires_grad for t in leaves):
        return ("it returns a tensor that requires grad and calls no backward() itself, so the "
                "caller may backpropagate through the result, and a replay's results carry no "
                "autograd history. Compile the whole step (forward, backward(), optimizer.step()) "
                "for one native call, or call it under graphc.no_grad() for inference")
    for target in context.grad_targets:
        grad = getattr(target, "grad", None)
        if grad is not None and grad._storage not in owners:
            return ("backward() inside it gave a gradient to a tensor it reaches only through an "
                    "argument's autograd history (an argument that is not a leaf): pass a leaf "
                    "(detach() it), or capture the tensor that needs the gradient")
    return ""


def _trace_device(build):
    """The one device a traced step computes on: a GPU when its values live there, else the CPU
    (0-dim CPU values such as a learning rate join either)."""
    found = {lazy.device for lazy in build.node_of.values() if lazy.device is not None}
    found.discard(CPU)
    if len(found) > 1:
        raise TraceError(f"graphc.compile: the function computes on several devices "
                         f"({', '.join(sorted(map(str, found)))}); a compiled function runs on one")
    return found.pop() if found else CPU


def in_place_writers(variant, layout, eligible) -> dict:
    """Distinct program output -> the one graph position whose destination the program writes
    in place: over the input it aliases, or (for destinations `eligible` accepts) straight into
    the destination's memory. Simplify may merge equal values (four leaves receiving the same
    gradient), so several destinations can share one output: all but its writer get a copy."""
    writers = {}
    aliased = layout.aliased or {}
    if aliased:
        candidates = _alias_candidates(variant)
        for position, name in aliased.items():
            for graph_position, candidate in candidates.items():
                where = layout.results[graph_position]
                if candidate == name and where[0] == "output" and where[1] == position:
                    writers[position] = graph_position
                    break
    for graph_position, destination in enumerate(variant.destinations):
        where = layout.results[graph_position]
        if (destination[0] in ("result", "replaced") or where[0] != "output" or where[1] in writers
                or where[1] in aliased or destination[1] in variant.read_locators
                or not eligible(destination)):
            continue   # (a write whose old value the graph reads is written elsewhere, then copied)
        writers[where[1]] = graph_position
    return writers


def _alias_candidates(variant) -> dict:
    """Graph output position -> placeholder name, for each write whose old value the graph also
    reads: the compiled program may update that memory in place (it checks for hazards)."""
    readers = {}
    for name, source in variant.sources.items():
        if source[0] == "locator":
            readers[(source[1], source[2])] = name
    candidates = {}
    for position, destination in enumerate(variant.destinations):
        if destination[0] == "write":
            name = readers.get((destination[1], destination[2]))
            if name is not None:
                candidates[position] = name
    return candidates


def trace_graph(function, args, kwargs):
    """Trace without running: the graph, with the caller's state left as it was."""
    with lazy.ENGINE_LOCK:
        captured = guard_module.discover(function, args, kwargs)
        realize.realize_all_pending()
        snapshot = _snapshot(captured, tensor_arguments(args, kwargs))
        compiled = CompiledFunction(function)
        compiled._graph_only = True
        try:
            compiled._compile = lambda graph, aliases=None: None
            compiled._already_compiled = lambda graph, aliases: False
            compiled._run = lambda variant, *rest: None
            compiled._trace_and_run(args, kwargs, captured, guard_module.signature(args, kwargs, captured),
                                    "graphc.trace")
        finally:
            _restore(snapshot)
        return compiled._last_graph


def _snapshot(captured, arguments):
    """Python-visible state a trace may change: gradients and optimizer state entries."""
    holders = list(arguments) + list(captured.tensors)
    for module in captured.modules:
        holders.extend(module.parameters())
    for optimizer in captured.optimizers:
        for group in optimizer.param_groups:
            holders.extend(group["params"])
    return ([(p, p.grad) for p in holders],
            [(o, {p: dict(s) for p, s in o.state.items()}) for o in captured.optimizers])


def _restore(snapshot):
    grads, states = snapshot
    for parameter, grad in grads:
        parameter.grad = grad
    for optimizer, state in states:
        optimizer.state.clear()
        optimizer.state.update(state)
