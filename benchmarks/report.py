"""Rows of results, the targets they are held to, and the table (text, Markdown, JSON) they make.

A `Row` is one workload: a `Result` per system (graphc compiled, graphc lazy, PyTorch eager), an
optional reference (a roof, NumPy at the same shape, or a floor derived from a roof), and an
optional `Target` from the issue. Ratios are graphc compiled's value divided by the other column's,
in the row's unit: below 1 is faster for ms/step, µs/step and s; above 1 is faster for GB/s and
GFLOP/s.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.systems import LABELS, SYSTEM_KEYS
from benchmarks.timing import Timing, Unit

NOTES_MARKER = "<!-- notes: everything below this line is kept when the file is regenerated -->"
NOISY_SPREAD = 1.5      # median / min above this: the calls were disturbed (shared machine?)


@dataclass
class Result:
    """One system's measurement on one row."""
    value: float | None = None          # from the median call, in the row's unit
    best: float | None = None           # from the fastest call
    median_seconds: float | None = None
    min_seconds: float | None = None
    calls: int = 0
    startup_seconds: float | None = None
    startup_calls: int = 0
    startup_note: str = ""
    check: float | None = None          # final loss, or the output's mean: equal across systems
    error: str | None = None            # one line; the traceback is in Row.failures

    @classmethod
    def from_timing(cls, unit: Unit, timing: Timing, **extra) -> "Result":
        return cls(value=unit.from_seconds(timing.median), best=unit.from_seconds(timing.minimum),
                   median_seconds=timing.median, min_seconds=timing.minimum, calls=len(timing.counted),
                   startup_seconds=timing.startup_seconds, startup_calls=timing.startup_calls, **extra)

    @classmethod
    def from_value(cls, value: float | None, **extra) -> "Result":
        return cls(value=value, best=value, **extra)

    @property
    def spread(self) -> float | None:
        if self.median_seconds and self.min_seconds:
            return self.median_seconds / self.min_seconds
        return None


@dataclass(frozen=True)
class Target:
    """The issue's goal for graphc compiled on a row: `factor` times a base, at most or at least.

    `against` is "absolute" (the base is 1, in the row's unit), "torch" (PyTorch eager's value on
    the same row) or a row id whose reference value is the base (e.g. "R1", "R2").
    """
    text: str
    factor: float
    against: str = "absolute"
    at_most: bool = True

    def threshold(self, row: "Row", rows: dict) -> float | None:
        if self.against == "absolute":
            return self.factor
        if self.against == "torch":
            base = row.results.get("torch")
            return None if base is None or base.value is None else self.factor * base.value
        other = rows.get(self.against)
        if other is None or other.reference is None or other.reference.value is None:
            return None
        return self.factor * other.reference.value

    def met(self, row: "Row", rows: dict) -> bool | None:
        threshold = self.threshold(row, rows)
        value = row.results.get("compiled", Result()).value
        if threshold is None or value is None:
            return None
        return value <= threshold if self.at_most else value >= threshold


@dataclass
class Row:
    id: str
    title: str
    unit: Unit
    results: dict = field(default_factory=dict)       # system key -> Result
    reference: Result | None = None
    reference_label: str = ""
    # (row id, function of that row's reference value -> this row's reference), resolved later
    reference_from: tuple[str, Callable[[float], float]] | None = None
    target: Target | None = None
    check_label: str = ""
    failures: list = field(default_factory=list)      # (system key, traceback text)
    notes: list = field(default_factory=list)

    def ratio(self, key: str) -> float | None:
        """graphc compiled's value over column `key`'s ("reference" for the reference)."""
        mine = self.results.get("compiled")
        other = self.reference if key == "reference" else self.results.get(key)
        if mine is None or other is None or not mine.value or not other.value:
            return None
        return mine.value / other.value


def resolve_references(rows: list[Row]) -> None:
    """Fill references that derive from another row (a floor from R2, a roof from R1)."""
    by_id = {row.id: row for row in rows}
    for row in rows:
        if row.reference_from is None or row.reference is not None:
            continue
        source_id, derive = row.reference_from
        source = by_id.get(source_id)
        if source is not None and source.reference is not None and source.reference.value:
            row.reference = Result.from_value(derive(source.reference.value))
        else:
            row.reference_label += f" ({source_id} not measured)"


# ---- formatting ----------------------------------------------------------------------------------
def number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def cell(result: Result | None) -> str:
    if result is None:
        return "—"
    if result.error:
        return "failed"
    return number(result.value)


def _table(headers: list[str], body: list[list[str]]) -> str:
    """A Markdown table padded so it also reads as plain text."""
    widths = [max(len(str(line[k])) for line in [headers] + body) for k in range(len(headers))]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule] + [line(cells) for cells in body])


def main_table(rows: list[Row]) -> str:
    by_id = {row.id: row for row in rows}
    headers = ["id", "workload", "unit", LABELS["compiled"], LABELS["lazy"], LABELS["torch"], "reference",
               "compiled÷lazy", "compiled÷torch", "compiled÷reference", "target (graphc compiled)", "met"]
    body = []
    for row in rows:
        met = row.target.met(row, by_id) if row.target else None
        reference = cell(row.reference)
        if row.reference_label:
            reference = f"{reference} ({row.reference_label})" if row.reference else row.reference_label
        body.append([row.id, row.title, row.unit.name, cell(row.results.get("compiled")),
                     cell(row.results.get("lazy")), cell(row.results.get("torch")), reference,
                     ratio_text(row.ratio("lazy")), ratio_text(row.ratio("torch")),
                     ratio_text(row.ratio("reference")), row.target.text if row.target else "",
                     {True: "yes", False: "NO", None: ""}[met]])
    return _table(headers, body)


