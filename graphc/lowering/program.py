"""Lower a fused graph to one codegen `Program`: buffers, memory plan, one kernel per KernelPlan.

The program's buffer table: the graph's placeholders (in `graph.placeholders()` order), then one
buffer per distinct computed output, then the arena holding every temporary.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from codegen.kernel_ir import Buffer, Gemm, Kernel, Load, Program, Store
from graphc.lowering.contraction import build_conv, build_matmul, cols_elements
from graphc.lowering.loops import build_loop_kernel
from graphc.lowering import scatter
from graphc.passes.fuse import FusionPlan
from graphc.passes.memory import MemoryPlan, plan_memory


@dataclass
class Layout:
    """How the runtime binds arrays to the program's buffer table."""
    input_names: list        # placeholder names, slot order
    outputs: list            # per distinct output buffer: (node id, shape, numpy dtype)
    results: list            # per graph output: ("input", name) or ("output", position)
    arena_bytes: int
    memory: MemoryPlan
    aliased: dict = None     # output position -> input name it is written over in place


def lower_program(plan: FusionPlan, name: str, aliases: dict | None = None,
                  redzone: int = 0) -> tuple[Program, Layout]:
    """`aliases` maps an output's position in graph.outputs to the name of the placeholder whose
    memory it may overwrite (a parameter updated in place); only hazard-free ones are kept.
    `redzone` > 0 (sanitizer builds) gives every temporary its own arena bytes with gaps between."""
    graph = plan.graph
    buffers, buffer_of = [], {}
    placeholders = graph.placeholders()
    for slot, node in enumerate(placeholders):
        buffer = Buffer(f"in{slot}", node.dtype.c_type, _numel(node.shape), "input", slot)
        buffers.append(buffer)
        buffer_of[node.id] = buffer.name
    output_ids, output_positions = [], {}
    for node_id in graph.outputs:
        if graph.node(node_id).op != "input" and node_id not in output_positions:
            output_positions[node_id] = len(output_ids)
            output_ids.append(node_id)
    for position, node_id in enumerate(output_ids):
        node = graph.node(node_id)
        buffer = Buffer(f"out{position}", node.dtype.c_type, _numel(node.shape), "output",
                        len(placeholders) + position)
        buffers.append(buffer)
        buffer_of[node_id] = buffer.name
    arena_slot = len(placeholders) + len(output_ids)

    # an epilogue kernel's contraction writes straight into the kernel's output buffer
    for kernel in plan.kernels:
        if kernel.contraction is not None and kernel.root in buffer_of:
            buffer_of[kernel.contraction] = buffer_of[kernel.root]

    # temporaries and their lifetimes (kernel indices in schedule order)
    sizes, lifetimes = {}, {}
    scratch_of, columns_scratch, reused_columns = {}, {}, set()
    for index, kernel in enumerate(plan.kernels):
        if kernel.root not in buffer_of:
            node = graph.node(kernel.root)
            key = f"t{kernel.root}"
            sizes[key] = _numel(node.shape) * node.dtype.itemsize
            lifetimes[key] = [index, index]
            buffer_of[kernel.root] = key
            if kernel.contraction is not None:
                buffer_of[kernel.contraction] = key
        if kernel.kind.startswith("conv2d"):
            node = graph.node(kernel.contraction_node)
            columns = _columns_key(graph, node)
            if columns in columns_scratch:
                # the backward's weight gradient unfolds the same input as the forward did:
                # keep the forward's columns and read them again
                key = columns_scratch[columns]
                lifetimes[key][1] = index
                reused_columns.add(index)
            else:
                key = f"scratch{index}"
                sizes[key] = _conv_scratch(graph, node) * node.dtype.itemsize
                lifetimes[key] = [index, index]
                if columns is not None:
                    columns_scratch[columns] = key
            scratch_of[index] = key
    last_read = {}   # node id -> the last kernel (schedule index) reading it
    for index, kernel in enumerate(plan.kernels):
        for source in kernel_reads(graph, plan, kernel):
            last_read[source] = index
            key = buffer_of.get(source)
            if key in lifetimes:
                lifetimes[key][1] = max(lifetimes[key][1], index)
    memory = plan_memory(sizes, {k: tuple(v) for k, v in lifetimes.items()}, redzone)
    for key, size in sizes.items():
        if key.startswith("t"):
            dtype = graph.node(int(key[1:])).dtype.c_type
        else:
            dtype = graph.node(plan.kernels[int(key[len("scratch"):])].contraction_node).dtype.c_type
        buffers.append(Buffer(key, dtype, size, "temp", offset=memory.offsets[key]))

    names: dict = {}
    buffer_order = {b.name: i for i, b in enumerate(buffers)}
    kernels, uses_blas, uses_random, checks_indices = [], False, False, False
    for index, kernel in enumerate(plan.kernels):
        body = []
        if kernel.kind == "matmul":
            statements, blas = build_matmul(graph, kernel, buffer_of, names)
            body += statements
            uses_blas |= blas
        elif kernel.kind.startswith("conv2d"):
            body += build_conv(graph, kernel, buffer_of, scratch_of[index],
                               columns_ready=index in reused_columns)
            uses_blas = True
        elif kernel.kind == "scatter":
            body += scatter.build_scatter(graph, kernel, buffer_of, names)
        if kernel.kind == "pointwise" or kernel.kind == "reduce" or kernel.contraction is not None:
            body += build_loop_kernel(graph, kernel, buffer_of, names)
        uses_random |= any(graph.node(m).op == "rand" for m in kernel.members)
        checks_indices |= any(graph.node(m).op in ("gather", "scatter_add") for m in kernel.members)
        reads, writes = buffer_accesses(body)
        touched = sorted(reads | writes, key=buffer_order.__getitem__)
        kernels.append(Kernel(f"kernel_{index}", body, _provenance(graph, kernel), touched,
                              work=_work(graph, kernel)))
    program = Program(name, buffers, kernels, arena_slot, memory.arena_bytes, uses_blas, uses_random,
                      comment=[f"{len(graph)} graph nodes, {len(kernels)} kernels, "
                               f"arena {memory.arena_bytes} bytes"], checks_indices=checks_indices)
    results = []
    for node_id in graph.outputs:
        node = graph.node(node_id)
        results.append(("input", node.name) if node.op == "input" else ("output", output_positions[node_id]))
    outputs = [(i, graph.node(i).shape, graph.node(i).dtype.numpy) for i in output_ids]
    placeholder_ids = {n.name: n.id for n in placeholders}
    aliased = _safe_aliases(graph, plan, program, aliases or {}, output_ids, buffer_of, last_read, placeholder_ids)
    for position, input_name in aliased.items():
        program.buffer(f"out{position}").restrict = False
        program.buffer(buffer_of[placeholder_ids[input_name]]).restrict = False
    layout = Layout([n.name for n in placeholders], outputs, results, memory.arena_bytes, memory, aliased)
    return program, layout


