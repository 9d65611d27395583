"""`backward()` and `autograd.grad()`: derive the gradient graph, hand back lazy gradients.

The forward lazy nodes are walked (`schedule.history`: values that need no gradient are leaves)
and keyed by structure. The first time a structure is seen, its walk becomes a `Graph`, the
autodiff pass adds the backward nodes, and those are kept as a `Derivation`: instructions over
the forward positions. Every backward() of that structure then makes the gradient's lazy nodes
from it directly. Gradients stay lazy until used, like every other value.
"""
from __future__ import annotations

from graphc import capture
from graphc.autograd.grad_mode import no_grad
from graphc.errors import op_error
from graphc.lazy import LazyNode, check_unchanged, make_node, python_scalar_node
from graphc.schedule import history
from graphc.passes.autodiff import autodiff


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _seeds(outputs, grad_outputs, op):
    """The gradient each output starts from. `op` ('backward' or 'autograd.grad') heads errors."""
    from graphc.source_location import user_location
    from graphc.tensor import Tensor
    grad_outputs = _as_list(grad_outputs) or [None] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"got {len(grad_outputs)} gradients for {len(outputs)} outputs")
    seeds = []
    for number, (output, grad) in enumerate(zip(outputs, grad_outputs)):
        if not output.requires_grad:
            raise op_error(op, f"element {number} of tensors does not require grad and does not have "
                               f"a grad_fn", user_location(),
                           hint="no input of this computation requires grad: create the parameters with "
                                "requires_grad=True (or call .requires_grad_()), and compute outside "
                                "graphc.no_grad()")
        if grad is None:
            if output.numel() != 1:
                raise op_error(
                    op, f"grad can be implicitly created only for scalar outputs, but the output has "
                        f"shape {list(output.shape)} (made at {output._node.where})", user_location(),
                    hint="pass gradient=, e.g. y.backward(gradient=graphc.ones_like(y)), or reduce y to a "
                         "scalar first (y.sum(), y.mean())")
            seed = python_scalar_node(1.0, output.dtype, output._node.where)
            if output.ndim:
                seed = make_node("expand", [seed], seed.where, shape=output._shape)
            seeds.append(seed)
        else:
            if not isinstance(grad, Tensor):
                raise TypeError("gradient must be a Tensor")
            if tuple(grad._shape) != tuple(output._shape):
                raise RuntimeError(f"Mismatch in shape: grad_output[{number}] has a shape of "
                                   f"{list(grad.shape)} and output[{number}] has a shape of "
                                   f"{list(output.shape)}.")
            if grad.dtype is not output.dtype:  # PyTorch casts the seed to the output's dtype
                grad = grad.detach().to(output.dtype)
            seeds.append(grad._node)
    return seeds


def derive(walked, seed_nodes, wrt_nodes, create_graph: bool) -> list:
    """Lazy gradient nodes of the walked outputs w.r.t. each wrt node (None where no path exists).

    `walked` is the `schedule.history` of the outputs followed by the seeds. The backward graph of
    a structure seen before is rebuilt from its `Derivation` (no Graph, no vjp rule run)."""
    positions = walked.position_of
    wrt_positions = tuple(positions.get(n) for n in wrt_nodes)
    key = (walked.key, len(seed_nodes), wrt_positions)
    derivation = _derivations.get(key)
    if derivation is None:
        derivation = _derivations[key] = Derivation(walked, len(seed_nodes), wrt_positions)
    for position in derivation.checked:
        check_unchanged(walked.nodes[position])
    results = []
    for value in derivation.instantiate(walked.nodes):
        if value is not None and (not create_graph or not value.requires_grad):
            value = _detached(value)
        results.append(value)
    return results


_derivations: dict = {}   # (history key, seeds, wrt positions) -> Derivation


class Derivation:
    """The backward graph of one forward structure, as instructions over the forward positions:
    the autodiff pass runs once per structure, and later backward() calls only make lazy nodes."""

    def __init__(self, walked, seed_count: int, wrt_positions):
        build = walked.build()
        graph = build.graph
        count = len(walked.key[1]) - seed_count
        graph.output(*walked.key[1])
        reachable = [p for p in wrt_positions if p is not None]
        grad_ids = autodiff(graph, graph.outputs[:count], graph.outputs[count:], reachable)
        by_wrt = dict(zip(reachable, grad_ids))
        wanted = [by_wrt.get(p) if p is not None else None for p in wrt_positions]
        needed = _ancestors(graph, [g for g in wanted if g is not None])
        forward = len(walked.nodes)
        # values a gradient reads must not have been written in place since (PyTorch checks at
        # backward): the leaves among the ancestors (which of them read memory differs from call
        # to call of one structure, so each is checked)
        self.checked = [i for i in sorted(needed) if i < forward and type(walked.entries[i]) is int]
        # backward nodes say which forward line they differentiate: keep that tie by position
        location_of = {f"{node.where or '<graphc>'} (backward of {node.op})": position
                       for position, node in enumerate(walked.nodes)}
        slot_of = {i: i for i in range(forward)}
        self.steps = []   # (op, input slots, shape, dtype, attrs, where or forward position)
        for node_id in graph.topo_order():
            if node_id < forward or node_id not in needed:
                continue
            node = graph.node(node_id)
            slot_of[node_id] = forward + len(self.steps)
            line = location_of.get(node.where, node.where)
            self.steps.append((node.op, tuple(slot_of[i] for i in node.inputs), node.shape,
                               node.dtype, node.attrs, line))
        self.results = [slot_of[g] if g is not None else None for g in wanted]

    def instantiate(self, forward_nodes) -> list:
        values = list(forward_nodes)
        for op, inputs, shape, dtype, attrs, line in self.steps:
            operands = tuple(values[i] for i in inputs)
            if type(line) is int:
                source = values[line]
                line = f"{source.where or '<graphc>'} (backward of {source.op})"
            values.append(LazyNode(op, operands, shape, dtype, attrs, line,
                                   any(o.requires_grad for o in operands)))
        return [values[r] if r is not None else None for r in self.results]


