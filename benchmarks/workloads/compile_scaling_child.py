"""The child process of the compile-scaling measurement (`compile_scaling`): build one model's
compiled train step, time the calls until the first replay and each pipeline stage inside them,
print one JSON line.

    GRAPHC_CACHE_DIR=$(mktemp -d) python -m benchmarks.workloads.compile_scaling_child --model mlp --layers 40
    GRAPHC_CACHE_DIR=$(mktemp -d) python -m benchmarks.workloads.compile_scaling_child --model conv --profile /tmp/p
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from benchmarks.workloads.compile_scaling import (BATCH, CLASSES, CONV_BATCH, CONV_SIZE, STAGES, WIDTH,
                                                  build_conv_net, build_mlp)

CALLS = 4               # two traces (the first creates gradients and momentum), a first replay, one more


def _timed(stage_seconds: dict, stage: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            stage_seconds[stage] += time.perf_counter() - started
    return wrapper


def _instrument(stage_seconds: dict) -> None:
    """Wrap each stage's function where the pipeline looks it up."""
    import runtime
    from graphc.autograd import engine
    from graphc.backends import c
    engine.autodiff = _timed(stage_seconds, "autodiff", engine.autodiff)
    c.simplify = _timed(stage_seconds, "simplify", c.simplify)
    c.fuse = _timed(stage_seconds, "fuse", c.fuse)
    c.lower_program = _timed(stage_seconds, "lower", c.lower_program)
    c.render_program = _timed(stage_seconds, "render", c.render_program)
    runtime.compile_c = _timed(stage_seconds, "cc", runtime.compile_c)


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (the C compiler):
    on a machine other jobs share, these move less than wall time does."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def train_step(graphc, build, seed: int):
    """zero_grad, forward, cross-entropy, backward, SGD with momentum; graphc's own initial weights
    (compile time does not depend on their values)."""
    graphc.manual_seed(seed)
    model = build(graphc)
    criterion = graphc.nn.CrossEntropyLoss()
    optimizer = graphc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(inputs, targets):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    return step


def child(model: str, layers: int, threads: int, seed: int, profile: str | None = None) -> dict:
    """In this process: compile the model's train step and time the calls until the first replay."""
    import graphc
    from benchmarks.systems import GraphcCompiled
    from benchmarks.timing import measure_calls
    from benchmarks.workloads.common import classification_batches
    graphc.set_num_threads(threads)
    stage_seconds = dict.fromkeys(STAGES, 0.0)
    _instrument(stage_seconds)
    if model == "mlp":
        shape, build = (BATCH, WIDTH), lambda framework: build_mlp(framework, layers)
    else:
        shape, build = (CONV_BATCH, 3, CONV_SIZE, CONV_SIZE), build_conv_net
    batches = classification_batches(seed, CALLS, shape, CLASSES)
    system = GraphcCompiled(graphc)
    runner = system.prepare(train_step(graphc, build, seed))

    def arguments(index):
        inputs, targets = batches(index)
        return system.tensor(inputs), system.tensor(targets)

    for stage in STAGES:   # building the model may have compiled small graphs of its own
        stage_seconds[stage] = 0.0
    before = _cpu_seconds()
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    timing = measure_calls(lambda x, y: system.realize(runner(x, y)), arguments, CALLS, 0,
                           system.one_time_work(runner))
    own, compilers = (after - start for after, start in zip(_cpu_seconds(), before))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    graph = getattr(runner, "_last_graph", None)
    return {"seconds": timing.startup_seconds, "calls": timing.startup_calls,
            "steady": timing.startup_calls < CALLS, "note": system.startup_note(runner),
            "stages": stage_seconds, "cpu_seconds": own + compilers, "cc_cpu_seconds": compilers, "graph_nodes": len(graph) if graph is not None else None,
            "call_seconds": timing.warmup}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "conv"), required=True)
    parser.add_argument("--layers", type=int, default=40, help="hidden layers of the MLP")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of the timed calls to FILE")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.model, args.layers, args.threads, args.seed, args.profile)))


if __name__ == "__main__":
    main()
