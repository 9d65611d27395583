"""The `graphc` command (also `python -m graphc`): see what the compiler did, manage the build cache.

    graphc dump train.py                     summary, traced graph and kernels of every compiled graph
    graphc dump train.py --stage all -- --epochs 3
    graphc dump graph.json --stage c         a graph saved with Graph.save
    graphc dump train.py --out dump/         one file per graph, stage and format
    graphc dump --cache                      the build cache: entries, sizes, ages
    graphc cache clear                       empty the build cache
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

STAGE_CHOICES = ("summary", "trace", "autograd", "simplify", "fuse", "memory", "c", "cuda", "all")
DEFAULT_STAGES = ("summary", "trace", "fuse")
FORMATS = ("text", "json", "dot")

MAIN_EPILOG = """\
examples:
  graphc dump train.py                   run train.py; show every graph it compiled
  graphc dump train.py --stage all       every stage: trace autograd simplify fuse memory c cuda
  graphc dump graph.json --stage fuse    a graph written by Graph.save
  graphc dump --cache                    list the build cache
  graphc cache clear                     empty the build cache
  GRAPHC_DUMP=dump/ python train.py      any program: write the full dump to dump/ at exit
"""

DUMP_EPILOG = """\
stages (pipeline order):
  summary   per graph: nodes per stage, kernels, buffers, arena peak bytes, compile time,
            build cache hit/miss, the ops each kernel fused
  trace     the graph as traced (graphc.compile: forward + backward + optimizer step in one graph)
  autograd  the traced graph with each node marked forward / backward / update
  simplify  after dead code, CSE, constant folding, algebraic identities
  fuse      kernels: the nodes each computes and the user lines they came from
  memory    buffers and the arena plan (peak bytes, known before anything runs)
  c         the generated C source, as the C compiler received it
  cuda      the CUDA source (one __global__ per launch) and its launch manifest, as NVRTC gets it
  all       all of the above
default: summary, trace and fuse on the terminal; every stage with --out.

The script's own output goes to stderr, so stdout carries only the dump.
Lazily realized graphs are compiled the second time their structure recurs
(GRAPHC_COMPILE_AFTER=0: at once); graphc.compile compiles each traced variant.

examples:
  graphc dump train.py
  graphc dump train.py --stage autograd,fuse --graph 0
  graphc dump train.py --stage c --graph 0 > step.c
  graphc dump train.py --format dot --stage fuse > kernels.dot
  graphc dump train.py --out dump/ -- --epochs 2      (args after -- go to the script)
  graphc dump graph.json --format json --stage simplify
  graphc dump --cache
