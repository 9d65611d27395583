"""python -m benchmarks: graphc (compiled and lazy) against PyTorch eager, JAX jit and the machine's roofs.

    python -m benchmarks                                  # everything, each system's default threads
    python -m benchmarks --only W1,E1 --rounds 5          # a selection, five rounds
    python -m benchmarks --only W1,W3 --threads 1         # one thread for every system
    python -m benchmarks --quick                          # ~5x fewer counted calls: a smoke run
    python -m benchmarks --markdown benchmarks/RESULTS.md --json results.json

Every measurement runs in a child process of its own (`python -m benchmarks.child`): one system on
one workload, importing only that system's framework with its own default settings (graphc sets
OMP_WAIT_POLICY=passive at import, PyTorch's OpenMP pool spins: in one process each would disturb
the other). The systems alternate, in a rotating order, over `--rounds` rounds; a cell is the
median of the rounds' medians with their lowest–highest beside it. This process imports no
framework. Without --threads each system keeps its own thread default, and the eager loops E1–E5
are measured at 1 thread as well. Progress goes to stderr; the table to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks import machine as machine_module
from benchmarks.report import (Result, Row, merge_rounds, render, resolve_references, row_from_dict, to_json,
                               write_json, write_markdown)
from benchmarks.systems import DEFAULT_SYSTEMS, FRAMEWORK_MODULES, LABELS, REFERENCE, Placeholder, unavailable
from benchmarks.timing import Unit
from benchmarks.workloads import WORKLOADS, Workload, select
from benchmarks.workloads.common import Context

QUICK_SCALE = 0.2
DEFAULT_ROUNDS = 3
REPOSITORY = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_SECONDS = 1800


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every system (default: each system's own default, and 1 as well "
                             "for the eager loops)")
    parser.add_argument("--only", default="",
                        help="comma-separated workload ids: " + ", ".join(w.id for w in WORKLOADS))
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help="comma-separated systems to measure (default: %(default)s; one not installed "
                             "is left out, saying so)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="child processes per system and workload, alternating systems (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"counted calls × {QUICK_SCALE}: a smoke run")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply warm-up and counted calls by this (overrides --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every number as JSON")
    return parser.parse_args(argv)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- one child process ------------------------------------------------------------------------------
def child_command(system: str, workload: str, threads: int | None, scale: float, seed: int) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.child", "--system", system, "--workload", workload,
               "--scale", repr(scale), "--seed", str(seed)]
    return command + (["--threads", str(threads)] if threads is not None else [])


def run_child(system: str, workload: str, threads: int | None, scale: float, seed: int) -> dict:
    """Run one measurement in a new process and return its JSON; raises with its stderr on failure."""
    search_path = [str(REPOSITORY)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
    completed = subprocess.run(child_command(system, workload, threads, scale, seed), cwd=REPOSITORY,
                               env=environment, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the {system} child for {workload} exited with {completed.returncode}:\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


# ---- rounds of children, merged --------------------------------------------------------------------
def thread_settings(workload: Workload, threads: int | None) -> list[int | None]:
    if threads is not None:
        return [threads]
    return [1, None] if workload.both_thread_settings else [None]


def suffix(row: Row, threads: int | None) -> None:
    """Name a row of a workload measured at several thread settings after its setting."""
    row.id += " @1t" if threads == 1 else f" @{threads}t" if threads else " @default"
    row.title += " (1 thread)" if threads == 1 else f" ({threads} threads)" if threads else " (default threads)"


class Collected:
    """Each round's rows of one workload at one thread setting, merged into one row per id."""

    def __init__(self):
        self.templates: dict[str, Row] = {}           # row id -> the first row seen with that id
        self.results: dict[tuple, list] = {}          # (row id, system) -> a Result per round
        self.references: dict[str, list] = {}         # row id -> the reference child's Result per round
        self.failed: list[tuple[str, str]] = []       # (system, error text) of children that failed

    def add(self, system: str, rows: list[Row]) -> None:
        for row in rows:
            template = self.templates.setdefault(row.id, row)
            if template is not row:
                template.failures.extend(row.failures)
                template.notes.extend(note for note in row.notes if note not in template.notes)
            for key, result in row.results.items():
                self.results.setdefault((row.id, key), []).append(result)
            if system == REFERENCE and row.reference is not None:
                self.references.setdefault(row.id, []).append(row.reference)

    def merged(self, workload: Workload) -> list[Row]:
        if not self.templates and self.failed:
            self.templates[workload.id] = Row(workload.id, workload.description, Unit("—", higher_is_better=False))
        rows = []
        for row_id, template in self.templates.items():
            higher = template.unit.higher_is_better
            row = Row(template.id, template.title, template.unit, reference_label=template.reference_label,
                      reference_from=template.reference_from, target=template.target,
                      check_label=template.check_label, failures=template.failures, notes=template.notes)
            for (result_row, key), results in self.results.items():
                if result_row == row_id:
                    row.results[key] = merge_rounds(results, higher)
            for key, error in self.failed:
                row.failures.append((key, error))
                if key not in row.results:
                    row.results[key] = Result(error=error.strip().splitlines()[0][:300])
            if row_id in self.references:
                row.reference = merge_rounds(self.references[row_id], higher)
            rows.append(row)
        return rows


