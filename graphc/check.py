"""Check modes: run a compiled graph one kernel at a time and test what each kernel wrote.

- Divergence check (`GRAPHC_CHECK=1`, or `graphc.compile(fn, check=True)`): after every kernel, the
  value it wrote is compared with the reference interpreter evaluating the kernel's nodes on the
  very inputs the kernel read, so an error is pinned to one kernel and never blamed on rounding that
  came from earlier ones. The first kernel beyond tolerance is reported with its nodes and user
  lines; to name the node inside the fused kernel, its nodes are compiled again each into its own
  buffer and compared one by one.
- NaN/Inf check (`graphc.autograd.set_detect_anomaly(True)` or `GRAPHC_CHECK_NAN=1`): the first node
  that makes a NaN or Inf out of finite inputs is reported with its op and user line, forward or
  backward. Interpreted graphs are checked node by node as they are evaluated.

Both are slow (a copy of every kernel's inputs, the interpreter beside the native code) and meant
for hunting a bug, not for training.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from graphc.autograd import anomaly
from graphc.errors import AnomalyError, CheckFailure
from graphc.lowering.program import kernel_reads
from graphc.ops import table

COMPARE_FROM_ENVIRONMENT = os.environ.get("GRAPHC_CHECK", "").strip().lower() in ("1", "true", "yes", "on")
# relative tolerance per float dtype; absolute tolerance is this times the value's magnitude
RELATIVE_TOLERANCE = {"float32": 2e-3, "float64": 1e-9}
C_TYPES = {"float": np.float32, "double": np.float64, "int64_t": np.int64, "int32_t": np.int32,
           "bool": np.bool_, "uint8_t": np.uint8}


def active() -> bool:
    """Is any check mode on for every compiled graph (environment or anomaly detection)?"""
    return COMPARE_FROM_ENVIRONMENT or anomaly.is_anomaly_enabled()


def wanted(compiled) -> tuple[bool, bool]:
    """(compare, nan) for a run of `compiled` now."""
    return (COMPARE_FROM_ENVIRONMENT or getattr(compiled, "check", False)), anomaly.is_anomaly_enabled()


def describe_node(node) -> str:
    return f"%{node.id} {node.op} at {node.where or '<graphc>'}"


# ---- compiled programs, one kernel at a time --------------------------------------------------------
class KernelStepper:
    """The compiled graph's program built again with an exported `graphc_run_kernel(index, buffers)`."""

    def __init__(self, compiled):
        import runtime
        from codegen import render_program
        from graphc.backends.c import vector_flags
        source = render_program(compiled.program_ir, stepping=True)
        self.program = runtime.compile_c(source, "graphc_entry", blas=compiled.program_ir.uses_blas,
                                         extra_flags=vector_flags())
        self.library = ctypes.CDLL(str(self.program.library_path))
        self.run_kernel = self.library.graphc_run_kernel
        self.run_kernel.argtypes = [ctypes.c_int, ctypes.c_void_p]
        self.run_kernel.restype = None


def run_checked(compiled, inputs: list, outputs: list, compare: bool, nan: bool) -> None:
    """Run `compiled` on arrays in slot order (as `CompiledGraph.run_arrays`), testing each kernel."""
    if getattr(compiled, "_stepper", None) is None:
        compiled._stepper = KernelStepper(compiled)
    stepper = compiled._stepper
    arrays = list(inputs) + list(outputs) + [compiled.arena]
    table_of_pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    plan, program, layout = compiled.plan, compiled.program_ir, compiled.layout
    graph = compiled.located_graph() if hasattr(compiled, "located_graph") else plan.graph
    locate = _value_locator(graph, program, layout, inputs, outputs, compiled.arena)
    for index, kernel in enumerate(plan.kernels):
        external = {source: locate(source).copy() for source in kernel_reads(graph, plan, kernel)}
        stepper.run_kernel(index, ctypes.addressof(table_of_pointers))
        produced = locate(kernel.root)
        if compare:
            reference = evaluate_kernel(graph, kernel, external)
            problem = difference(produced, reference[kernel.root])
            if problem is not None:
                raise _divergence(graph, index, kernel, external, reference, problem)
        if nan and _non_finite(produced) and not any(_non_finite(v) for v in external.values()):
            raise _anomaly(graph, kernel, evaluate_kernel(graph, kernel, external), produced)


