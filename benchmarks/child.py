"""One measurement in a process of its own: one system on one workload, printed as one JSON line.

    python -m benchmarks.child --system torch --workload W1
    python -m benchmarks.child --system lazy --workload E1 --threads 1 --scale 0.1

The process imports only the framework of `--system` (`reference`: none; it measures the NumPy
roofs and references), keeps that framework's own defaults (thread pools, wait policies) unless
`--threads` is given, and reports which frameworks ended up in `sys.modules`, so the parent can
tell a measurement that another framework disturbed. `python -m benchmarks` runs these; the last
line of stdout is the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

FRAMEWORKS = ("graphc", "torch", "jax")


def frameworks_loaded() -> list[str]:
    return [name for name in FRAMEWORKS if name in sys.modules]


def measure(system_key: str, workload_id: str, threads: int | None, scale: float, seed: int) -> dict:
    from benchmarks import machine
    from benchmarks.report import Result, Row, row_to_dict
    from benchmarks.systems import LABELS, REFERENCE, load_system
    from benchmarks.timing import Unit
    from benchmarks.workloads import find
    from benchmarks.workloads.common import Context

    workload = find(workload_id)
    if system_key == "jax" and threads == 1:
        # XLA sizes its pools at import; this is its one-thread setting
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    if threads is not None:
        machine.set_numpy_threads(threads)
    started = time.perf_counter()
    system = None if system_key == REFERENCE else load_system(system_key)
    import_seconds = time.perf_counter() - started
    if system is not None and threads is not None:
        system.set_threads(threads)
    context = Context([] if system is None else [system], threads, scale=scale, seed=seed,
                      references=system is None)
    try:
        rows = workload.run(context)
    except Exception as error:  # noqa: BLE001  (a workload that breaks outside measure_each_system)
        import traceback
        row = Row(workload.id, workload.description, Unit("—", higher_is_better=False))
        row.results[system_key] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0][:300])
        row.failures.append((system_key, traceback.format_exc()))
        rows = [row]
    return {
        "system": system_key, "label": LABELS.get(system_key, system_key), "workload": workload.id,
        "threads": threads, "threads_in_use": None if system is None else system.threads_in_use(),
        "version": None if system is None else system.version(),
        "import_seconds": import_seconds, "frameworks_loaded": frameworks_loaded(),
        "rows": [row_to_dict(row) for row in rows],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", required=True, help="compiled, lazy, torch, jax or reference")
    parser.add_argument("--workload", required=True, help="a workload id (W1, E1, F1, R1, ...)")
    parser.add_argument("--threads", type=int, default=None, help="default: the framework's own default")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    outcome = measure(args.system, args.workload, args.threads, args.scale, args.seed)
    sys.stdout.flush()
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