def fastest_call_table(rows: list[Row]) -> str:
    """The same rows from each system's fastest counted call: less disturbed by other jobs than
    the median when the machine is shared."""
    headers = ["id", "unit", LABELS["compiled"], LABELS["lazy"], LABELS["torch"], "reference",
               "compiled÷lazy", "compiled÷torch", "compiled÷reference"]
    body = []
    for row in rows:
        results = [row.results.get(key) for key in SYSTEM_KEYS] + [row.reference]
        values = [None if r is None or r.error else r.best for r in results]
        mine = values[0]
        ratios = [ratio_text(mine / other if mine and other else None) for other in values[1:]]
        body.append([row.id, row.unit.name] + [number(v) for v in values] + ratios)
    return _table(headers, body)


def detail_table(rows: list[Row]) -> str:
    """Final losses (or output means), startup seconds and median/min spread per system."""
    headers = ["id", "checked value"] + [f"{LABELS[k]}" for k in SYSTEM_KEYS] + \
        [f"first call(s) s: {k}" for k in SYSTEM_KEYS] + [f"median/min: {k}" for k in SYSTEM_KEYS]
    body = []
    for row in rows:
        if not any(key in row.results for key in SYSTEM_KEYS) or not row.check_label:
            continue
        results = [row.results.get(key) for key in SYSTEM_KEYS]
        checks = [f"{r.check:.6g}" if r is not None and r.check is not None else "—" for r in results]
        startups = []
        for r in results:
            if r is None or r.startup_seconds is None:
                startups.append("—")
            else:
                calls = f", {r.startup_calls} calls" if r.startup_calls > 1 else ""
                note = f"; {r.startup_note}" if r.startup_note else ""
                startups.append(f"{number(r.startup_seconds)}{calls}{note}")
        spreads = [number(r.spread) if r is not None else "—" for r in results]
        body.append([row.id, row.check_label] + checks + startups + spreads)
    return _table(headers, body)


def observations(rows: list[Row]) -> list[str]:
    """Lines about noise, failures and notes that the tables cannot show."""
    lines = []
    for row in rows:
        for key, result in row.results.items():
            if result.error:
                lines.append(f"{row.id} {LABELS.get(key, key)} failed: {result.error}")
            elif result.spread is not None and result.spread > NOISY_SPREAD:
                lines.append(f"{row.id} {LABELS.get(key, key)}: median is {result.spread:.1f}× the fastest "
                             f"call (noisy: other work shared the cores?)")
        reference = row.reference
        if reference is not None and reference.spread is not None and reference.spread > NOISY_SPREAD:
            lines.append(f"{row.id} reference ({row.reference_label}): median is {reference.spread:.1f}× the "
                         f"fastest call (noisy)")
        lines.extend(f"{row.id}: {note}" for note in row.notes)
    return lines


def render(rows: list[Row], header: list[str]) -> str:
    """The whole report as text that is also Markdown."""
    parts = ["\n".join(header), "", main_table(rows), ""]
    parts += ["Ratios are graphc compiled ÷ the other column in the row's unit: below 1 is better for "
              "ms/step, µs/step and s, above 1 for GB/s and GFLOP/s.", ""]
    parts += ["The same, from each system's fastest counted call (the median above is the measure; "
              "this shows what a quiet machine would give when other jobs share the cores):", "",
              fastest_call_table(rows), ""]
    details = detail_table(rows)
    if details.count("\n") > 1:
        parts += ["Final loss (train steps) or output mean (forward) per system, first call(s) until "
                  "steady replay, and median/min of the counted calls:", "", details, ""]
    lines = observations(rows)
    if lines:
        parts += ["Observations:", ""] + [f"- {line}" for line in lines] + [""]
    failures = [(row, key, text) for row in rows for key, text in row.failures]
    if failures:
        parts += ["Failures:", ""]
        for row, key, text in failures:
            parts += [f"{row.id} {LABELS.get(key, key)}:", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)


def write_markdown(path: Path, rows: list[Row], header: list[str]) -> None:
    """Write the report; hand-written notes after NOTES_MARKER in an existing file are kept."""
    path = Path(path)
    kept = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            kept = old[old.index(NOTES_MARKER) + len(NOTES_MARKER):]
    title = ["# graphc benchmarks", ""]
    body = render(rows, [f"{line}  " for line in header])   # two spaces: Markdown line breaks
    path.write_text("\n".join(title) + "\n" + body.rstrip() + "\n\n" + NOTES_MARKER + (kept or "\n"))


def to_json(rows: list[Row], machine: dict, command: str, config: dict) -> dict:
    by_id = {row.id: row for row in rows}

    def result(r: Result | None):
        if r is None:
            return None
        data = {name: getattr(r, name) for name in r.__dataclass_fields__}
        data["spread"] = r.spread
        return data

    return {
        "machine": machine, "command": command, "config": config,
        "rows": [{
            "id": row.id, "title": row.title, "unit": row.unit.name,
            "higher_is_better": row.unit.higher_is_better,
            "results": {key: result(value) for key, value in row.results.items()},
            "reference": result(row.reference), "reference_label": row.reference_label,
            "ratios": {key: row.ratio(key) for key in ("lazy", "torch", "reference")},
            "target": None if row.target is None else {
                "text": row.target.text, "threshold": row.target.threshold(row, by_id),
                "met": row.target.met(row, by_id)},
            "check_label": row.check_label, "failures": [list(f) for f in row.failures],
            "notes": row.notes,
        } for row in rows],
    }


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
