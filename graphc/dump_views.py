"""The views `graphc dump` prints: each compiler stage of a recorded graph as text, JSON or DOT.

Stages, in pipeline order:

- trace     the graph as the compiler received it (for graphc.compile: forward, backward and
            optimizer update traced into one graph), with what each input and output is bound to
- autograd  the same graph with each node marked forward / backward / update (see `parts`)
- simplify  after dead code, common subexpressions, constant folding and algebraic identities
- fuse      the kernels: which nodes each one computes and the user lines they came from
- memory    the buffer table and the arena plan (peak bytes known before anything runs)
- c         the C source exactly as the C compiler received it
- cuda      the same kernel IR rendered as CUDA C++ (one __global__ per launch) with its launch
            manifest (grid, block, shared bytes, how loops map onto threads), as NVRTC would get it

The JSON of a graph stage is the graph's own `Graph.to_json` form (so `Graph.load` reads it back),
with the stage's extra facts (parts, kernels) under keys `Graph.from_dict` ignores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

PART_NAMES = ("input", "forward", "backward", "update", "other")


def to_json(data) -> str:
    return json.dumps(data, indent=1, default=str)


# ---- facts about a record -------------------------------------------------------------------------
def parts(entry) -> dict | None:
    """node id -> 'input' | 'forward' | 'backward' | 'update' for a graphc.compile trace, else None.

    The trace holds forward, backward and optimizer step in one graph, and backward nodes carry
    the `where` of the forward line they differentiate, so lines cannot tell them apart. The
    graph's outputs can: 'forward' is what the function's returned tensors depend on, 'backward'
    what the new gradients depend on beyond that, 'update' the rest (optimizer steps, buffers).
    A function that returns no tensor has no forward set: its forward nodes count as backward.
    """
    variant = entry.variant
    destinations = getattr(variant, "destinations", None)
    graph = entry.trace
    if destinations is None or len(destinations) != len(graph.outputs):
        return None
    import networkx as nx

    def cone(ids):
        found = set(ids)
        for node_id in ids:
            found |= nx.ancestors(graph.nx, node_id)
        return found

    results = [o for o, d in zip(graph.outputs, destinations) if d[0] == "result"]
    grads = [o for o, d in zip(graph.outputs, destinations)
             if d[0] in ("write", "new") and getattr(d[1], "kind", None) == "grad"]
    forward = cone(results)
    backward = cone(grads) - forward
    labels = {}
    for node in graph.nodes():
        if node.op == "input":
            labels[node.id] = "input"
        elif node.id in forward:
            labels[node.id] = "forward"
        elif node.id in backward:
            labels[node.id] = "backward"
        else:
            labels[node.id] = "update"
    return labels


def bindings(entry) -> tuple[dict, dict] | None:
    """graphc.compile only: (placeholder name -> what it reads, output node id -> where it goes)."""
    variant = entry.variant
    if variant is None:
        return None
    inputs = {}
    for name, source in getattr(variant, "sources", {}).items():
        kind = source[0]
        if kind == "argument":
            inputs[name] = f"tensor argument {source[1]}"
        elif kind == "locator":
            inputs[name] = _locator(source[1], entry.names)
        elif kind == "scalar":
            inputs[name] = "a Python number read at every call (an optimizer option such as lr)"
        else:
            inputs[name] = "random-number seed and offset"
    outputs = {}
    for node_id, destination in zip(entry.trace.outputs, getattr(variant, "destinations", [])):
        kind = destination[0]
        text = f"result {destination[1]}" if kind == "result" else \
            ("writes " if kind == "write" else "new ") + _locator(destination[1], entry.names)
        outputs.setdefault(node_id, []).append(text)
    return inputs, {k: "; ".join(v) for k, v in outputs.items()}


def _locator(locator, names) -> str:
    """'parameter 0.weight', 'gradient of 0.weight', "optimizer state 'exp_avg' of 2.bias"..."""
    kind, owner, key = getattr(locator, "kind", None), getattr(locator, "owner", None), getattr(locator, "key", None)
    if kind in ("tensor", "grad") and id(owner) in names:
        return ("parameter " if kind == "tensor" else "gradient of ") + names[id(owner)]
    if kind == "state" and isinstance(owner, tuple) and id(owner[-1]) in names:
        return f"optimizer state {key!r} of {names[id(owner[-1])]}"
    if kind == "buffer" and id(owner) in names:
        return f"buffer {names[id(owner)]}.{key}"
    try:
        return locator.describe()
    except Exception:  # noqa: BLE001
        return str(kind)


def source_line(where: str) -> str:
    """The user's line of code at 'path:line', stripped ('' when the file cannot be read)."""
    import linecache
    path, _, number = where.rpartition(":")
    return linecache.getline(path, int(number)).strip() if number.isdigit() else ""