def _safe_aliases(graph, plan, program, aliases, output_ids, buffer_of, last_read, placeholder_ids) -> dict:
    """Aliases that cannot change a result: every read of the old value happens in kernels up to the
    writer, and the writer reads it only at the element it is writing. `last_read`: node id -> the
    last kernel reading it; `placeholder_ids`: placeholder name -> node id."""
    safe = {}
    writer_of = {k.root: index for index, k in enumerate(plan.kernels)}
    position_of = {node_id: position for position, node_id in enumerate(output_ids)}
    for graph_position, input_name in aliases.items():
        node_id = graph.outputs[graph_position]
        if node_id not in position_of or input_name not in placeholder_ids or node_id not in writer_of:
            continue
        source = placeholder_ids[input_name]
        writer = writer_of[node_id]
        kernel = plan.kernels[writer]
        if kernel.kind not in ("pointwise",) or graph.node(node_id).shape != graph.node(source).shape:
            continue
        if last_read.get(source, -1) > writer:
            continue
        loads, stores = _accesses(program.kernels[writer].body, buffer_of[source], buffer_of[node_id])
        if len(stores) == 1 and all(index == stores[0] for index in loads):
            safe[position_of[node_id]] = input_name
    return safe


def _accesses(statements, input_buffer, output_buffer):
    """Index expressions of the loads from input_buffer and the stores to output_buffer."""
    from codegen.kernel_ir import Accumulate, Declare, If, Let, Load, Loop, Op, Store
    loads, stores = [], []

    def visit_expr(expr):
        if isinstance(expr, Load):
            if expr.buffer == input_buffer:
                loads.append(expr.index)
            visit_expr(expr.index)
        elif isinstance(expr, Op):
            for argument in expr.args:
                visit_expr(argument)

    def visit(statement):
        if isinstance(statement, Loop):
            for inner in statement.body:
                visit(inner)
        elif isinstance(statement, If):
            for inner in statement.body + statement.orelse:
                visit(inner)
        elif isinstance(statement, Store):
            if statement.buffer == output_buffer:
                stores.append(statement.index)
            visit_expr(statement.value)
        elif isinstance(statement, (Let, Accumulate)):
            visit_expr(statement.value)
    for statement in statements:
        visit(statement)
    return loads, list(dict.fromkeys(stores))


