"""`graphc dump`: capture every graph the C backend compiles and show it after each stage.

Capture is off unless something turns it on (`graphc dump SCRIPT.py`, `GRAPHC_DUMP=DIR`, or
`graphc.dump.enable()`); while it is off the one hook in `CompiledGraph.__init__` tests a flag and
does nothing else. While it is on, each compiled graph leaves a `Record`: the graph as given, the
fusion plan (whose graph is the simplified one), the memory plan, the kernel IR, the C source,
compile seconds and cache hit or miss, and, for `graphc.compile` variants, which function it came
from and how each graph input and output is bound.

    GRAPHC_DUMP=dump python train.py      # at exit: dump/summary.txt, dump/graph0.trace.txt, ...

The views of each stage (text, JSON, DOT) are in `graphc.dump_views`.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from dataclasses import dataclass, field

CAPTURE = False          # read by CompiledGraph.__init__: record only when True
STAGES = ("trace", "autograd", "simplify", "fuse", "memory", "c", "cuda")
GRAPH_STAGES = ("trace", "autograd", "simplify", "fuse")   # stages that are graphs (JSON loads, DOT draws)
_records: list = []
_lock = threading.Lock()
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Record:
    """Everything `graphc dump` shows about one compiled graph."""
    index: int
    origin: str                 # 'graphc.compile' | 'lazy' | 'saved graph' | 'direct'
    trace: object               # the Graph as the compiler received it (a copy)
    plan: object                # FusionPlan; plan.graph is the simplified graph
    layout: object              # Layout; layout.memory is the MemoryPlan
    program_ir: object          # codegen Program (buffers, kernels with provenance comments)
    source: str                 # the C source handed to the C compiler
    compile_seconds: float
    cache_hit: bool
    name: str = ""              # the compiled function's name, or what was realized
    reason: str = ""            # why it was traced (graphc.compile) or compiled
    called_at: str = ""         # the user's file:line that caused the compile
    variant: object = None      # graphc.compile: the Variant (sources, destinations, seconds)
    names: dict = field(default_factory=dict)   # id(parameter or module) -> its name in the model
    function: object = None     # graphc.compile: the CompiledFunction

    @property
    def kept(self):
        """graphc.compile: whether the variant is replayed (False: it ran once; the call changed
        the state its guards watch, so the next call traced again). None for other graphs."""
        variants = getattr(self.function, "variants", None)
        return None if variants is None else any(v is self.variant for v in variants)

    @property
    def simplified(self):
        return self.plan.graph

    @property
    def memory(self):
        return self.layout.memory

    @property
    def trace_seconds(self):
        return getattr(self.variant, "trace_seconds", None)


# ---- capture ---------------------------------------------------------------------------------------
def enable() -> None:
    """Start recording every graph compiled from now on."""
    global CAPTURE
    CAPTURE = True


def disable() -> None:
    global CAPTURE
    CAPTURE = False


def records() -> list:
    """The graphs recorded so far, in compile order."""
    with _lock:
        return list(_records)


def clear() -> None:
    with _lock:
        _records.clear()


def record(compiled, graph) -> Record | None:
    """Called by `CompiledGraph.__init__` (only while CAPTURE is on) with the graph it was given."""
    if not CAPTURE:
        return None
    origin, name, reason, called_at, variant, names, function = _context(sys._getframe(1))
    with _lock:
        entry = Record(len(_records), origin, graph.copy(), compiled.plan, compiled.layout,
                       compiled.program_ir, compiled.source, compiled.compile_seconds,
                       bool(compiled.cache_hit), name, reason, called_at, variant, names, function)
        _records.append(entry)
    return entry


def _context(frame):
    """Who compiled: a graphc.compile trace (its function, reason, Variant) or a lazy realize.

    Read from the caller's frames, so neither caller needs to know about dumping; when their code
    changes shape the record just carries less context.
    """
    origin, name, reason, variant, called_at, names, function = "direct", "", "", None, "", {}, None
    depth = 0
    while frame is not None and depth < 40:
        code = frame.f_code
        module = frame.f_globals.get("__name__", "")
        if origin == "direct" and code.co_name == "_trace_and_run" and module == "graphc.compile.function":
            local = frame.f_locals
            origin, variant, function = "graphc.compile", local.get("variant"), local.get("self")
            name = getattr(function, "__name__", "")
            reason = str(local.get("reason", ""))
            names = _model_names(local.get("modules") or ())
        elif origin == "direct" and code.co_name == "run" and module == "graphc.backend":
            origin, name = "lazy", "realize"
            runs = frame.f_globals.get("_compile_after", 1)
            reason = "compiled at its first realize (GRAPHC_COMPILE_AFTER=0)" if runs == 0 else \
                f"its structure was realized again after {runs} interpreted run(s), so it was compiled"
        filename = os.path.abspath(code.co_filename)
        if not called_at and not filename.startswith(_PACKAGE_DIR + os.sep) and \
                module not in ("runpy", "graphc.cli") and "importlib" not in filename:
            called_at = f"{_short_path(filename)}:{frame.f_lineno}"
        frame, depth = frame.f_back, depth + 1
    return origin, name, reason, called_at, variant, names, function


def _model_names(modules) -> dict:
    """id(parameter) and id(module) -> dotted name, for 'parameter 0.weight' in the dump."""
    names = {}
    for module in modules:
        try:
            for dotted, parameter in module.named_parameters():
                names.setdefault(id(parameter), dotted)
            for dotted, sub in module.named_modules():
                names.setdefault(id(sub), dotted or type(sub).__name__)
        except Exception:  # noqa: BLE001 -- names are a nicety
            pass
    return names


def _short_path(path: str) -> str:
    """As graphc's `where` column writes files: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