def buffer_rows(entry) -> list:
    """(name, role, C type, elements, bytes, arena offset or None, (first, last) kernel or None)."""
    from graphc import dtypes
    itemsize = {d.c_type: d.itemsize for d in dtypes.ALL}
    memory = entry.memory
    rows = []
    for buffer in entry.program_ir.buffers:
        size = buffer.size * itemsize.get(buffer.ctype, 0)
        temp = buffer.role == "temp"
        rows.append((buffer.name, buffer.role, buffer.ctype, buffer.size, size,
                     buffer.offset if temp else None,
                     tuple(memory.lifetimes[buffer.name]) if buffer.name in memory.lifetimes else None))
    return rows


def fused_ops(graph, members) -> str:
    """'permute, matmul, expand x2, add' : the ops in order of first appearance, repeats counted."""
    counts = Counter(graph.node(m).op for m in members)
    seen, words = set(), []
    for member in members:
        op = graph.node(member).op
        if op not in seen:
            seen.add(op)
            words.append(op if counts[op] == 1 else f"{op} x{counts[op]}")
    return ", ".join(words)


def summary_data(entry) -> dict:
    labels = parts(entry)
    rows = buffer_rows(entry)
    roles = Counter(row[1] for row in rows)
    plan, graph = entry.plan, entry.simplified
    nodes = {"trace": len(entry.trace), "simplify": len(graph)}
    if labels is not None:
        nodes.update({p: sum(1 for v in labels.values() if v == p) for p in ("forward", "backward", "update")})
    return {
        "index": entry.index, "origin": entry.origin, "name": entry.name, "reason": entry.reason,
        "kept": entry.kept,
        "called_at": entry.called_at,
        "nodes": nodes,
        "kernels": len(plan.kernels),
        "kernel_kinds": dict(Counter(k.kind for k in plan.kernels)),
        "buffers": {"inputs": roles["input"], "outputs": roles["output"], "temporaries": roles["temp"]},
        "arena_bytes": entry.memory.arena_bytes,
        "compile_seconds": entry.compile_seconds,
        "trace_seconds": entry.trace_seconds,
        "cache": "hit" if entry.cache_hit else "miss",
        "fused": [{"kernel": i, "kind": k.kind, "root": k.root, "contraction": k.contraction,
                   "members": list(k.members), "ops": [graph.node(m).op for m in k.members]}
                  for i, k in enumerate(plan.kernels)],
    }


