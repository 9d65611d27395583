"""`backward()` and `autograd.grad()`: derive the gradient graph, hand back lazy gradients.

The forward lazy graph is gathered into a `Graph` (values that need no gradient become
placeholders), the autodiff pass adds the backward nodes, and those nodes are turned back into
lazy nodes: gradients stay lazy until used, like every other value.
"""
from __future__ import annotations

from graphc import dtypes
from graphc.autograd.grad_mode import no_grad
from graphc.errors import GraphcError, op_error
from graphc.lazy import (LazyNode, build_graph, check_unchanged, graph_to_lazy, make_node,
                         python_scalar_node)
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


def derive(output_nodes, seed_nodes, wrt_nodes, create_graph: bool) -> list:
    """Lazy gradient nodes of outputs w.r.t. each wrt node (None where no path exists)."""
    build = build_graph(list(output_nodes) + list(seed_nodes),
                        opaque=lambda n: not n.requires_grad or n.op == "input")
    graph = build.graph
    count = len(output_nodes)
    wrt_ids = [build.id_of.get(id(n)) for n in wrt_nodes]
    reachable = [i for i in wrt_ids if i is not None]
    grad_ids = autodiff(graph, graph.outputs[:count], graph.outputs[count:], reachable)
    by_wrt = dict(zip(reachable, grad_ids))
    wanted = [by_wrt.get(i) if i is not None else None for i in wrt_ids]
    present = [g for g in wanted if g is not None]
    _check_saved_values(graph, present, build.node_of)
    lazy = iter(graph_to_lazy(graph, present, build.node_of))
    results = []
    for grad_id, node in zip(wanted, wrt_nodes):
        if grad_id is None:
            results.append(None)
            continue
        value = next(lazy)
        if not create_graph or not value.requires_grad:
            value = _detached(value)
        results.append(value)
    return results


def _check_saved_values(graph, grad_ids, node_of) -> None:
    """Raise now (as PyTorch does at backward) if a value the gradients read was modified in place."""
    needed, stack = set(grad_ids), list(grad_ids)   # one walk up from all gradients together
    predecessors = graph.nx.pred
    while stack:
        for parent in predecessors[stack.pop()]:
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    for node_id in sorted(needed):
        lazy = node_of.get(node_id)
        if lazy is not None and graph.node(node_id).op == "input":
            check_unchanged(lazy)


def _detached(value: LazyNode) -> LazyNode:
    """A node with the same value and no gradient history (fresh, so storages never share it)."""
    return LazyNode("reshape", (value,), value.shape, value.dtype, {"shape": tuple(value.shape)},
                    value.where, False)


def _history(outputs) -> tuple:
    """(leaf nodes the outputs depend on, plus retain_grad nodes; the nodes backward goes through)."""
    seen, found, through, stack = set(), [], [], [o._node for o in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen or not node.requires_grad:
            continue
        seen.add(id(node))
        if node.leaf is not None:
            found.append(node)
        if node.op != "input":
            through.append(node)
            stack.extend(node.inputs)
    return found, through


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
    leaves, through = _history(outputs)
    _check_not_freed(through, "backward")
    if inputs is not None:
        leaves = [t._node for t in _as_list(inputs)]
        targets = [t for t in _as_list(inputs)]
    else:
        targets = [node.leaf() for node in leaves]
    grads = derive([o._node for o in outputs], seeds, leaves, create_graph)
    _free(through, retain_graph, create_graph)
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
    from graphc.compile import tracer
    return tracer.active()


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
    _, through = _history(outputs)
    _check_not_freed(through, "autograd.grad")
    grads = derive([o._node for o in outputs], seeds, [t._node for t in input_list], create_graph)
    _free(through, retain_graph, create_graph)
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
