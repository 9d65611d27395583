"""Lower scatter_add: zero the output, then add every source element at its index (one thread,
so additions to the same position never race)."""
from __future__ import annotations

from codegen.kernel_ir import Const, Load, Loop, Op, Store, Var
from graphc.lowering import index as ix
from graphc.lowering.loops import LoopKernelBuilder, _nest, c_literal


def build_scatter(graph, kernel_plan, buffer_of, names) -> list:
    node = graph.node(kernel_plan.root)
    index_id, source_id = node.inputs
    axis = node.attrs["axis"]
    out = buffer_of[node.id]
    size = 1
    for s in node.shape:
        size *= s
    zero = [Loop("z", size, [Store(out, Var("z"), Const(c_literal(0, node.dtype)))], simd=True)]
    builder = LoopKernelBuilder(graph, [m for m in kernel_plan.members if m != node.id], buffer_of, names)
    shape = graph.node(source_id).shape
    variables = [builder.fresh("i") for _ in shape]
    builder.push()
    builder.push(variables)
    index = tuple(Var(v) for v in variables)
    value = builder.value(source_id, index)
    position = ix.checked(Op("((int64_t){0})", (builder.value(index_id, index),)), node.shape[axis], node.id)
    target = ix.linear(index[:axis] + (position,) + index[axis + 1:], node.shape)
    builder.emit(Store(out, target, Op("({0} + {1})", (Load(out, target), value))))
    body = builder.pop()
    return zero + builder.pop() + _nest(variables, shape, body, parallel=False, simd_inner=False)
