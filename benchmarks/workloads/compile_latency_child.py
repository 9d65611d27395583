"""The child process of W1's compile-latency measurement: build W1 on graphc compiled, time the
calls until the first replay, print one JSON line.

    GRAPHC_CACHE_DIR=/tmp/empty python -m benchmarks.workloads.compile_latency_child --threads 2
"""
from __future__ import annotations

import argparse
import json
import time

CALLS = 6   # enough for the two traces of a train step and a first replay


def child(threads: int, seed: int) -> dict:
    """In this process: build W1 on graphc compiled and time the calls until the first replay."""
    started = time.perf_counter()
    import graphc
    from benchmarks.systems import GraphcCompiled
    from benchmarks.timing import measure_calls
    from benchmarks.workloads import mlp
    from benchmarks.workloads.common import batch_arguments, build_train_step
    import_seconds = time.perf_counter() - started
    graphc.set_num_threads(threads)
    system = GraphcCompiled(graphc)
    setup = mlp.training_setup(seed, CALLS)
    runner = system.prepare(build_train_step(system, setup))
    timing = measure_calls(lambda x, y: system.realize(runner(x, y)), batch_arguments(system, setup), CALLS, 0,
                           system.one_time_work(runner))
    steady = timing.startup_calls < CALLS
    return {"seconds": timing.startup_seconds, "calls": timing.startup_calls, "steady": steady,
            "import_seconds": import_seconds, "note": system.startup_note(runner),
            "call_seconds": timing.warmup}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(child(args.threads, args.seed)))


if __name__ == "__main__":
    main()