# ---- running things under capture --------------------------------------------------------------------
def run_script(path: str, arguments=()) -> int:
    """Run a Python script as `__main__` with capture on; return its exit status.

    The script's own standard output goes to standard error, so the dump alone is on stdout.
    """
    import contextlib
    import runpy
    import traceback
    enable()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path] + list(arguments)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    status = 0
    try:
        with contextlib.redirect_stdout(sys.stderr):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if not isinstance(code, (int, type(None))):
            print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 -- the script's error is reported, the dump still shown
        traceback.print_exc()
        status = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        sys.stdout.flush()
    return status


def compile_saved_graph(path: str) -> Record:
    """Load a graph written by `Graph.save` and compile it with capture on."""
    from graphc.backends.c import CompiledGraph
    from graphc.ir.graph import Graph
    graph = Graph.load(path)
    enable()
    program = CompiledGraph(graph)
    entry = records()[-1]
    entry.origin, entry.name = "saved graph", os.path.basename(path)
    entry.reason, entry.called_at = f"loaded from {path}", ""
    del program
    return entry


# ---- files -------------------------------------------------------------------------------------------
def write_dump(directory, entries=None, stages=STAGES, formats=("text", "json", "dot")) -> list:
    """Write one file per graph, stage and format under `directory`; return the paths written.

    summary.txt lists every graph; graphN.STAGE.txt/.json/.dot per stage (graphN.c for the C
    source, graphN.cu for the CUDA source), and graphN.STAGE.svg next to each .dot when Graphviz's `dot` is installed.
    With sources written, build.sh builds them as the runtime does (see `build_script`).
    """
    from graphc import dump_views as views
    entries = records() if entries is None else entries
    os.makedirs(directory, exist_ok=True)
    written = []

    def put(name, text):
        path = os.path.join(directory, name)
        with open(path, "w") as file:
            file.write(text if text.endswith("\n") else text + "\n")
        written.append(path)
        return path

    sources = []   # (entry, file name) of each source written, for build.sh
    put("summary.txt", views.summaries_text(entries))
    if "json" in formats:
        put("summary.json", views.to_json({"format": "graphc-dump-1",
                                           "graphs": [views.summary_data(e) for e in entries]}))
    for entry in entries:
        base = f"graph{entry.index}"
        for stage in stages:
            for fmt in formats:
                if fmt == "dot" and stage not in GRAPH_STAGES:
                    continue   # memory and C are not graphs
                if stage == "c" and fmt == "text":
                    put(f"{base}.c", entry.source)
                    sources.append((entry, f"{base}.c"))
                    continue
                if stage == "cuda" and fmt == "text":
                    put(f"{base}.cu", views.cuda_source(entry)[0])
                    sources.append((entry, f"{base}.cu"))
                    continue
                extension = {"text": "txt", "json": "json", "dot": "dot"}[fmt]
                path = put(f"{base}.{stage}.{extension}", views.render(entry, stage, fmt))
                if fmt == "dot":
                    svg = views.dot_to_svg(path)
                    if svg:
                        written.append(svg)
    if sources:
        path = put("build.sh", build_script(sources))
        os.chmod(path, 0o755)
    return written


def build_command(entry, source_path) -> list:
    """The command that builds a dumped source as the runtime built it: a .c file into the shared
    library beside it (`runtime.c_build_command`, with the C backend's options: the include
    directory of cblas.h and OpenBLAS's link flags when the program calls BLAS), a .cu file into
    PTX with nvcc (`runtime.cuda_build_command`; graphc compiles it with NVRTC, same options)."""
    import runtime
    source_path = str(source_path)
    stem, extension = os.path.splitext(source_path)
    if extension == ".c":
        from graphc.backends.c import compile_options
        return runtime.c_build_command(source_path, stem + ".so", **compile_options(entry.program_ir))
    from graphc import dump_views as views
    from graphc.backends.cuda import ptxas_flags
    return runtime.cuda_build_command(source_path, stem + ".ptx", extra_flags=ptxas_flags(views.cuda_source(entry)[0]))


def build_script(sources) -> str:
    """build.sh: from its own directory, the build command of each (entry, file name) source."""
    import shlex
    c_lines = [shlex.join(build_command(entry, name)) for entry, name in sources if name.endswith(".c")]
    cuda_commands = [build_command(entry, name) for entry, name in sources if name.endswith(".cu")]
    lines = ["#!/bin/sh",
             "# Builds the sources graphc dump wrote here as graphc's runtime builds them: graphN.c into",
             "# graphN.so, whose entry point is void graphc_entry(void **buffers); graphN.cu into PTX with",
             "# nvcc (graphc compiles CUDA with NVRTC, same options; -arch=sm_90 makes a cubin for an H100).",
             "set -e",
             'cd "$(dirname "$0")"', *c_lines]
    if cuda_commands:
        nvcc = shlex.quote(cuda_commands[0][0])
        lines += [f"if command -v {nvcc} >/dev/null 2>&1; then",
                  *("  " + shlex.join(command) for command in cuda_commands),
                  "else",
                  "  echo " + shlex.quote(f"build.sh: {cuda_commands[0][0]} was not found; the .cu files are not built")
                  + " >&2",
                  "fi"]
    return "\n".join(lines)


def _write_at_exit() -> None:
    directory = os.environ.get("GRAPHC_DUMP")
    if not directory:
        return
    try:
        written = write_dump(directory)
        print(f"graphc: GRAPHC_DUMP wrote {len(records())} compiled graphs ({len(written)} files) "
              f"to {directory}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 -- never turn a finished program into a crash at exit
        print(f"graphc: GRAPHC_DUMP={directory}: could not write the dump: {error}", file=sys.stderr)


if os.environ.get("GRAPHC_DUMP"):
    enable()
    atexit.register(_write_at_exit)
