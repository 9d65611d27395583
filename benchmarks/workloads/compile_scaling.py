"""Cold compile time against graph size: the compiled train step (zero_grad, forward, cross-entropy,
backward, SGD with momentum) of MLPs with 5, 10, 20, 40 and 100 hidden layers (64 wide) and of a
conv net as deep as ResNet-18 (17 convolutions with BatchNorm and residual adds, 8x8, batch 2).

Each measurement runs in a new process with an empty `GRAPHC_CACHE_DIR` and times the calls until
the first replay (two traces, the first call interpreted, the second compiled). The child also
times the pipeline's stages by wrapping the functions that run them: autodiff, simplify, fuse,
lower (fused graph -> kernel IR), render (kernel IR -> C) and cc (the C compiler and loading the
library); what is left is tracing, the first call's interpreter run and the replay machinery.
It reports CPU seconds too (its own and the compiler's), steadier than wall time on a shared machine.

    python -m benchmarks --only CS --systems compiled
    GRAPHC_CACHE_DIR=$(mktemp -d) python -m benchmarks.workloads.compile_scaling_child --model mlp --layers 40
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

ID = "CS"
REPOSITORY = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_SECONDS = 900
MLP_LAYERS = (5, 10, 20, 40, 100)
WIDTH, BATCH, CLASSES = 64, 32, 10
CONV_BLOCKS, CONV_CHANNELS, CONV_SIZE, CONV_BATCH = 8, 8, 8, 2   # 1 + 2 * 8 = 17 convolutions
STAGES = ("autodiff", "simplify", "fuse", "lower", "render", "cc")
# the goals (cold, gcc included)
TARGETS = {"mlp40": Target("≤ 1 s", 1.0, "absolute", at_most=True),
           "mlp100": Target("≤ 3 s", 3.0, "absolute", at_most=True)}


# ---- the models ---------------------------------------------------------------------------------
def build_mlp(framework, layers: int):
    nn = framework.nn
    modules = []
    for _ in range(layers):
        modules += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(WIDTH, CLASSES))


def build_conv_net(framework):
    """A stem convolution, then eight residual blocks of two 3x3 convolutions with BatchNorm (the
    depth of ResNet-18, without its downsampling), global average pooling and a classifier."""
    nn = framework.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(CONV_CHANNELS)
            self.conv2 = nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(CONV_CHANNELS)
            self.relu = nn.ReLU()

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + x)

    return nn.Sequential(nn.Conv2d(3, CONV_CHANNELS, 3, padding=1, bias=False), nn.BatchNorm2d(CONV_CHANNELS),
                         nn.ReLU(), *[Block() for _ in range(CONV_BLOCKS)], nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(CONV_CHANNELS, CLASSES))


def cases() -> list[tuple[str, str, list[str]]]:
    """(row key, title, child arguments) per measurement, in table order."""
    found = [(f"mlp{n}", f"MLP, {n} hidden layers of {WIDTH}", ["--model", "mlp", "--layers", str(n)])
             for n in MLP_LAYERS]
    found.append(("resnet18", f"ResNet-18-deep conv net, {CONV_SIZE}x{CONV_SIZE}, batch {CONV_BATCH}",
                  ["--model", "conv"]))
    return found


# ---- the parent: one new process per measurement ---------------------------------------------------
def run_child(arguments: list[str], threads: int, seed: int) -> dict:
    """Run the child in a new process with a new, empty build cache."""
    search_path = [str(REPOSITORY)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    with tempfile.TemporaryDirectory(prefix="graphc-compile-scaling-") as cache:
        environment = dict(os.environ, GRAPHC_CACHE_DIR=cache, GRAPHC_NUM_THREADS=str(threads),
                           PYTHONPATH=os.pathsep.join(search_path))
        environment.pop("GRAPHC_PROFILE", None)
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.workloads.compile_scaling_child", *arguments, "--threads", str(threads),
             "--seed", str(seed)],
            cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the compile-scaling child exited with {completed.returncode}:\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


def stage_note(outcome: dict) -> str:
    stages = outcome["stages"]
    rest = outcome["seconds"] - sum(stages.values())
    parts = ", ".join(f"{stage} {stages[stage]:.2f}" for stage in STAGES)
    return (f"{outcome['graph_nodes']} graph nodes; s: {parts}, trace/interpret/other {rest:.2f}; "
            f"CPU s {outcome['cpu_seconds']:.2f} of which the C compiler {outcome['cc_cpu_seconds']:.2f} "
            f"({outcome['calls']} calls before the first replay, {outcome['note']})"
            + ("" if outcome["steady"] else "; NO replay within the calls made"))


def run(context: Context) -> list[Row]:
    rows = []
    if not any(system.key == "compiled" for system in context.systems):
        return rows
    for key, title, arguments in cases():
        row = Row(f"{ID}-{key}", f"cold compile, {title}", seconds(), target=TARGETS.get(key))
        context.log(f"  {row.id} {row.title}: graphc compiled (new process, empty cache)")
        try:
            outcome = run_child(arguments, context.thread_count, context.seed)
        except Exception as error:  # noqa: BLE001
            import traceback
            row.results["compiled"] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0])
            row.failures.append(("compiled", traceback.format_exc()))
        else:
            row.results["compiled"] = Result.from_value(
                outcome["seconds"], startup_seconds=outcome["seconds"], startup_calls=outcome["calls"],
                startup_note=outcome["note"])
            row.notes.append(stage_note(outcome))
        rows.append(row)
    return rows