# ---- summary -------------------------------------------------------------------------------------------
def _bytes(count: int) -> str:
    text = f"{count:,} bytes"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{text} ({count / size:.1f} {unit})"
    return text


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def summary_text(entry) -> str:
    data = summary_data(entry)
    title = f"graph {entry.index}: "
    if entry.origin == "graphc.compile":
        title += f"{entry.name or '?'} (graphc.compile variant)" if entry.kept is not False else \
            f"{entry.name or '?'} (graphc.compile trace that ran once and was not kept: the call " \
            f"changed the state its guards watch)"
    elif entry.origin == "lazy":
        title += "lazily realized graph"
    elif entry.origin == "saved graph":
        title += f"saved graph {entry.name}"
    else:
        title += entry.name or "compiled graph"
    lines = [title]
    if entry.called_at:
        lines.append(f"  called at  {entry.called_at}")
    if entry.reason and entry.origin == "graphc.compile":
        # "guard 'x' changed: <old> -> <new>": the values are long reprs; stats() has them whole
        reason = entry.reason.split(":")[0] if entry.reason.startswith("guard '") else entry.reason
        lines.append(f"  traced     {_short(reason)}")
    elif entry.reason and entry.origin == "lazy":
        lines.append(f"  compiled   {entry.reason}")
    nodes = data["nodes"]
    detail = ""
    if "forward" in nodes:
        detail = f" (forward {nodes['forward']}, backward {nodes['backward']}, update {nodes['update']})"
    lines.append(f"  nodes      trace {nodes['trace']}{detail} -> simplify {nodes['simplify']}")
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(data["kernel_kinds"].items(), key=lambda kv: -kv[1]))
    lines.append(f"  kernels    {data['kernels']}" + (f": {kinds}" if kinds else ""))
    b = data["buffers"]
    lines.append(f"  buffers    {b['inputs']} inputs, {b['outputs']} outputs, {b['temporaries']} temporaries")
    lines.append(f"  arena      {_bytes(data['arena_bytes'])} peak, planned before anything runs")
    compile_line = f"  compile    {data['compile_seconds']:.3f} s, build cache {data['cache']}"
    if data["trace_seconds"] is not None:
        compile_line += f" (trace {data['trace_seconds']:.3f} s)"
    lines.append(compile_line)
    graph = entry.simplified
    width = len(str(max(len(entry.plan.kernels) - 1, 0)))
    for item, kernel in zip(data["fused"], entry.plan.kernels):
        lines.append(f"    kernel {item['kernel']:<{width}} {kernel.kind:<9} -> %{kernel.root:<4} "
                     f"{fused_ops(graph, kernel.members)}")
    return "\n".join(lines)


def summaries_text(entries) -> str:
    if not entries:
        return "no graph was compiled (graphc compiles a lazily realized graph the second time its " \
               "structure recurs, GRAPHC_COMPILE_AFTER=0: the first; graphc.compile compiles each variant)"
    return "\n\n".join(summary_text(e) for e in entries)


# ---- stages --------------------------------------------------------------------------------------------
def render(entry, stage: str, fmt: str = "text") -> str:
    """One stage of one recorded graph as 'text', 'json' or 'dot'."""
    if stage == "summary":
        return to_json(summary_data(entry)) if fmt == "json" else summary_text(entry)
    if fmt == "dot" and stage not in ("trace", "autograd", "simplify", "fuse"):
        return f"// graph {entry.index}: the {stage} stage is not a graph; use --format text or json"
    return _STAGES[stage](entry, fmt)


def _header(entry, stage, text) -> str:
    return f"=== graph {entry.index} | {stage} | {text} ==="


def _trace(entry, fmt):
    graph = entry.trace
    if fmt == "json":
        return graph.to_json()
    if fmt == "dot":
        return graph.to_dot()
    lines = [_header(entry, "trace", f"{len(graph)} nodes, the graph as the compiler received it"),
             graph.table()]
    bound = bindings(entry)
    if bound is not None:
        inputs, outputs = bound
        lines.append("inputs:")
        lines.extend(f"  {name:<6} {text}" for name, text in inputs.items())
        lines.append("outputs:")
        lines.extend(f"  %{node_id:<5} {text}" for node_id, text in outputs.items())
    return "\n".join(lines)