"""

CACHE_EPILOG = """\
examples:
  graphc cache           list entries (same as graphc cache list, graphc dump --cache)
  graphc cache clear     delete what graphc built there (entries, failed builds, stored compiler
                         pipelines), never other files; refuses a folder that is not a graphc cache
  graphc cache path      print the cache directory ($GRAPHC_CACHE_DIR overrides it)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'graphc dump: error: ...' on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphc", description="graphc: see every stage of the graph compiler; "
                     "manage its build cache.", epilog=MAIN_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dump = commands.add_parser(
        "dump", help="run a script (or load a saved graph) and show every compiler stage",
        description="Run SCRIPT.py with capture on and show each graph the compiler built, stage by\n"
                    "stage; or show a graph saved with Graph.save (GRAPH.json).",
        epilog=DUMP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    dump.add_argument("target", nargs="?", metavar="SCRIPT.py|GRAPH.json",
                      help="a Python script to run, or a graph saved with Graph.save")
    dump.add_argument("script_args", nargs="*", metavar="-- ARGS",
                      help="arguments for the script, after --")
    dump.add_argument("--stage", action="append", metavar="STAGE",
                      help=f"stage(s) to show, comma-separated or repeated: {', '.join(STAGE_CHOICES)}")
    dump.add_argument("--format", choices=FORMATS, default=None,
                      help="text (default), json (graph stages load with Graph.load) or dot "
                           "(kernels as clusters); with --out, every format unless given")
    dump.add_argument("--out", metavar="DIR", help="write one file per graph and stage into DIR "
                      "(graph0.trace.txt, .json, .dot, graph0.c, .svg when Graphviz is installed), and "
                      "build.sh, which builds the sources as graphc does")
    dump.add_argument("--graph", type=int, metavar="N", help="only graph N (0 is the first compiled)")
    dump.add_argument("--cache", action="store_true", help="list the build cache instead")

    cache = commands.add_parser("cache", help="list or clear the on-disk build cache",
                                description="The build cache of compiled programs.",
                                epilog=CACHE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache.add_argument("action", nargs="?", choices=("list", "clear", "path"), default="list",
                       help="list (default), clear or path")
    parser.commands = {"dump": dump, "cache": cache}
    return parser


def main(argv=None) -> int:
    try:
        return run(argv)
    except BrokenPipeError:   # `graphc dump x.py | head`: the reader left; that is not an error
        sys.stdout = open(os.devnull, "w")
        return 0


def run(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if "--" in argv:   # everything after -- belongs to the script graphc dump runs
        split = argv.index("--")
        argv, script_args = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)
    if args.command == "dump":
        args.script_args = list(args.script_args) + script_args
        return dump_command(args, parser.commands["dump"])
    if script_args:
        parser.error("arguments after -- are only for graphc dump SCRIPT.py")
    if args.command == "cache":
        return cache_command(args.action)
    parser.print_help()
    return 0


# ---- graphc dump ------------------------------------------------------------------------------------
def parse_stages(values, parser, writing_files: bool) -> list:
    if not values:
        return list(STAGE_CHOICES[:-1]) if writing_files else list(DEFAULT_STAGES)
    stages = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name not in STAGE_CHOICES:
                parser.error(f"unknown stage {name!r}; choose from {', '.join(STAGE_CHOICES)}")
            for stage in (STAGE_CHOICES[:-1] if name == "all" else (name,)):
                if stage not in stages:
                    stages.append(stage)
    if not stages:
        parser.error("--stage needs a stage name")
    return stages


def dump_command(args, parser) -> int:
    if args.cache:
        return cache_command("list")
    if args.target is None:
        parser.error("give SCRIPT.py or GRAPH.json to dump (or --cache)")
    stages = parse_stages(args.stage, parser, writing_files=args.out is not None)
    if not os.path.isfile(args.target):
        parser.error(f"no such file: {args.target}")
    if args.graph is not None and args.graph < 0:
        parser.error(f"--graph must be 0 or more, got {args.graph}")
    script_args = list(args.script_args)

    from graphc import dump
    status = 0
    if _is_saved_graph(args.target):
        if script_args:
            parser.error("arguments after -- are for scripts; a saved graph takes none")
        try:
            dump.compile_saved_graph(args.target)
        except (ValueError, KeyError, TypeError) as error:
            parser.error(f"{args.target} is not a graph saved with Graph.save ({error})")
    else:
        status = dump.run_script(args.target, script_args)
        if status:
            print(f"graphc dump: {args.target} exited with status {status}; showing what it compiled",
                  file=sys.stderr)
    entries = dump.records()
    if args.graph is not None:
        if args.graph >= len(entries):
            have = f"graphs 0..{len(entries) - 1}" if entries else "no graph"
            parser.error(f"--graph {args.graph} is out of range: {args.target} compiled {have}")
        entries = [entries[args.graph]]
    if args.out:
        show_files(dump, entries, stages, args.format, args.out)
    else:
        show(entries, stages, args.format or "text")
    return status


def _is_saved_graph(path: str) -> bool:
    if path.endswith(".json"):
        return True
    if path.endswith(".py"):
        return False
    with open(path, "rb") as file:
        return file.read(64).lstrip().startswith(b"{")


def show(entries, stages, fmt) -> None:
    """Print the chosen stages of each graph to stdout."""
    from graphc import dump_views as views
    if fmt == "json":
        graphs = []
        for entry in entries:
            item = {"index": entry.index}
            for stage in stages:
                item[stage] = __import__("json").loads(views.render(entry, stage, "json"))
            graphs.append(item)
        print(views.to_json({"format": "graphc-dump-1", "graphs": graphs}))
        return
    comment = "" if fmt == "text" else "// "
    blocks = []
    for entry in entries:
        for stage in stages:
            if not (fmt == "dot" and stage == "summary"):
                blocks.append(views.render(entry, stage, fmt))
    if not entries:
        blocks.append(comment + views.summaries_text([]))
    if blocks:
        print("\n\n".join(blocks))


def show_files(dump, entries, stages, fmt, directory) -> None:
    from graphc import dump_views as views
    formats = FORMATS if fmt is None else (fmt,)
    written = dump.write_dump(directory, entries, [s for s in stages if s != "summary"], formats)
    print(views.summaries_text(entries))
    print(f"\nwrote {len(written)} files to {directory}")
    script = os.path.join(directory, "build.sh")
    if script in written:   # the commands that build the sources as the runtime did
        by_name = {f"graph{entry.index}": entry for entry in entries}
        print(f"\n`sh {shlex.quote(script)}` builds the sources as graphc did:")
        for path in written:
            name, extension = os.path.splitext(os.path.basename(path))
            if extension in (".c", ".cu") and name in by_name:
                print("  " + shlex.join(dump.build_command(by_name[name], path)))


# ---- graphc cache -------------------------------------------------------------------------------------
def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _pipeline_files(directory) -> list:
    return list(directory.glob("*/*.pickle")) if directory.is_dir() else []


def _file_size(path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _clear_cache(runtime) -> int:
    """Delete what graphc made in the cache (never other files there: runtime/cache.py)."""
    cache = runtime.default_cache()
    try:
        report = cache.clear_all()
    except runtime.CacheDirectoryNotRecognized as error:
        print(f"graphc cache clear: {error}", file=sys.stderr)
        return 1
    print(f"removed {report.entries} entries from {cache.directory}" +
          (f" (and {report.pipelines} stored pipelines)" if report.pipelines else ""))
    if report.kept:
        names = [os.path.relpath(path, cache.directory) for path in report.kept]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        print(f"left {len(names)} {'thing' if len(names) == 1 else 'things'} graphc did not make: {shown}")
    return 0


def cache_command(action: str) -> int:
    import runtime
    directory = runtime.cache_directory()
    if action == "path":
        print(directory)
        return 0
    pipelines = directory / "pipelines"   # graphc/backends/c.py: stored simplify..render results
    if action == "clear":
        return _clear_cache(runtime)
    entries = runtime.cache_entries()
    total = sum(e.size_bytes for e in entries)
    print(f"build cache {directory}: {len(entries)} entries, {_size(total)}")
    if entries:
        rows = [("key", "kind", "size", "age", "source")]
        rows += [(e.key[:16], e.kind, _size(e.size_bytes), _age(e.age_seconds),
                  e.source_path.name if e.source_path else "") for e in entries]
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    stored = _pipeline_files(pipelines)
    if stored:
        print(f"and {len(stored)} stored pipelines (graph -> kernels -> C), "
              f"{_size(sum(_file_size(f) for f in stored))}, in {pipelines}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