def _ancestors(graph, node_ids) -> set:
    needed, stack = set(node_ids), list(node_ids)
    predecessors = graph.nx.pred
    while stack:
        for parent in predecessors[stack.pop()]:
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    return needed


def _detached(value: LazyNode) -> LazyNode:
    """A node with the same value and no gradient history (fresh, so storages never share it)."""
    return LazyNode("reshape", (value,), value.shape, value.dtype, {"shape": tuple(value.shape)},
                    value.where, False)


# PyTorch's backward nodes that keep no tensors, so a second backward through them is allowed
# (checked against PyTorch 2.13: sum, mean, add, neg and views pass; mul, even by a number, fails)
_SAVE_NOTHING = frozenset({
    "Add", "Sub", "Neg", "Sum", "Mean", "Expand", "View", "Reshape", "ReshapeAlias", "UnsafeView",
    "Permute", "T", "Transpose", "Slice", "Select", "Cat", "Stack", "ToCopy", "ConstantPadNd",
    "Clone", "Alias", "Squeeze", "Unsqueeze", "Split", "SplitWithSizes", "Unbind", "Flatten",
    "Narrow", "Chunk"})


def _saves_values(node) -> bool:
    """Whether PyTorch's backward node for `node` keeps tensors, which backward() frees. Only the
    node that ends a public op carries its PyTorch name; the nodes inside it follow that one."""
    name = node.grad_name
    if name is None:
        return False
    return name.rstrip("0123456789").removesuffix("Backward") not in _SAVE_NOTHING


def _check_not_freed(through, op: str) -> None:
    from graphc.source_location import user_location
    for node in through:
        if node.freed and _saves_values(node):
            raise op_error(op, "Trying to backward through the graph a second time (or directly access "
                               "saved tensors after they have already been freed). Saved intermediate "
                               "values of the graph are freed when you call .backward() or "
                               "autograd.grad(). Specify retain_graph=True if you need to backward "
                               "through the graph a second time or if you need to access saved tensors "
                               f"after calling backward. (The graph went through {node.op} at {node.where}.)",
                           user_location(), kind=RuntimeError,
                           hint="pass retain_graph=True to the first backward(), or compute the loss "
                                "again before the second")


def _free(through, retain_graph, create_graph) -> None:
    if retain_graph is None:
        retain_graph = create_graph    # PyTorch's default
    if not retain_graph:
        for node in through:
            node.freed = True


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaf) into every leaf's `.grad`."""
    from graphc.tensor import Tensor
    outputs = _as_list(tensors)
    seeds = _seeds(outputs, grad_tensors, "backward")
    walked = history([o._node for o in outputs] + seeds)
    _check_not_freed(walked.through, "backward")
    if inputs is not None:
        leaves = [t._node for t in _as_list(inputs)]
        targets = [t for t in _as_list(inputs)]
    else:
        leaves = walked.grad_leaves
        targets = [node.leaf() for node in leaves]
    grads = derive(walked, seeds, leaves, create_graph)
    _free(walked.through, retain_graph, create_graph)
    context = _trace_context()
    if context is not None:
        context.backward_calls += 1
    for target, grad in zip(targets, grads):
        if target is None or grad is None:
            continue
        if context is not None:
            context.grad_targets.append(target)
        # a gradient made of constants only (d sum(x)/dx) belongs on its tensor's device too
        _accumulate(target, Tensor._from_node(grad, target.device), create_graph)


def _trace_context():
    """The graphc.compile trace this thread is recording, if any: it wants to know which leaves
    backward() gave gradients to, and whether any backward ran at all."""
    return capture.active()


def _accumulate(target, grad, create_graph):
    if grad.dtype is not target.dtype:
        grad = grad.to(target.dtype)
    if target.grad is None:
        target.grad = grad
    elif create_graph:
        target.grad = target.grad + grad
    else:
        with no_grad():
            target.grad = target.grad + grad


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, materialize_grads=False):
    """The gradients of `outputs` w.r.t. `inputs`, returned (not accumulated)."""
    from graphc.tensor import Tensor
    outputs = _as_list(outputs)
    input_list = _as_list(inputs)
    for number, tensor in enumerate(input_list):
        if not tensor.requires_grad:
            raise RuntimeError(f"One of the differentiated Tensors (input {number}) does not require grad")
    seeds = _seeds(outputs, grad_outputs, "autograd.grad")
    context = _trace_context()
    if context is not None:
        context.backward_calls += 1
    walked = history([o._node for o in outputs] + seeds)
    _check_not_freed(walked.through, "autograd.grad")
    grads = derive(walked, seeds, [t._node for t in input_list], create_graph)
    _free(walked.through, retain_graph, create_graph)
    results = []
    for number, (tensor, value) in enumerate(zip(input_list, grads)):
        if value is None:
            if materialize_grads:
                from graphc.creation import zeros_like
                results.append(zeros_like(tensor))
                continue
            if not allow_unused:
                raise RuntimeError(f"One of the differentiated Tensors (input {number}) appears to not "
                                   "have been used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
            results.append(None)
            continue
        results.append(Tensor._from_node(value, tensor.device))
    return tuple(results)