def _autograd(entry, fmt):
    graph, labels = entry.trace, parts(entry)
    if fmt == "json":
        data = graph.to_dict()
        data["parts"] = {str(k): v for k, v in (labels or {}).items()}
        return to_json(data)
    if fmt == "dot":
        clusters = {}
        for part in ("forward", "backward", "update"):
            members = [i for i, p in (labels or {}).items() if p == part]
            if members:
                clusters[part] = members
        return graph.to_dot(clusters=clusters)
    if labels is None:
        return "\n".join([
            _header(entry, "autograd", "not separable"),
            "this graph was not traced by graphc.compile, so graphc cannot tell which nodes backward() "
            "added (backward nodes carry the user line of the forward op they differentiate); "
            "see the trace stage for the whole graph"])
    counts = Counter(labels.values())
    rows = graph.table().split("\n")
    width = max(len(p) for p in PART_NAMES)
    body = ["part".ljust(width) + "  " + rows[0]]
    for node, row in zip(graph.nodes(), rows[1:]):
        body.append(labels[node.id].ljust(width) + "  " + row)
    body.append(rows[-1])
    return "\n".join([
        _header(entry, "autograd", f"forward {counts['forward']}, backward {counts['backward']}, "
                                   f"update {counts['update']} nodes"),
        "each node of the traced graph marked: forward = what the returned tensors need,\n"
        "backward = what the new gradients need beyond that, update = the rest (optimizer step)",
        *body])


def _simplify(entry, fmt):
    graph = entry.simplified
    if fmt == "json":
        return graph.to_json()
    if fmt == "dot":
        return graph.to_dot()
    return "\n".join([_header(entry, "simplify", f"{len(entry.trace)} -> {len(graph)} nodes after dead code, "
                                                 "CSE, constant folding and algebraic identities"),
                      graph.table()])


def _kernel_clusters(entry) -> dict:
    """label -> node ids, each node in the first kernel that computes it (DOT clusters cannot overlap)."""
    graph, clusters, placed = entry.simplified, {}, set()
    for index, kernel in enumerate(entry.plan.kernels):
        members = [m for m in kernel.members if m not in placed]
        placed.update(members)
        clusters[f"kernel {index} [{kernel.kind}] -> %{kernel.root} {graph.node(kernel.root).op}"] = members
    return clusters


