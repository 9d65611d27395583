"""The replay fast path: check a variant's guards and run it with as little Python as possible.

The full guards (`guards.signature`) walk every module and optimizer; a `FastReplay` instead keeps
flat lists made when the variant was traced, compares them by identity, and keeps the arrays it
binds (parameter views, scalar cells, result buffers) from call to call, so an unchanged step
reuses the native program's pointer table. Any mismatch falls back to the full path.
"""
from __future__ import annotations

import sys

import numpy as np

from graphc.autograd.grad_mode import is_grad_enabled
from graphc.compile.captured import value_guard
from graphc.compile.function import _rebuild, _return_states, in_place_writers, overwritten_pass_through, tensor_arguments
from graphc.compile.guards import argument_aliasing
from graphc.lazy import contiguous_strides, strided_view
from graphc.tensor import Tensor

SMALL_RESULT_BYTES = 1 << 16  # results up to this size are copied out of a persistent buffer
_MISSING = object()


class FastReplay:
    def __init__(self, compiled, variant, function, args, kwargs, captured):
        from graphc.compile.guards import RUNTIME_OPTIONS
        modules, optimizers = captured.modules, captured.optimizers
        self.compiled = compiled
        self.variant = variant
        self.program = variant.program
        self.grad_mode = is_grad_enabled()
        self.argument_count = (len(args), tuple(sorted(kwargs)))
        values = list(args) + [kwargs[k] for k in sorted(kwargs)]
        self.argument_specs = [(a._shape, a._storage.dtype, a._strides, a._offset, a._requires_grad,
                                a._storage.device, _grad_spec(a))
                               if isinstance(a, Tensor) else ("value", value_guard(a))
                               for a in values]
        tensors = [a for a in values if isinstance(a, Tensor)]
        # f(x, x) and f(a, b) are different programs: None when every tensor argument has its own memory
        aliasing = argument_aliasing(tensors)
        self.argument_aliasing = None if aliasing == tuple(range(len(tensors))) else aliasing
        # positions (in args + sorted kwargs) of the tensor arguments, when there are several
        self.tensor_positions = [k for k, a in enumerate(values) if isinstance(a, Tensor)] \
            if len(tensors) > 1 else []
        self.watches = [(w.container, w.name, w.value, w.guard, w.mutable) for w in captured.watches]
        self.modules = [m for module in modules for m in module.modules()]
        self.module_checks = [(m, (tuple(m._parameters.values()), tuple(m._buffers.values()), len(m._modules)),
                               m.training) for m in self.modules]
        self.parameters = list({id(p): p for m in modules for p in m.parameters()}.values())
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if all(p is not q for q in self.parameters):
                        self.parameters.append(p)
        for tensor in captured.tensors:   # captured tensors: their layout and .grad, like parameters
            if all(tensor is not q for q in self.parameters):
                self.parameters.append(tensor)
        self.parameter_specs = [self._parameter_spec(p) for p in self.parameters]
        self.optimizers = optimizers
        self.runtime_options = RUNTIME_OPTIONS
        self.optimizer_checks = [
            (len(o.state),
             [(group, [(k, v) for k, v in group.items() if k != "params" and k not in RUNTIME_OPTIONS])
              for group in o.param_groups],
             [len(entry) for entry in o.state.values()]) for o in optimizers]
        layout = self.program.layout
        self.input_names = layout.input_names
        self.sources = [variant.sources.get(name) for name in layout.input_names]
        self.cached_inputs = [None] * len(self.sources)   # (storage, array, view)
        self.contiguous_sizes = [
            int(np.prod(s[2][0], dtype=np.int64)) if s[0] in ("argument", "locator")
            and tuple(s[2][1]) == contiguous_strides(s[2][0]) else None for s in self.sources]
        self.scalar_cells = [np.zeros((), dtype=np.float64) for _ in variant.scalar_getters]
        self.random_cells = [np.zeros(2, dtype=np.int64) for _ in variant.random_keys]
        self.cached_destinations = {}
        self._plan_outputs(layout)
        self.persistent_results = list({s[1]: (s[1], s[2]) for s in self.result_slots
                                        if s[2] is not None and not s[3]}.values())
        self.aliased_inputs = [(position, layout.input_names.index(name))
                               for position, name in (layout.aliased or {}).items()]
        self.early_inputs = [layout.input_names.index(name) for name in overwritten_pass_through(layout)]

    # ---- guards --------------------------------------------------------------------------------
    @staticmethod
    def _tables(module):
        return (tuple(module._parameters.values()), tuple(module._buffers.values()),
                tuple(module._modules.values()))

    @staticmethod
    def _parameter_spec(p):
        return (p._shape, p._strides, p._offset, p._requires_grad, _grad_spec(p), p._storage.device)

    def _optimizer_spec(self, optimizer):
        groups = tuple(tuple((k, v) for k, v in group.items() if k != "params" and k not in self.runtime_options)
                       for group in optimizer.param_groups)
        state = tuple((len(entry), tuple(entry)) for entry in optimizer.state.values())
        return (len(optimizer.state), groups, state)

    def matches(self, args, kwargs) -> bool:
        """Every guard, checked with identity and length tests on lists made at trace time."""
        if kwargs or len(args) != self.argument_count[0]:
            if (len(args), tuple(sorted(kwargs))) != self.argument_count:
                return False
            args = list(args) + [kwargs[k] for k in sorted(kwargs)]
        if is_grad_enabled() is not self.grad_mode:
            return False
        for value, spec in zip(args, self.argument_specs):
            if value.__class__ is Tensor or isinstance(value, Tensor):
                if (value._shape != spec[0] or value._storage.dtype is not spec[1] or value._strides != spec[2]
                        or value._offset != spec[3] or value._requires_grad != spec[4]
                        or (value._storage.device is not spec[5] and value._storage.device != spec[5])
                        or (value.grad is not None or spec[6] is not None) and _grad_spec(value) != spec[6]):
                    return False
            elif spec[0] != "value" or spec[1] != value_guard(value):
                return False
        positions = self.tensor_positions
        if positions:   # which tensor arguments share memory (the argument specs fixed which are tensors)
            if self.argument_aliasing is None:
                if len(positions) == 2:
                    if args[positions[0]]._storage is args[positions[1]]._storage:
                        return False
                elif len({id(args[k]._storage) for k in positions}) != len(positions):
                    return False
            elif argument_aliasing([args[k] for k in positions]) != self.argument_aliasing:
                return False
        for container, name, expected, guard, mutable in self.watches:
            value = container.get(name, _MISSING)
            if value is expected and not mutable:
                continue
            if value_guard(value) != guard:
                return False
        for module, (parameters, buffers, children), training in self.module_checks:
            if module.training is not training or len(module._modules) != children:
                return False
            table = module._parameters
            if len(table) != len(parameters):
                return False
            for a, b in zip(table.values(), parameters):
                if a is not b:
                    return False
            table = module._buffers
            if len(table) != len(buffers):
                return False
            for a, b in zip(table.values(), buffers):
                if a is not b:
                    return False
        for p, (shape, strides, offset, requires_grad, grad_spec, device) in zip(self.parameters,
                                                                                  self.parameter_specs):
            grad = p.grad
            if (p._shape != shape or p._strides != strides or p._offset != offset
                    or p._requires_grad != requires_grad
                    or (p._storage.device is not device and p._storage.device != device)):
                return False
            if grad is None:
                if grad_spec is not None:
                    return False
            elif (grad_spec is None or grad._shape != grad_spec[0] or grad._storage.dtype is not grad_spec[1]
                  or grad._strides != grad_spec[2] or grad._offset != grad_spec[3]):
                return False
        for optimizer, (state_size, option_checks, entry_sizes) in zip(self.optimizers, self.optimizer_checks):
            state = optimizer.state
            if len(state) != state_size:
                return False
            for group, options in option_checks:
                for key, value in options:
                    if group.get(key, _MISSING) != value:
                        return False
            for entry, size in zip(state.values(), entry_sizes):
                if len(entry) != size:
                    return False
        return True

    # ---- running -------------------------------------------------------------------------------
    def _plan_outputs(self, layout):
        """Which program outputs go straight into state memory, and which results are copied out."""
        variant = self.variant
        self.result_slots = []     # (graph position, distinct output, persistent buffer or None, in state memory)
        self.direct = []           # (distinct output, destination)
        self.writes = []           # destinations whose storage version is bumped after a run
        self.copies = []           # (distinct output, destination) written by copying
        self.input_copies = []     # (input index, destination): a state set to an input's value
        self.replaced = []         # (where its value is, destination) of "replaced" writes
        writers = in_place_writers(variant, layout, lambda destination: True)
        self.direct = [(position, variant.destinations[graph_position]) for position, graph_position
                       in writers.items() if position not in layout.aliased]
        in_memory = set(writers) | set(layout.aliased)   # outputs written into some state's memory
        buffers = {}   # distinct output -> the persistent buffer small results are copied out of
        for graph_position, destination in enumerate(variant.destinations):
            kind = destination[0]
            where = layout.results[graph_position]
            if kind == "result":
                if where[0] != "output":
                    self.result_slots.append((graph_position, None, None, False))
                    continue
                _, shape, dtype = layout.outputs[where[1]]
                small = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize <= SMALL_RESULT_BYTES
                # a result that is also a state's memory is copied out, like a small one; results
                # simplify merged (`return loss, out` with loss == out) share one buffer
                copied = small or where[1] in in_memory
                buffer = buffers.setdefault(where[1], np.empty(shape, dtype)) if copied else None
                self.result_slots.append((graph_position, where[1], buffer, where[1] in in_memory))
                continue
            if kind == "replaced":
                self.replaced.append((where, destination))
                continue
            self.writes.append(destination)
            if where[0] == "input":    # the new value is an input unchanged (d(w * x)/dw is x)
                self.input_copies.append((layout.input_names.index(where[1]), destination))
            elif writers.get(where[1]) != graph_position:
                self.copies.append((where[1], destination))

    def _input_array(self, index, source, arguments):
        kind = source[0]
        if kind == "argument":
            storage = arguments[source[1]]._storage
        elif kind == "locator":
            storage = source[1].storage()
        elif kind == "scalar":
            return self.scalar_cells[source[1]]
        else:
            return self.random_cells[source[1]]
        cached = self.cached_inputs[index]
        if cached is not None and cached[0] is storage and cached[1] is storage.array:
            return cached[2]
        shape, strides, offset = source[2]
        size = self.contiguous_sizes[index]
        if size is not None:   # the common case: a plain reshape, no as_strided
            view = storage.array[offset:offset + size].reshape(shape)
        else:
            view = np.ascontiguousarray(strided_view(storage, shape, strides, offset))
        self.cached_inputs[index] = (storage, storage.array, view)
        return view

    def _destination(self, position, destination):
        """The memory a state output is written into: the destination tensor's storage (for a
        gradient made afresh, a new `.grad` when the owner has none of that layout)."""
        cached = self.cached_destinations.get(position)
        locator = destination[1]
        if destination[0] == "write":
            storage = locator.storage()
        else:
            if locator.kind == "grad" and cached is not None:
                # the common step: the owner still holds the gradient written last call and nobody
                # else does (its layout is guarded); references: the owner's, `grad`, getrefcount's
                grad = locator.owner.grad
                if grad is not None and grad._storage is cached[0] and cached[0].array is cached[1] \
                        and sys.getrefcount(grad) <= 3:
                    return cached[2]
                grad = None
            _, shape, dtype = self.program.layout.outputs[position]
            storage = locator.output_storage(shape, dtype)
        if cached is not None and cached[0] is storage and cached[1] is storage.array:
            return cached[2]
        if destination[0] == "write":
            array = strided_view(storage, *destination[2])
        else:
            array = storage.array[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
        self.cached_destinations[position] = (storage, storage.array, array)
        return array

    def run(self, args, kwargs, scalars):
        variant, program = self.variant, self.program
        arguments = tensor_arguments(args, kwargs)
        self.compiled._call_arguments = arguments
        for argument in arguments:
            if argument._storage.array is None:
                argument._realize()
        for cell, value in zip(self.scalar_cells, scalars):
            cell[()] = value
        if self.random_cells:
            for cell, (offset, generator) in zip(self.random_cells, variant.random_keys):
                cell[0] = generator.seed
                cell[1] = generator.offset + offset
            variant.random_keys[0][1].offset += variant.random_count
        inputs = [self._input_array(i, s, arguments) for i, s in enumerate(self.sources)]
        held = [(where, destination, destination[1].storage()) for where, destination in self.replaced] \
            if self.replaced else ()
        outputs = [None] * len(program.layout.outputs)
        for position, destination in self.direct:
            outputs[position] = self._destination(position, destination)
        for position, persistent in self.persistent_results:
            outputs[position] = persistent
        for position, input_index in self.aliased_inputs:
            outputs[position] = inputs[input_index]
        for position, array in enumerate(outputs):
            if array is None:
                outputs[position] = program._output_array(position)
        early = {index: np.array(inputs[index]) for index in self.early_inputs} if self.early_inputs else None
        program.run_arrays(inputs, outputs)
        variant.calls += 1
        if early:   # inputs returned unchanged that the program wrote over: their old values
            inputs = [early.get(index, array) for index, array in enumerate(inputs)]
        # states set to an input's old value take it before any copy below writes that input
        # (`y.grad` is x while x is updated in place): a snapshot, for this rare case
        passed = [(index, destination, np.array(inputs[index])) for index, destination in self.input_copies] \
            if self.input_copies else ()
        replaced = [(where, destination, storage, outputs[where[1]] if where[0] == "output"
                     else np.array(inputs[self.input_names.index(where[1])])) for where, destination, storage in held]
        for position, destination in self.copies:
            np.copyto(self._destination(position, destination), outputs[position])
        for index, destination, value in passed:
            shape = self.sources[index][2][0] if self.sources[index][0] in ("argument", "locator") \
                else value.shape
            np.copyto(_input_destination(destination, shape, value.dtype), value)
        for where, destination, storage, value in replaced:
            if destination[1].storage() is not storage:   # see function._write_replaced
                np.copyto(strided_view(storage, *destination[2]), value)
                storage.version += 1
        for destination in self.writes:
            destination[1].storage().version += 1
        tensors = []
        for graph_position, position, persistent, in_memory in self.result_slots:
            if position is None:
                name = program.layout.results[graph_position][1]
                tensors.append(Tensor._from_array(np.array(inputs[self.input_names.index(name)])))
            elif in_memory:
                tensors.append(Tensor._adopt(np.array(outputs[position])))
            elif persistent is not None:
                tensors.append(Tensor._adopt(persistent.copy()))
            else:
                tensors.append(Tensor._from_array(outputs[position], share=True))
        for locator, position in variant.shared_results:
            locator.owner.grad = tensors[position]
        _return_states(variant, tensors)
        return _rebuild(variant.result_spec, tensors)


class DeviceReplay(FastReplay):
    """FastReplay's guard checks for a variant compiled for a GPU; the run is the device path's
    (`CompiledFunction._run_on_device`), which keeps its own views from call to call."""

    def run(self, args, kwargs, scalars):
        arguments = tensor_arguments(args, kwargs)
        for argument in arguments:
            if argument._storage.array is None:
                argument._realize()
        return self.compiled._run_on_device(self.variant, arguments, scalars)


def _input_destination(destination, shape, dtype):
    """The memory a state set to an input's value is copied into."""
    if destination[0] == "write":
        return strided_view(destination[1].storage(), *destination[2])
    storage = destination[1].output_storage(shape, dtype)
    return storage.array[:int(np.prod(shape, dtype=np.int64))].reshape(shape)


def _grad_spec(tensor):
    grad = tensor.grad
    return None if grad is None else (grad._shape, grad._storage.dtype, grad._strides, grad._offset)
