"""C1: loading a ~1 GiB checkpoint (16 float32 tensors of 64 MiB): `graphc.load` of a file
`graphc.save` wrote against `torch.load` of a file `torch.save` wrote with the same arrays.

Each load runs in a new process, so its peak memory is its own: the row `C1-peak` is the process's
peak resident memory during the load minus its resident memory just before it (the peak is reset
through /proc/self/clear_refs where Linux allows it, else the process's lifetime peak is used).
Both files are written first by one writer process and are read from the page cache, as a
checkpoint just written or read twice is.

    python -m benchmarks --only C1
    python -m benchmarks.workloads.checkpoint_load --mib 1024 --tensors 16   # the numbers alone
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import Result, Row, Target
from benchmarks.timing import Unit, seconds

ID = "C1"
REPOSITORY = Path(__file__).resolve().parents[2]
FULL_MIB = 1024
TENSORS = 16
REPEATS = 3            # loads per system, each in a new process; the median is shown
CHILD_TIMEOUT_SECONDS = 600


def mebibytes() -> Unit:
    return Unit("MiB", higher_is_better=False)


# ---- in the child processes -------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status in KiB (None off Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Make VmHWM start again from the current resident size (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    peak = _status_kib("VmHWM")
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak


def write_files(directory: str, mib: int, tensors: int, seed: int) -> dict:
    """Write the state dict with graphc.save (and torch.save when torch imports)."""
    import numpy as np
    import graphc
    elements = max(1, (mib << 20) // tensors // 4)
    rng = np.random.default_rng(seed)
    arrays = {f"layer{k}.weight": rng.standard_normal(elements, dtype=np.float32) for k in range(tensors)}
    written = {}
    path = os.path.join(directory, "state.graphc")
    started = time.perf_counter()
    graphc.save({name: graphc.from_numpy(array) for name, array in arrays.items()}, path)
    written["graphc"] = {"path": path, "save_seconds": time.perf_counter() - started}
    try:
        import torch
    except ImportError as error:
        written["torch_missing"] = f"import torch failed: {error}"
    else:
        path = os.path.join(directory, "state.pt")
        started = time.perf_counter()
        torch.save({name: torch.from_numpy(array) for name, array in arrays.items()}, path)
        written["torch"] = {"path": path, "save_seconds": time.perf_counter() - started}
    written["bytes"] = sum(array.nbytes for array in arrays.values())
    written["check"] = float(sum(float(array[:: 4099].astype(np.float64).sum()) for array in arrays.values()))
    return written


def load_once(system: str, path: str) -> dict:
    """In this process: load `path` with `system`, return seconds, peak growth and a checksum."""
    import numpy as np
    if system == "graphc":
        import graphc
        load, to_numpy = graphc.load, lambda tensor: tensor.numpy()
    else:
        import torch
        load, to_numpy = (lambda p: torch.load(p, weights_only=True)), lambda tensor: tensor.numpy()
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    state = load(path)
    elapsed = time.perf_counter() - started
    peak = _peak_kib()
    arrays = [to_numpy(tensor) for tensor in state.values()]
    check = float(sum(float(array[:: 4099].astype(np.float64).sum()) for array in arrays))
    return {"seconds": elapsed, "peak_mib": (peak - (before or 0)) / 1024, "peak_reset": reset,
            "bytes": sum(array.nbytes for array in arrays), "check": check}


# ---- in the benchmark process -----------------------------------------------------------------------
def _child(*arguments: str) -> dict:
    search_path = [str(REPOSITORY)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
    completed = subprocess.run([sys.executable, "-m", "benchmarks.workloads.checkpoint_load", *arguments],
                               cwd=REPOSITORY, env=environment, capture_output=True, text=True,
                               timeout=CHILD_TIMEOUT_SECONDS)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the checkpoint child {' '.join(arguments)} exited with {completed.returncode}:\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


def measure(mib: int, tensors: int, seed: int, repeats: int, log=lambda text: None,
            systems=("graphc", "torch")) -> dict:
    """Write both files in a temporary directory, then load each `repeats` times in new processes."""
    with tempfile.TemporaryDirectory(prefix="graphc-benchmark-checkpoint-") as directory:
        log(f"  {ID}: writing {mib} MiB as {tensors} tensors (graphc.save, torch.save)")
        written = _child("write", directory, str(mib), str(tensors), str(seed))
        outcome = {"bytes": written["bytes"], "check": written["check"], "systems": {},
                   "torch_missing": written.get("torch_missing")}
        for system in systems:
            if system not in written:
                continue
            runs = []
            for _ in range(repeats):
                log(f"  {ID}: {system} load (new process)")
                runs.append(_child("load", system, written[system]["path"]))
            outcome["systems"][system] = {
                "seconds": statistics.median(run["seconds"] for run in runs),
                "min_seconds": min(run["seconds"] for run in runs),
                "peak_mib": statistics.median(run["peak_mib"] for run in runs),
                "checks": sorted({run["check"] for run in runs}),
                "save_seconds": written[system]["save_seconds"],
                "runs": runs,
            }
    return outcome


def run(context) -> list[Row]:
    mib = max(1, round(FULL_MIB * min(context.scale, 1.0)))
    keys = {system.key for system in context.systems}
    systems = [name for name, wanted in (("graphc", {"compiled", "lazy"} & keys), ("torch", "torch" in keys))
               if wanted]
    if not systems:
        return []
    try:
        outcome = measure(mib, TENSORS, context.seed, REPEATS if context.scale >= 1 else 1, context.log, systems)
    except Exception as error:  # noqa: BLE001
        import traceback
        row = Row(f"{ID}-load", f"checkpoint load, {mib} MiB", seconds())
        row.results["compiled"] = Result(error=f"{type(error).__name__}: {error}".splitlines()[0][:300])
        row.failures.append(("compiled", traceback.format_exc()))
        return [row]
    load_row = Row(f"{ID}-load", f"graphc.load / torch.load, {mib} MiB in {TENSORS} tensors", seconds(),
                   target=Target("≤ 2× PyTorch", 2.0, "torch"), check_label="sum of every 4099th value")
    peak_row = Row(f"{ID}-peak", f"peak memory above start during that load ({mib} MiB of tensors)",
                   mebibytes(), target=Target(f"≤ {mib * 1.25:.0f} MiB", mib * 1.25, "absolute"))
    for system, key in (("graphc", "compiled"), ("torch", "torch")):
        measured = outcome["systems"].get(system)
        if measured is None:
            continue
        load_row.results[key] = Result(value=measured["seconds"], best=measured["min_seconds"],
                                       median_seconds=measured["seconds"], min_seconds=measured["min_seconds"],
                                       calls=len(measured["runs"]), check=measured["checks"][0])
        peak_row.results[key] = Result.from_value(measured["peak_mib"])
        if measured["checks"] != [outcome["check"]]:
            load_row.notes.append(f"{system} loaded other values than were saved: {measured['checks']}")
        load_row.notes.append(f"{system} save took {measured['save_seconds']:.2f} s")
    load_row.notes.append("graphc.load is in the graphc compiled column (there is one graphc loader)")
    if outcome["torch_missing"]:
        load_row.notes.append(f"torch not measured: {outcome['torch_missing']}")
    return [load_row, peak_row]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    write = commands.add_parser("write", help="(child) write the files")
    write.add_argument("directory")
    write.add_argument("mib", type=int)
    write.add_argument("tensors", type=int)
    write.add_argument("seed", type=int)
    load = commands.add_parser("load", help="(child) load one file once")
    load.add_argument("system", choices=("graphc", "torch"))
    load.add_argument("path")
    parser.add_argument("--mib", type=int, default=FULL_MIB, help="checkpoint size (default %(default)s)")
    parser.add_argument("--tensors", type=int, default=TENSORS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "write":
        print(json.dumps(write_files(args.directory, args.mib, args.tensors, args.seed)))
    elif args.command == "load":
        print(json.dumps(load_once(args.system, args.path)))
    else:
        outcome = measure(args.mib, args.tensors, args.seed, args.repeats,
                          lambda text: print(text, file=sys.stderr, flush=True))
        for system, measured in outcome["systems"].items():
            print(f"{system:6s} load {measured['seconds']:.3f} s (min {measured['min_seconds']:.3f}), "
                  f"peak +{measured['peak_mib']:.0f} MiB for {outcome['bytes'] / 2**20:.0f} MiB of tensors, "
                  f"save {measured['save_seconds']:.2f} s, values "
                  f"{'equal' if measured['checks'] == [outcome['check']] else 'DIFFER'}")
        print(json.dumps({system: {k: v for k, v in measured.items() if k != "runs"}
                          for system, measured in outcome["systems"].items()}))


if __name__ == "__main__":
    main()