def _value_locator(graph, program, layout, inputs, outputs, arena):
    """node id -> the array holding its value (a view; temporaries are views into the arena)."""
    by_node = {}
    for slot, node in enumerate(graph.placeholders()):
        by_node[node.id] = inputs[slot]
    for position, (node_id, _, _) in enumerate(layout.outputs):
        by_node[node_id] = outputs[position]

    def locate(node_id):
        if node_id in by_node:
            return by_node[node_id]
        node = graph.node(node_id)
        buffer = program.buffer(f"t{node_id}")
        dtype = np.dtype(C_TYPES[buffer.ctype])
        count = int(np.prod(node.shape, dtype=np.int64))
        flat = arena[buffer.offset:buffer.offset + count * dtype.itemsize].view(dtype)
        return flat.reshape(node.shape)
    return locate


def evaluate_kernel(graph, kernel, external: dict) -> dict:
    """The reference interpreter's value of every node of a kernel, from the values it read."""
    values = dict(external)
    for member in kernel.members:  # fusion lists members in topological order
        node = graph.node(member)
        arguments = [values[i] for i in node.inputs]
        try:
            values[member] = table.get(node.op).evaluate(arguments, node.attrs, node.shape, node.dtype)
        except (IndexError, ValueError) as error:  # e.g. a computed gather index out of range
            raise CheckFailure(f"GRAPHC_CHECK: {describe_node(node)} cannot be computed from the values "
                               f"its kernel read: {error}") from error
    return values


# ---- comparing ------------------------------------------------------------------------------------
def difference(produced: np.ndarray, reference: np.ndarray) -> str | None:
    """None when `produced` matches `reference` within tolerance, else what differs, in words."""
    produced = np.asarray(produced)
    reference = np.asarray(reference)
    if produced.shape != reference.shape:
        return f"shape {list(produced.shape)} instead of {list(reference.shape)}"
    if reference.dtype.kind not in "fc":
        wrong = produced != reference
        if not wrong.any():
            return None
        index = np.unravel_index(int(np.argmax(wrong)), reference.shape)
        return (f"{int(wrong.sum())} of {reference.size} values differ; first at index {tuple(map(int, index))}: "
                f"compiled {produced[index]!r}, reference {reference[index]!r} (exact match expected)")
    rtol = RELATIVE_TOLERANCE.get(reference.dtype.name, 2e-3)
    finite = np.isfinite(reference)
    scale = max(1.0, float(np.abs(reference[finite]).max())) if finite.any() else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(produced.astype(np.float64) - reference.astype(np.float64))
        bad = ~((error <= rtol * scale + rtol * np.abs(reference)) & finite & np.isfinite(produced))
        # non-finite values must agree exactly (same NaNs, same infinities)
        same_special = ~finite & ((np.isnan(reference) & np.isnan(produced)) | (produced == reference))
        bad &= ~same_special
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(error, nan=np.inf), -1))), reference.shape)
    index = tuple(map(int, index))
    return (f"{int(bad.sum())} of {reference.size} values differ; largest at index {index}: compiled "
            f"{float(produced[index])!r}, reference {float(reference[index])!r} "
            f"(tolerance {rtol:g} relative, {rtol * scale:.3g} absolute)")


def _non_finite(array) -> bool:
    array = np.asarray(array)
    return array.dtype.kind in "fc" and not np.isfinite(array).all()


# ---- reports --------------------------------------------------------------------------------------
def _kernel_title(index, kernel, graph) -> str:
    return f"kernel_{index} ({kernel.kind} kernel writing %{kernel.root} {graph.node(kernel.root).op})"