def _numel(shape) -> int:
    size = 1
    for s in shape:
        size *= s
    return size


def _conv_scratch(graph, node) -> int:
    if node.op == "conv2d":
        x, w = (graph.node(i).shape for i in node.inputs)
    elif node.op == "conv2d_weight_grad":
        x, w = graph.node(node.inputs[0]).shape, node.attrs["weight_shape"]
    else:
        x, w = node.attrs["input_shape"], graph.node(node.inputs[1]).shape
    return cols_elements(node.attrs, x, w)


def _columns_key(graph, node):
    """What a convolution's im2col columns depend on (None when it unfolds no input)."""
    if node.op not in ("conv2d", "conv2d_weight_grad"):
        return None
    weight_shape = graph.node(node.inputs[1]).shape if node.op == "conv2d" else tuple(node.attrs["weight_shape"])
    attrs = tuple((k, node.attrs[k]) for k in ("stride", "padding", "dilation", "groups"))
    return (node.inputs[0], attrs, tuple(weight_shape))


def kernel_reads(graph, plan, kernel) -> set:
    members = set(kernel.members)
    found = set()
    for member in members:
        for source in graph.node(member).inputs:
            if source not in members:
                found.add(source)
    return found


def buffer_accesses(statements) -> tuple[set, set]:
    """(names of the buffers read, names of the buffers written) by kernel-IR statements: the
    loads, stores and matrix products anywhere in them (loop bounds, conditions, masks and index
    expressions included), found by walking the IR. A product over an empty matrix touches no
    buffer; one with K = 0 only writes C (it fills it with zeros)."""
    reads, writes = set(), set()
    pending = list(statements)
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is Load:
            reads.add(item.buffer)
        elif kind is Store:
            writes.add(item.buffer)
        elif kind is Gemm:
            if item.m and item.n:
                writes.add(item.c)
                if item.k:
                    reads.update((item.a, item.b))
                    if item.sum_batches and item.batch > 1:
                        reads.add(item.c)
            continue
        elif kind is list or kind is tuple:
            pending.extend(item)
            continue
        fields = _FIELDS.get(kind)
        if fields is None:
            fields = _FIELDS[kind] = (tuple(f.name for f in dataclasses.fields(kind))
                                      if dataclasses.is_dataclass(kind) else ())
        for name in fields:
            pending.append(getattr(item, name))
    return reads, writes


_FIELDS: dict = {}   # kernel-IR class -> the names of its fields (none for str, int, None)


def _provenance(graph, kernel) -> list:
    """Comment lines: the nodes a kernel computes and the user lines they came from."""
    lines = [f"{kernel.kind} kernel writing %{kernel.root}"
             + (f" (epilogue of %{kernel.contraction} fused)" if kernel.contraction is not None else "")]
    by_line: dict = {}
    for member in kernel.members:
        node = graph.node(member)
        by_line.setdefault(node.where or "<graphc>", []).append(f"%{member} {node.op}")
    for where, ops in by_line.items():
        lines.append(f"{where}: {', '.join(ops)}")
    return lines


def _work(graph, kernel) -> int:
    node = graph.node(kernel.root)
    work = _numel(node.shape)
    for member in kernel.members:
        member_node = graph.node(member)
        if member_node.op in ("sum", "max", "prod"):
            work = max(work, _numel(graph.node(member_node.inputs[0]).shape))
    return work
