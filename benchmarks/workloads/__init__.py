"""The workloads, in the order they run and appear in the table; `--only` selects by id.

Each workload names the systems it has a version for; the parent runs one child process per
(system, workload, thread setting, round). `reference` is the child that measures what no
framework runs (roofs, NumPy at a row's shape). A workload with `own_processes` starts its own
processes (compile latency with an empty cache, checkpoint loads) and runs once, in the parent.
`both_thread_settings`: without --threads, measured at 1 thread and at each system's default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks.systems import REFERENCE
from benchmarks.workloads import (axpb, checkpoint_load, compile_latency, compile_scaling, eager_loops, frontend,
                                  fused_elementwise, lenet, linear_regression, matmul, mlp, roofs, softmax)

PYTORCH_API = ("compiled", "lazy", "torch")
WITH_JAX = PYTORCH_API + ("jax",)
LAZY_AND_TORCH = ("lazy", "torch")


@dataclass(frozen=True)
class Workload:
    id: str
    description: str
    run: Callable                    # Context -> list[Row]
    systems: tuple = PYTORCH_API     # the keys it has a version for (REFERENCE: the NumPy child)
    own_processes: bool = False
    both_thread_settings: bool = False


def _eager(loop_id: str, description: str) -> Workload:
    return Workload(loop_id, description, eager_loops.runner(loop_id), LAZY_AND_TORCH, both_thread_settings=True)


WORKLOADS = (
    Workload("W1", "mlp train step", mlp.run, WITH_JAX),
    Workload(compile_latency.ID, "W1 compile latency, cold and warm cache (new processes)", compile_latency.run,
             ("compiled",), own_processes=True),
    Workload("W2", "LeNet-5 train step", lenet.run),
    Workload("W3", "fused tanh/sigmoid elementwise forward", fused_elementwise.run, WITH_JAX),
    Workload("W3b", "x*a + b forward", axpb.run),
    Workload("W4", "row softmax forward", softmax.run, WITH_JAX),
    Workload("W5", "linear regression step", linear_regression.run, WITH_JAX),
    _eager("E1", "eager loop: linear regression"),
    _eager("E2", "eager loop: scalar weight, w.data by hand"),
    _eager("E3", "eager loop: tutorial LeNet, batch 1"),
    _eager("E4", "eager loop: tutorial LeNet, batch 64"),
    _eager("E5", "eager loop: W1's MLP fed by a DataLoader"),
    Workload(frontend.ID, "lazy front end: µs per recorded op and per cached realize", frontend.run,
             LAZY_AND_TORCH),
    Workload("R1", "copy bandwidth roof", roofs.copy_roof, (REFERENCE,)),
    Workload("R2", "NumPy GEMM roof", roofs.gemm_roof, (REFERENCE,)),
    Workload(matmul.ID, "graphc matmul at 2048³ and W1's layer shapes", matmul.run, (REFERENCE,) + PYTORCH_API),
    Workload(checkpoint_load.ID, "load a 1 GiB checkpoint: graphc.load vs torch.load (new processes)",
             checkpoint_load.run, ("compiled", "torch"), own_processes=True),
    Workload(compile_scaling.ID, "cold compile time against depth: MLPs of 5-100 layers, a ResNet-18-deep conv net "
                                 "(new processes)", compile_scaling.run, ("compiled",), own_processes=True),
)


def find(workload_id: str) -> Workload:
    for workload in WORKLOADS:
        if workload.id.lower() == workload_id.lower():
            return workload
    raise ValueError(f"unknown workload {workload_id!r}; choose from {', '.join(w.id for w in WORKLOADS)}")


def select(ids: list[str] | None) -> list[Workload]:
    """The workloads named in `ids` (case-insensitive), in table order; all when `ids` is empty."""
    if not ids:
        return list(WORKLOADS)
    known = {workload.id.lower(): workload for workload in WORKLOADS}
    unknown = [name for name in ids if name.lower() not in known]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(w.id for w in WORKLOADS)}")
    wanted = {name.lower() for name in ids}
    return [workload for workload in WORKLOADS if workload.id.lower() in wanted]