def measure_in_children(workload: Workload, systems: list[str], threads: int | None, rounds: int, scale: float,
                        seed: int, children: list[dict], name_setting: bool = False) -> list[Row]:
    """`rounds` rounds of one child per system, the order rotating each round; `name_setting`: the
    rows' ids and titles say the thread setting (the workload is measured at several)."""
    collected = Collected()
    for round_index in range(rounds):
        shift = round_index % len(systems)
        for system in systems[shift:] + systems[:shift]:
            label = LABELS.get(system, system)
            setting = "default threads" if threads is None else f"{threads} thread" + ("s" if threads > 1 else "")
            log(f"{workload.id} round {round_index + 1}/{rounds}: {label}, {setting}")
            started = time.perf_counter()
            try:
                outcome = run_child(system, workload.id, threads, scale, seed)
            except Exception as error:  # noqa: BLE001  (a failed child is a failed cell, not a failed run)
                collected.failed.append((system, f"{type(error).__name__}: {error}"))
                log(f"  failed: {str(error).splitlines()[0]}")
                continue
            outcome["wall_seconds"] = time.perf_counter() - started
            outcome["round"] = round_index + 1
            rows = [row_from_dict(data) for data in outcome.pop("rows")]
            children.append(outcome)
            collected.add(system, rows)
            foreign = sorted(set(outcome["frameworks_loaded"]) -
                             ({FRAMEWORK_MODULES[system]} if system in FRAMEWORK_MODULES else set()))
            for row in rows:
                if foreign:
                    row.notes.append(f"the {label} child also imported {', '.join(foreign)}")
    rows = collected.merged(workload)
    if name_setting:
        for row in rows:
            suffix(row, threads)
    return rows


def measure_in_parent(workload: Workload, systems: list[str], threads: int | None, scale: float,
                      seed: int) -> list[Row]:
    """A workload that starts its own processes: once, here, with placeholder systems."""
    log(f"{workload.id}: {workload.description}")
    context = Context([Placeholder(key) for key in systems], threads, scale=scale, seed=seed, log=log)
    try:
        return workload.run(context)
    except Exception as error:  # noqa: BLE001
        row = Row(workload.id, workload.description, Unit("—", higher_is_better=False))
        row.results[systems[0]] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0][:300])
        row.failures.append((systems[0], traceback.format_exc()))
        return [row]


# ---- the report -------------------------------------------------------------------------------------
def thread_text(threads: int | None, children: list[dict]) -> str:
    if threads is not None:
        return f"{threads} for every system"
    defaults = {}
    for child in children:
        if child["threads"] is None and child["system"] != REFERENCE:
            used = child["threads_in_use"]
            defaults.setdefault(child["label"], "XLA's default" if used is None else str(used))
    text = "each system's default"
    if defaults:
        text += " (" + ", ".join(f"{label} {count}" for label, count in defaults.items()) + ")"
    return text


def header_lines(args, argv, machine: dict, rounds: int, scale: float, missing: dict, children: list[dict]) -> list:
    lines = [machine_module.machine_line(machine), f"Command: `{machine_module.command_line(argv)}`"]
    lines.append(f"Every system in its own process (python -m benchmarks.child), {rounds} round(s), systems "
                 "alternating in a rotating order; this process imported no framework.")
    environment = machine_module.thread_environment()
    lines.append("Thread variables the children inherited: " +
                 (", ".join(f"{name}={value}" for name, value in environment.items()) if environment else "none"))
    if scale != 1.0:
        lines.append(f"Warm-up and counted calls scaled by {scale} (not the WORKLOADS.md counts).")
    for key, reason in missing.items():
        lines.append(f"Not measured: {LABELS.get(key, key)} ({reason}).")
    foreign = sorted({(child["label"], name) for child in children for name in child["frameworks_loaded"]
                      if name != FRAMEWORK_MODULES.get(child["system"])})
    for label, name in foreign:
        lines.append(f"WARNING: a {label} child imported {name} too: its numbers may be disturbed.")
    return lines


def main(argv=None) -> int:
    args = parse_arguments(argv)
    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0)
    rounds = max(1, args.rounds)
    try:
        workloads = select([name.strip() for name in args.only.split(",") if name.strip()])
        requested = [key.strip() for key in args.systems.split(",") if key.strip()]
        missing = unavailable(requested)
    except ValueError as error:
        print(f"python -m benchmarks: error: {error}", file=sys.stderr)
        return 2
    available = [key for key in requested if key not in missing]
    load_at_start = machine_module.load_average()

    rows, children = [], []
    for workload in workloads:
        frameworks = [key for key in workload.systems if key in available]
        if not frameworks and workload.systems != (REFERENCE,):
            continue
        if workload.own_processes:
            rows.extend(measure_in_parent(workload, frameworks, args.threads, scale, args.seed))
            continue
        systems = ([REFERENCE] if REFERENCE in workload.systems else []) + frameworks
        settings = thread_settings(workload, args.threads)
        for threads in settings:
            rows.extend(measure_in_children(workload, systems, threads, rounds, scale, args.seed, children,
                                            name_setting=len(settings) > 1))
    resolve_references(rows)

    versions = {}
    for child in children:
        if child["version"]:
            versions.setdefault(FRAMEWORK_MODULES[child["system"]], child["version"])
    machine = machine_module.describe(thread_text(args.threads, children), versions)
    machine["load_average_at_start"] = load_at_start
    machine["load_average_at_end"] = machine_module.load_average()
    machine["parent_frameworks_loaded"] = [name for name in ("graphc", "torch", "jax") if name in sys.modules]
    header = header_lines(args, argv, machine, rounds, scale, missing, children)
    print(render(rows, header))
    if args.markdown:
        write_markdown(args.markdown, rows, header)
    if args.json:
        write_json(args.json, to_json(rows, machine, machine_module.command_line(argv),
                                      {"threads": args.threads, "scale": scale, "seed": args.seed,
                                       "rounds": rounds, "systems": available,
                                       "workloads": [w.id for w in workloads], "children": children}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