def _kernel_listing(graph, kernel) -> str:
    return "\n".join(f"    {describe_node(graph.node(m))}" for m in kernel.members)


def _divergence(graph, index, kernel, external, reference, problem) -> CheckFailure:
    culprit = first_divergent_node(graph, kernel, external, reference)
    if culprit is not None:
        node, detail = culprit
        blame = f"first divergent node: {describe_node(node)}"
        if detail != problem:
            blame += f"\n  {detail}"
    else:
        blame = ("each of its nodes is right when compiled alone, so the fault is in how they were fused; "
                 f"the kernel's result is %{kernel.root}")
    return CheckFailure(
        f"GRAPHC_CHECK: {_kernel_title(index, kernel, graph)} differs from the reference interpreter:\n"
        f"  {problem}\n  {blame}\n  the kernel computes:\n{_kernel_listing(graph, kernel)}")


def first_divergent_node(graph, kernel, external: dict, reference: dict):
    """Compile the kernel's nodes again, each into its own buffer, and find the first one whose value
    differs from the reference: (node, what differs) or None."""
    from graphc.backends.c import CompiledGraph
    from graphc.ir.graph import Graph
    isolated = Graph()
    mapping, bindings = {}, {}
    for source, value in external.items():
        node = graph.node(source)
        name = f"v{source}"
        mapping[source] = isolated.placeholder(name, node.shape, node.dtype, node.where)
        bindings[name] = value
    for member in kernel.members:
        node = graph.node(member)
        mapping[member] = isolated.call(node.op, [mapping[i] for i in node.inputs], node.where, **node.attrs)
    isolated.output(*[mapping[m] for m in kernel.members])
    try:
        values = CompiledGraph(isolated)(bindings)
    except Exception as error:  # the isolated nodes do not even compile: name the first one
        return graph.node(kernel.members[0]), f"compiling the kernel's nodes alone failed: {error}"
    for member, value in zip(kernel.members, values):
        problem = difference(value, reference[member])
        if problem is not None:
            return graph.node(member), problem
    return None


def _anomaly(graph, kernel, values: dict, produced) -> AnomalyError:
    for member in kernel.members:
        node = graph.node(member)
        if _non_finite(values[member]) and not any(_non_finite(values[i]) for i in node.inputs):
            return anomaly_error(node, values[member])
    root = graph.node(kernel.root)
    return AnomalyError(f"anomaly detection: the compiled kernel writing {describe_node(root)} produced "
                        f"{_count_non_finite(produced)} from finite inputs, where the reference "
                        "interpreter did not (a compiler bug: please report it with GRAPHC_CHECK=1's output)")


def _count_non_finite(array) -> str:
    array = np.asarray(array)
    kinds = [name for name, test in (("nan", np.isnan), ("inf", np.isinf)) if test(array).any()]
    count = int((~np.isfinite(array)).sum())
    return f"{' and '.join(kinds)} ({count} of {array.size} values)"


def anomaly_error(node, value) -> AnomalyError:
    pass_name = "backward" if "(backward of" in (node.where or "") else "forward"
    return AnomalyError(
        f"anomaly detection: %{node.id} {node.op} produced {_count_non_finite(value)} from finite inputs "
        f"in the {pass_name} pass\n  at {node.where or '<graphc>'}\n"
        "HINT: look for log/sqrt/div of values that can reach 0 or below, exp overflow, or a learning "
        "rate that is too large")


# ---- the interpreter ------------------------------------------------------------------------------
def nan_watch():
    """An `on_node` hook for `interpreter.evaluate` raising at the first node that makes NaN/Inf."""
    non_finite: set = set()

    def on_node(node, value):
        if not _non_finite(value):
            return
        non_finite.add(node.id)
        if node.op != "input" and not any(i in non_finite for i in node.inputs):
            raise anomaly_error(node, value)
    return on_node