def _fuse(entry, fmt):
    plan, graph = entry.plan, entry.simplified
    if fmt == "json":
        data = graph.to_dict()
        data["materialized"] = sorted(plan.materialized)
        data["kernels"] = [{"index": i, "kind": k.kind, "root": k.root, "contraction": k.contraction,
                            "members": list(k.members), "provenance": list(kernel_ir.comment),
                            "buffers": list(kernel_ir.buffers)}
                           for i, (k, kernel_ir) in enumerate(zip(plan.kernels, entry.program_ir.kernels))]
        return to_json(data)
    if fmt == "dot":
        return graph.to_dot(clusters=_kernel_clusters(entry))
    kernels_of: dict = {}
    for index, kernel in enumerate(plan.kernels):
        for member in kernel.members:
            kernels_of.setdefault(member, []).append(index)
    lines = [_header(entry, "fuse", f"{len(plan.kernels)} kernels from {len(graph)} nodes")]
    for index, (kernel, kernel_ir) in enumerate(zip(plan.kernels, entry.program_ir.kernels)):
        root = graph.node(kernel.root)
        epilogue = f", epilogue of %{kernel.contraction}" if kernel.contraction is not None else ""
        lines.append(f"kernel {index} [{kernel.kind}{epilogue}] writes %{kernel.root} "
                     f"{root.dtype.name}{list(root.shape)}; buffers {' '.join(kernel_ir.buffers)}")
        rows = []
        for member in kernel.members:
            node = graph.node(member)
            others = [k for k in kernels_of[member] if k != index]
            note = f"(also in kernel{'s' if len(others) > 1 else ''} {', '.join(map(str, others))})" if others else ""
            rows.append((f"%{member}", node.op, f"{node.dtype.name}{list(node.shape)}",
                         " ".join(f"%{i}" for i in node.inputs), node.where, note))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))] if rows else []
        for row in rows:
            lines.append("    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for where in dict.fromkeys(graph.node(m).where for m in kernel.members if graph.node(m).where):
            lines.append(f"  from {where}  {source_line(where)}".rstrip())
    return "\n".join(lines)


def _memory(entry, fmt):
    rows = buffer_rows(entry)
    memory = entry.memory
    if fmt == "json":
        return to_json({"format": "graphc-memory-plan-1", "arena_bytes": memory.arena_bytes,
                        "buffers": [{"name": r[0], "role": r[1], "ctype": r[2], "elements": r[3],
                                     "bytes": r[4], "offset": r[5],
                                     "live_kernels": list(r[6]) if r[6] else None} for r in rows]})
    table = [("buffer", "role", "type", "elements", "bytes", "arena offset", "live in kernels")]
    for name, role, ctype, elements, size, offset, live in rows:
        table.append((name, role, ctype, str(elements), f"{size:,}", "" if offset is None else f"{offset:,}",
                      "" if live is None else f"{live[0]}..{live[1]}"))
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    temps = [r for r in rows if r[1] == "temp"]
    lines = [_header(entry, "memory", f"arena {_bytes(memory.arena_bytes)} peak for {len(temps)} "
                                      f"temporaries ({_bytes(sum(r[4] for r in temps))} unshared)")]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.append("inputs and outputs are the caller's arrays; temporaries share the arena where "
                 "their lifetimes do not overlap")
    return "\n".join(lines)


def _c(entry, fmt):
    if fmt == "json":
        return to_json({"format": "graphc-source-1", "language": "c", "entry": "graphc_entry",
                        "uses_blas": bool(entry.program_ir.uses_blas), "source": entry.source})
    header = _header(entry, "c", f"{len(entry.source.splitlines())} lines, as given to the C compiler")
    return "\n".join([f"/* {header} */", entry.source.rstrip("\n")])   # a comment: the text stays C


def cuda_source(entry) -> tuple[str, list]:
    """The CUDA rendering of the recorded graph's kernel IR: (source, launches). Rendering needs no
    GPU, so every graph has one, whichever backend ran it."""
    from codegen import render_cuda_program
    if getattr(entry, "_cuda", None) is None:
        entry._cuda = render_cuda_program(entry.program_ir)
    return entry._cuda


def _cuda(entry, fmt):
    source, launches = cuda_source(entry)
    if fmt == "json":
        return to_json({"format": "graphc-source-1", "language": "cuda", "source": source,
                        "launches": [{"name": l.name, "params": list(l.params), "grid": list(l.grid),
                                      "block": list(l.block), "shared_bytes": l.shared_bytes,
                                      "kernel": l.kernel, "mapping": l.mapping} for l in launches]})
    header = _header(entry, "cuda", f"{len(source.splitlines())} lines, {len(launches)} launches, as given to NVRTC")
    manifest = [f" *   {l.name}<<<{l.grid}, {l.block}, {l.shared_bytes}>>>({', '.join(l.params)})"
                for l in launches]
    return "\n".join([f"/* {header}", " * launches, in order:", *manifest, " */", source.rstrip("\n")])


_STAGES = {"trace": _trace, "autograd": _autograd, "simplify": _simplify, "fuse": _fuse,
           "memory": _memory, "c": _c, "cuda": _cuda}


# ---- Graphviz -------------------------------------------------------------------------------------------
def dot_to_svg(path: str) -> str | None:
    """Render `path` (.dot) to .svg next to it with Graphviz `dot`, when it is installed."""
    program = shutil.which("dot")
    if program is None:
        return None
    svg = os.path.splitext(path)[0] + ".svg"
    try:
        subprocess.run([program, "-Tsvg", path, "-o", svg], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"graphc dump: dot could not draw {path}: {error}", file=sys.stderr)
        return None
    return svg
