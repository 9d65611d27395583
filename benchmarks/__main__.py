"""python -m benchmarks: graphc (compiled and lazy) against PyTorch eager and the machine's roofs.

    python -m benchmarks                                  # everything, all cores
    python -m benchmarks --only W1,W3 --threads 1         # a selection, one thread for every system
    python -m benchmarks --quick                          # ~5x fewer counted calls: a smoke run
    python -m benchmarks --markdown benchmarks/RESULTS.md --json results.json

Every system runs in this one process with the same thread count (graphc's OpenMP and OpenBLAS
pools, PyTorch's intra-op pool, NumPy's OpenBLAS). Progress goes to stderr; the table to stdout.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import machine as machine_module
from benchmarks.report import render, resolve_references, to_json, write_json, write_markdown
from benchmarks.systems import SYSTEM_KEYS, load_systems
from benchmarks.workloads import WORKLOADS, select
from benchmarks.workloads.common import Context

QUICK_SCALE = 0.2


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every system (default: all cores available to this process)")
    parser.add_argument("--only", default="",
                        help="comma-separated workload ids: " + ", ".join(w.id for w in WORKLOADS))
    parser.add_argument("--systems", default=",".join(SYSTEM_KEYS),
                        help="comma-separated systems to measure (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"counted calls × {QUICK_SCALE}: a smoke run")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply warm-up and counted calls by this (overrides --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every number as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    threads = args.threads or machine_module.core_count()
    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0)
    try:
        workloads = select([name.strip() for name in args.only.split(",") if name.strip()])
        systems, missing = load_systems([key.strip() for key in args.systems.split(",") if key.strip()])
    except ValueError as error:
        print(f"python -m benchmarks: error: {error}", file=sys.stderr)
        return 2
    for system in systems:
        system.set_threads(threads)
    numpy_threads_set = machine_module.set_numpy_threads(threads)
    torch_version = next((s.version() for s in systems if s.key == "torch"), None)
    machine = machine_module.describe(threads, torch_version)
    command = machine_module.command_line(argv)

    context = Context(systems, threads, scale=scale, seed=args.seed)
    rows = []
    for workload in workloads:
        context.log(f"{workload.id}: {workload.description}")
        rows.extend(workload.run(context))
    resolve_references(rows)
    machine["load_average_at_end"] = machine_module.load_average()

    header = [machine_module.machine_line(machine), f"Command: `{command}`"]
    if scale != 1.0:
        header.append(f"Warm-up and counted calls scaled by {scale} (not the WORKLOADS.md counts).")
    for key, reason in missing.items():
        header.append(f"Not measured: {key} ({reason}).")
    if not numpy_threads_set:
        header.append("NumPy's BLAS thread count could not be set: R2 and the NumPy matmuls use its default.")
    print(render(rows, header))
    if args.markdown:
        write_markdown(args.markdown, rows, header)
    if args.json:
        write_json(args.json, to_json(rows, machine, command,
                                      {"threads": threads, "scale": scale, "seed": args.seed,
                                       "systems": [s.key for s in systems],
                                       "workloads": [w.id for w in workloads]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
