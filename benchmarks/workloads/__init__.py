"""The workloads, in the order they run and appear in the table; `--only` selects by id."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks.workloads import (axpb, checkpoint_load, compile_latency, compile_scaling, fused_elementwise, lenet,
                                  linear_regression, matmul, mlp, roofs, softmax)


@dataclass(frozen=True)
class Workload:
    id: str
    description: str
    run: Callable     # Context -> list[Row]


WORKLOADS = (
    Workload("W1", "mlp train step", mlp.run),
    Workload(compile_latency.ID, "W1 compile latency, cold and warm cache (new processes)", compile_latency.run),
    Workload("W2", "LeNet-5 train step", lenet.run),
    Workload("W3", "fused tanh/sigmoid elementwise forward", fused_elementwise.run),
    Workload("W3b", "x*a + b forward", axpb.run),
    Workload("W4", "row softmax forward", softmax.run),
    Workload("W5", "linear regression step", linear_regression.run),
    Workload("R1", "copy bandwidth roof", roofs.copy_roof),
    Workload("R2", "NumPy GEMM roof", roofs.gemm_roof),
    Workload(matmul.ID, "graphc matmul at 2048³ and W1's layer shapes", matmul.run),
    Workload(checkpoint_load.ID, "load a 1 GiB checkpoint: graphc.load vs torch.load (new processes)",
             checkpoint_load.run),
    Workload(compile_scaling.ID, "cold compile time against depth: MLPs of 5-100 layers, a ResNet-18-deep conv net "
                                 "(new processes)", compile_scaling.run),
)


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
