"""Rows of results, the targets they are held to, and the table (text, Markdown, JSON) they make.

A `Row` is one workload: a `Result` per system (graphc compiled, graphc lazy, PyTorch eager, JAX
jit), an optional reference (a roof, NumPy at the same shape, or a floor derived from a roof), and
an optional `Target` from the issue. Each system's result comes from its own child process, once
per round; `merge_rounds` turns the rounds into one result (the median of the rounds' medians, with
their min–max). Ratios are one column's value divided by another's, in the row's unit: below 1 is
faster for ms/step, µs/step and s; above 1 is faster for GB/s and GFLOP/s.

Rows travel from a child process to the parent as JSON (`row_to_dict`, `row_from_dict`), so
nothing in a row is a function: a reference derived from another row is a `DerivedReference`.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from benchmarks.systems import LABELS, SYSTEM_KEYS
from benchmarks.timing import Timing, Unit

NOTES_MARKER = "<!-- notes: everything below this line is kept when the file is regenerated -->"
NOISY_SPREAD = 1.5      # median / min above this: the calls were disturbed (shared machine?)
RATIOS = (("compiled", "torch"), ("lazy", "torch"), ("compiled", "jax"), ("compiled", "reference"))


@dataclass
class Result:
    """One system's measurement on one row (one round, or several merged)."""
    value: float | None = None          # from the median call (merged: the median of the rounds' values)
    best: float | None = None           # from the fastest call
    median_seconds: float | None = None
    min_seconds: float | None = None
    calls: int = 0
    startup_seconds: float | None = None
    startup_calls: int = 0
    startup_note: str = ""
    check: float | None = None          # final loss, or the output's mean: equal across systems
    error: str | None = None            # one line; the traceback is in Row.failures
    rounds: list = field(default_factory=list)     # each round's value, in the order they ran
    counters: dict = field(default_factory=dict)   # name -> number (e.g. native calls per step)

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
        """median / min of the counted calls."""
        if self.median_seconds and self.min_seconds:
            return self.median_seconds / self.min_seconds
        return None

    @property
    def round_range(self) -> tuple[float, float] | None:
        """(lowest, highest) value over the rounds, where there was more than one."""
        values = [value for value in self.rounds if value is not None]
        return (min(values), max(values)) if len(values) > 1 else None


def _median(values: list) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def merge_rounds(results: list[Result], higher_is_better: bool) -> Result:
    """One result from each round's: medians of the values, counters and startup times, the best
    call over every round, and each round's value in `rounds`. A failed round is reported as the
    merged error when no round succeeded, else ignored (its traceback stays in the row)."""
    good = [result for result in results if result.error is None]
    if not good:
        return Result(error=results[0].error if results else "no round ran")
    bests = [result.best for result in good if result.best is not None]
    mins = [result.min_seconds for result in good if result.min_seconds is not None]
    counters = {}
    for name in dict.fromkeys(name for result in good for name in result.counters):
        counters[name] = _median([result.counters.get(name) for result in good])
    return Result(
        value=_median([result.value for result in good]),
        best=(max(bests) if higher_is_better else min(bests)) if bests else None,
        median_seconds=_median([result.median_seconds for result in good]),
        min_seconds=min(mins) if mins else None,
        calls=sum(result.calls for result in good),
        startup_seconds=_median([result.startup_seconds for result in good]),
        startup_calls=good[0].startup_calls, startup_note=good[0].startup_note, check=good[0].check,
        rounds=[result.value for result in good], counters=counters)


@dataclass(frozen=True)
class DerivedReference:
    """A reference taken from row `source`'s reference: that value itself when `work` is None (a
    roof in the same unit), else the time `work` (operations, bytes) takes at that row's rate,
    shown in this row's unit (a floor: W1's GEMM operations at R2's GFLOP/s, in ms)."""
    source: str
    work: float | None = None

    def derive(self, source_row: "Row", row: "Row") -> float | None:
        rate = source_row.reference.value
        if self.work is None:
            return rate
        return row.unit.from_seconds(self.work / (rate * source_row.unit.scale))


