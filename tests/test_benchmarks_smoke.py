"""Smoke tests of `python -m benchmarks`: each system measured in a child process of its own that
imports no other framework, a parent that imports none, and the tiniest runs through the whole
reporting path (rounds merged, references across rows, targets, text, Markdown, JSON). Not timing
assertions."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import (NOTES_MARKER, DerivedReference, Result, Row, Target, cell, merge_rounds,
                               resolve_references, row_from_dict, row_to_dict)
from benchmarks.timing import gigabytes_per_second, gigaflops_per_second, milliseconds_per_step
from benchmarks.workloads.common import pytorch_default_parameters

REPOSITORY = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def run_module(*arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPOSITORY)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.run([sys.executable, "-m", *arguments], cwd=REPOSITORY, env=environment,
                          capture_output=True, text=True, timeout=120)


def child(system: str, workload: str) -> dict:
    completed = run_module("benchmarks.child", "--system", system, "--workload", workload, "--scale", "0.001")
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_graphc_child_imports_no_torch():
    outcome = child("lazy", "F1")
    assert outcome["frameworks_loaded"] == ["graphc"]
    rows = {row["id"]: row for row in outcome["rows"]}
    assert set(rows) == {"F1-op", "F1-realize"}
    recording = rows["F1-op"]["results"]["lazy"]
    assert recording["error"] is None and recording["counters"]["native calls while recording"] == 0
    realize = rows["F1-realize"]["results"]["lazy"]
    assert realize["error"] is None and realize["check"] == 16.0
    assert realize["counters"]["native calls per realize"] >= 1


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_a_torch_child_imports_no_graphc():
    outcome = child("torch", "E2")
    assert outcome["frameworks_loaded"] == ["torch"]
    (row,) = outcome["rows"]
    result = row["results"]["torch"]
    assert result["error"] is None and result["calls"] == 3 and math.isfinite(result["check"])
    assert result["counters"] == {}


def test_the_eager_loops_are_one_code_for_both_frameworks():
    """Each loop is a function of the framework module, run as written on graphc here (the torch
    child runs the same function); graphc's native calls per step are counted."""
    import graphc
    from benchmarks.systems import GraphcLazy
    from benchmarks.workloads import eager_loops
    system = GraphcLazy(graphc)
    for loop_id in ("E1", "E2"):
        _, loop, _ = eager_loops.LOOPS[loop_id]
        result = eager_loops.measure_loop(system, loop, seed=0, warmup=3, counted=3)
        assert result.error is None and result.calls == 3 and math.isfinite(result.check)
        assert result.counters[eager_loops.NATIVE_CALLS] >= 1


def test_the_parent_imports_no_framework_and_merges_rounds(tmp_path):
    markdown, results = tmp_path / "results.md", tmp_path / "results.json"
    markdown.write_text(f"old table\n{NOTES_MARKER}\nhand-written notes\n")
    # R1 too, so W3b's reference and its "≥ 85% of R1" target resolve across rows
    completed = run_module("benchmarks", "--only", "W3b,R1", "--systems", "lazy", "--rounds", "2",
                           "--scale", "0.001", "--markdown", str(markdown), "--json", str(results))
    assert completed.returncode == 0, completed.stderr

    data = json.loads(results.read_text())
    assert data["machine"]["parent_frameworks_loaded"] == []
    children = data["config"]["children"]
    assert sorted((c["system"], c["round"]) for c in children) == [("lazy", 1), ("lazy", 2), ("reference", 1),
                                                                    ("reference", 2)]
    assert all(c["frameworks_loaded"] == ([] if c["system"] == "reference" else ["graphc"]) for c in children)
    rows = {row["id"]: row for row in data["rows"]}
    assert list(rows) == ["W3b", "R1"]
    w3b = rows["W3b"]
    lazy = w3b["results"]["lazy"]
    assert w3b["failures"] == [] and lazy["error"] is None
    assert lazy["calls"] == 6 and len(lazy["rounds"]) == 2 and lazy["value"] > 0
    assert w3b["reference"]["value"] == rows["R1"]["reference"]["value"]
    assert len(rows["R1"]["reference"]["rounds"]) == 2
    assert math.isclose(w3b["target"]["threshold"], 0.85 * rows["R1"]["reference"]["value"])

    assert "| W3b" in completed.stdout and "Machine:" in completed.stdout
    written = markdown.read_text()
    assert "| W3b" in written and "old table" not in written
    assert written.rstrip().endswith("hand-written notes")


def test_rounds_merge_into_medians_and_a_range():
    unit = milliseconds_per_step()
    rounds = [Result(value=v, best=v * 0.9, median_seconds=v / 1e3, min_seconds=v * 0.9 / 1e3, calls=10,
                     counters={"native calls per step": c}) for v, c in ((3.0, 2), (1.0, 1), (2.0, 1))]
    rounds.append(Result(error="RuntimeError: a round failed"))
    merged = merge_rounds(rounds, unit.higher_is_better)
    assert merged.value == 2.0 and merged.best == 0.9 and merged.calls == 30
    assert merged.rounds == [3.0, 1.0, 2.0] and merged.round_range == (1.0, 3.0)
    assert merged.counters == {"native calls per step": 1}
    assert cell(merged) == "2.00 (1.00–3.00)"
    assert merge_rounds([Result(error="x")], False).error == "x"
    faster = merge_rounds([Result(value=5.0, best=6.0), Result(value=7.0, best=8.0)], higher_is_better=True)
    assert faster.value == 6.0 and faster.best == 8.0


def test_rows_travel_as_json_and_derive_references():
    floor = Row("W1", "mlp", milliseconds_per_step(), reference_label="GEMM floor at R2",
                reference_from=DerivedReference("R2", work=2e9), target=Target("≤ 10 µs", 10.0, system="lazy"),
                results={"lazy": Result(value=1.5, counters={"n": 1.0})}, notes=["a note"],
                failures=[("torch", "Traceback")])
    roof = Row("R2", "gemm", gigaflops_per_second(1.0), reference=Result.from_value(100.0))
    same = Row("W3", "fuse", gigabytes_per_second(8.0), reference_from=DerivedReference("R2"))
    travelled = [row_from_dict(json.loads(json.dumps(row_to_dict(row)))) for row in (floor, roof, same)]
    assert travelled[0] == floor and travelled[1] == roof
    resolve_references(travelled)
    assert math.isclose(travelled[0].reference.value, 20.0)     # 2 GFLOP at 100 GFLOP/s, in ms
    assert travelled[2].reference.value == 100.0
    assert travelled[0].target.met(travelled[0], {}) is True


def test_initial_parameters_follow_pytorch_default_bounds():
    arrays = pytorch_default_parameters({"0.weight": (6, 1, 5, 5), "0.bias": (6,), "1.weight": (10, 400),
                                         "1.bias": (10,)}, seed=3)
    assert {name: array.dtype.name for name, array in arrays.items()} == dict.fromkeys(arrays, "float32")
    assert abs(arrays["0.weight"]).max() <= 1 / 5 and abs(arrays["0.bias"]).max() <= 1 / 5
    assert abs(arrays["1.weight"]).max() <= 1 / 20 and abs(arrays["1.bias"]).max() <= 1 / 20
    again = pytorch_default_parameters({"0.weight": (6, 1, 5, 5), "0.bias": (6,), "1.weight": (10, 400),
                                        "1.bias": (10,)}, seed=3)
    assert all((arrays[name] == again[name]).all() for name in arrays)
