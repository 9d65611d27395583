"""W1's compile latency: the first call(s) of the compiled W1 step until its first replay, in a new
process with an empty `GRAPHC_CACHE_DIR` (cold) and in another new process with that cache filled
(warm). The child process is `benchmarks.workloads.compile_latency_child`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import Result, Row, Target
from benchmarks.timing import seconds
from benchmarks.workloads.common import Context

ID = "W1-compile"
REPOSITORY = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_SECONDS = 600


def run_child(cache_directory: str, threads: int, seed: int) -> dict:
    """Run the child in a new process with `cache_directory` as graphc's build cache."""
    search_path = [str(REPOSITORY)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    environment = dict(os.environ, GRAPHC_CACHE_DIR=cache_directory, GRAPHC_NUM_THREADS=str(threads),
                       PYTHONPATH=os.pathsep.join(search_path))
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.workloads.compile_latency_child", "--threads", str(threads),
         "--seed", str(seed)],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the compile-latency child exited with {completed.returncode}:\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


def run(context: Context) -> list[Row]:
    rows = []
    if not any(system.key == "compiled" for system in context.systems):
        return rows
    targets = {"cold": Target("< 2 s", 2.0, "absolute", at_most=True),
               "warm": Target("< 0.2 s", 0.2, "absolute", at_most=True)}
    with tempfile.TemporaryDirectory(prefix="graphc-benchmark-cache-") as cache:
        for kind in ("cold", "warm"):
            row = Row(f"W1-{kind}", f"W1 compile latency, {kind} cache", seconds(), target=targets[kind])
            context.log(f"  {row.id} {row.title}: graphc compiled (new process)")
            try:
                outcome = run_child(cache, context.thread_count, context.seed)
            except Exception as error:  # noqa: BLE001
                import traceback
                row.results["compiled"] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0])
                row.failures.append(("compiled", traceback.format_exc()))
            else:
                row.results["compiled"] = Result.from_value(
                    outcome["seconds"], startup_seconds=outcome["seconds"], startup_calls=outcome["calls"],
                    startup_note=outcome["note"])
                calls = ", ".join(f"{s:.3f}" for s in outcome["call_seconds"])
                row.notes.append(f"{outcome['calls']} calls before the first replay ({outcome['note']}; "
                                 f"per call s: {calls}); "
                                 f"importing graphc took {outcome['import_seconds']:.2f} s more"
                                 + ("" if outcome["steady"] else "; NO replay within the calls made"))
            rows.append(row)
    return rows