@dataclass(frozen=True)
class Target:
    """The issue's goal for `system` on a row: `factor` times a base, at most or at least.

    `against` is "absolute" (the base is 1, in the row's unit), "torch" (PyTorch eager's value on
    the same row) or a row id whose reference value is the base (e.g. "R1", "R2").
    """
    text: str
    factor: float
    against: str = "absolute"
    at_most: bool = True
    system: str = "compiled"

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
        value = row.results.get(self.system, Result()).value
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
    reference_from: DerivedReference | None = None     # resolved once every row is in
    target: Target | None = None
    check_label: str = ""
    failures: list = field(default_factory=list)      # (system key, traceback text)
    notes: list = field(default_factory=list)

    def ratio(self, key: str, mine: str = "compiled") -> float | None:
        """Column `mine`'s value over column `key`'s ("reference" for the reference)."""
        numerator = self.results.get(mine)
        other = self.reference if key == "reference" else self.results.get(key)
        if numerator is None or other is None or not numerator.value or not other.value:
            return None
        return numerator.value / other.value


def row_to_dict(row: Row) -> dict:
    """A row as plain JSON data (what a child process prints)."""
    return {
        "id": row.id, "title": row.title, "unit": asdict(row.unit),
        "results": {key: asdict(result) for key, result in row.results.items()},
        "reference": None if row.reference is None else asdict(row.reference),
        "reference_label": row.reference_label,
        "reference_from": None if row.reference_from is None else asdict(row.reference_from),
        "target": None if row.target is None else asdict(row.target),
        "check_label": row.check_label, "failures": [list(failure) for failure in row.failures],
        "notes": list(row.notes),
    }


def _result_from_dict(data: dict) -> Result:
    known = {f.name for f in fields(Result)}
    return Result(**{name: value for name, value in data.items() if name in known})


def row_from_dict(data: dict) -> Row:
    return Row(
        id=data["id"], title=data["title"], unit=Unit(**data["unit"]),
        results={key: _result_from_dict(value) for key, value in data["results"].items()},
        reference=None if data["reference"] is None else _result_from_dict(data["reference"]),
        reference_label=data["reference_label"],
        reference_from=None if data["reference_from"] is None else DerivedReference(**data["reference_from"]),
        target=None if data["target"] is None else Target(**data["target"]),
        check_label=data["check_label"], failures=[tuple(failure) for failure in data["failures"]],
        notes=list(data["notes"]))


def resolve_references(rows: list[Row]) -> None:
    """Fill references that derive from another row (a floor from R2, a roof from R1)."""
    by_id = {row.id: row for row in rows}
    for row in rows:
        if row.reference_from is None or row.reference is not None:
            continue
        source = by_id.get(row.reference_from.source)
        if source is not None and source.reference is not None and source.reference.value:
            row.reference = Result.from_value(row.reference_from.derive(source, row))
        else:
            row.reference_label += f" ({row.reference_from.source} not measured)"


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
    """The value, with the rounds' min–max in brackets where there were several rounds."""
    if result is None:
        return "—"
    if result.error:
        return "failed"
    text = number(result.value)
    bounds = result.round_range
    if bounds is not None:
        text += f" ({number(bounds[0])}–{number(bounds[1])})"
    return text


def _table(headers: list[str], body: list[list[str]]) -> str:
    """A Markdown table padded so it also reads as plain text."""
    widths = [max(len(str(line[k])) for line in [headers] + body) for k in range(len(headers))]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule] + [line(cells) for cells in body])


def present_systems(rows: list[Row]) -> list[str]:
    """The system columns any row has a result for, in table order."""
    return [key for key in SYSTEM_KEYS if any(key in row.results for row in rows)]


def present_ratios(rows: list[Row]) -> list[tuple[str, str]]:
    return [(mine, other) for mine, other in RATIOS
            if any(row.ratio(other, mine) is not None for row in rows)]


