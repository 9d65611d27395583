"""Smoke test of `python -m benchmarks`: the tiniest run of one workload through the whole reporting
path (rows, references, ratios, targets, text, Markdown, JSON). Not a timing assertion."""
from __future__ import annotations

import json
import math

from benchmarks.__main__ import main
from benchmarks.report import NOTES_MARKER
from benchmarks.workloads.common import pytorch_default_parameters


def test_one_workload_runs_through_the_report(tmp_path, capsys):
    markdown, results = tmp_path / "results.md", tmp_path / "results.json"
    markdown.write_text(f"old table\n{NOTES_MARKER}\nhand-written notes\n")
    # R1 too, so W3b's reference and its "≥ 85% of R1" target resolve across rows
    code = main(["--only", "W3b,R1", "--systems", "compiled,lazy", "--threads", "1", "--scale", "0.001",
                 "--markdown", str(markdown), "--json", str(results)])
    assert code == 0

    data = json.loads(results.read_text())
    rows = {row["id"]: row for row in data["rows"]}
    assert list(rows) == ["W3b", "R1"]
    w3b = rows["W3b"]
    assert w3b["unit"] == "GB/s" and w3b["failures"] == []
    for key in ("compiled", "lazy"):
        result = w3b["results"][key]
        assert result["error"] is None and result["calls"] == 3
        assert math.isfinite(result["value"]) and result["value"] > 0
        assert math.isfinite(result["startup_seconds"])
    # both systems computed the same y = x*a + b
    assert math.isclose(w3b["results"]["compiled"]["check"], w3b["results"]["lazy"]["check"], rel_tol=1e-5)
    assert math.isfinite(w3b["ratios"]["lazy"]) and math.isfinite(w3b["ratios"]["reference"])
    assert w3b["ratios"]["torch"] is None
    assert w3b["reference"]["value"] == rows["R1"]["reference"]["value"]
    assert w3b["target"]["met"] in (True, False)
    assert math.isclose(w3b["target"]["threshold"], 0.85 * rows["R1"]["reference"]["value"])

    printed = capsys.readouterr().out
    assert "| W3b" in printed and "Machine:" in printed
    written = markdown.read_text()
    assert "| W3b" in written and "old table" not in written
    assert written.rstrip().endswith("hand-written notes")


def test_initial_parameters_follow_pytorch_default_bounds():
    arrays = pytorch_default_parameters({"0.weight": (6, 1, 5, 5), "0.bias": (6,), "1.weight": (10, 400),
                                         "1.bias": (10,)}, seed=3)
    assert {name: array.dtype.name for name, array in arrays.items()} == dict.fromkeys(arrays, "float32")
    assert abs(arrays["0.weight"]).max() <= 1 / 5 and abs(arrays["0.bias"]).max() <= 1 / 5
    assert abs(arrays["1.weight"]).max() <= 1 / 20 and abs(arrays["1.bias"]).max() <= 1 / 20
    again = pytorch_default_parameters({"0.weight": (6, 1, 5, 5), "0.bias": (6,), "1.weight": (10, 400),
                                        "1.bias": (10,)}, seed=3)
    assert all((arrays[name] == again[name]).all() for name in arrays)