def main_table(rows: list[Row]) -> str:
    by_id = {row.id: row for row in rows}
    systems, ratios = present_systems(rows), present_ratios(rows)
    headers = ["id", "workload", "unit"] + [LABELS[key] for key in systems] + ["reference"] + \
        [f"{mine}÷{other}" for mine, other in ratios] + ["target", "met"]
    body = []
    for row in rows:
        met = row.target.met(row, by_id) if row.target else None
        reference = cell(row.reference)
        if row.reference_label:
            reference = f"{reference} ({row.reference_label})" if row.reference else row.reference_label
        target = ""
        if row.target:
            target = row.target.text if row.target.system == "compiled" else \
                f"{LABELS.get(row.target.system, row.target.system)} {row.target.text}"
        body.append([row.id, row.title, row.unit.name] + [cell(row.results.get(key)) for key in systems] +
                    [reference] + [ratio_text(row.ratio(other, mine)) for mine, other in ratios] +
                    [target, {True: "yes", False: "NO", None: ""}[met]])
    return _table(headers, body)


def fastest_call_table(rows: list[Row]) -> str:
    """The same rows from each system's fastest counted call over all rounds: less disturbed by
    other jobs than the median when the machine is shared."""
    systems = present_systems(rows)
    headers = ["id", "unit"] + [LABELS[key] for key in systems] + ["reference"]
    body = []
    for row in rows:
        results = [row.results.get(key) for key in systems] + [row.reference]
        values = [None if r is None or r.error else r.best for r in results]
        body.append([row.id, row.unit.name] + [number(v) for v in values])
    return _table(headers, body)


def detail_table(rows: list[Row]) -> str:
    """Final losses (or output means), startup seconds and median/min spread per system."""
    systems = present_systems(rows)
    headers = ["id", "checked value"] + [f"{LABELS[k]}" for k in systems] + \
        [f"first call(s) s: {k}" for k in systems] + [f"median/min: {k}" for k in systems]
    body = []
    for row in rows:
        if not any(key in row.results for key in systems) or not row.check_label:
            continue
        results = [row.results.get(key) for key in systems]
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


def counter_table(rows: list[Row]) -> str:
    """Counters a system reported (median over the rounds), one line per row and system."""
    body = []
    for row in rows:
        for key, result in row.results.items():
            for name, value in result.counters.items():
                body.append([row.id, LABELS.get(key, key), name, number(value)])
    return _table(["id", "system", "counter", "value"], body) if body else ""


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
        lines.extend(f"{row.id}: {note}" for note in dict.fromkeys(row.notes))
    return lines


def render(rows: list[Row], header: list[str]) -> str:
    """The whole report as text that is also Markdown."""
    parts = ["\n".join(header), "", main_table(rows), ""]
    parts += ["Each cell is the median over the rounds of each round's median call, with the rounds' "
              "lowest–highest in brackets. Ratios divide the first column by the second in the row's unit: "
              "below 1 is better for ms/step, µs/step, µs/op and s, above 1 for GB/s and GFLOP/s.", ""]
    parts += ["The fastest counted call of any round (the median above is the measure; this shows what a "
              "quiet machine would give when other jobs share the cores):", "", fastest_call_table(rows), ""]
    details = detail_table(rows)
    if details.count("\n") > 1:
        parts += ["Final loss (train steps) or output mean (forward) per system, first call(s) until "
                  "steady replay (median over the rounds), and median/min of the counted calls:", "",
                  details, ""]
    counters = counter_table(rows)
    if counters:
        parts += ["Counters (median over the rounds):", "", counters, ""]
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
        data = asdict(r)
        data["spread"] = r.spread
        return data

    return {
        "machine": machine, "command": command, "config": config,
        "rows": [{
            "id": row.id, "title": row.title, "unit": row.unit.name,
            "higher_is_better": row.unit.higher_is_better,
            "results": {key: result(value) for key, value in row.results.items()},
            "reference": result(row.reference), "reference_label": row.reference_label,
            "ratios": {f"{mine}/{other}": row.ratio(other, mine) for mine, other in RATIOS},
            "target": None if row.target is None else {
                "text": row.target.text, "system": row.target.system,
                "threshold": row.target.threshold(row, by_id), "met": row.target.met(row, by_id)},
            "check_label": row.check_label, "failures": [list(f) for f in row.failures],
            "notes": row.notes,
        } for row in rows],
    }


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
