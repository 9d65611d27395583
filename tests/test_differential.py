"""Differential test: random graphs compiled by the C backend against the reference interpreter.

A program (random_programs.py) is a chain of ops: elementwise with broadcasting, views (permute,
strided slices with negative starts, integer indexing, expand of new and size-1 dimensions,
reshape), cat, reductions (sum/amax/amin/mean over one, several or all axes, with and without
keepdim), matmul (batched too), softmax, comparisons feeding where, float and integer casts,
optionally differentiated. It is built with
the Tensor API and the gathered graph runs both ways. Hypothesis draws programs here; the seeded
soak `python -m tests.fuzz` (fuzz.py) draws many more and minimizes what fails. CI runs a bounded
number of both.
"""
from __future__ import annotations

import os
import runpy

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import fuzz  # noqa: E402
import random_programs  # noqa: E402
from conftest import SESSION_SEED  # noqa: E402
from graphc.backends import c as c_backend  # noqa: E402
from random_programs import Program  # noqa: E402


@st.composite
def programs(draw):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    steps = draw(st.lists(st.tuples(st.sampled_from(random_programs.KINDS), st.integers(0, 1000),
                                    st.integers(0, 1000)), min_size=1, max_size=7))
    return Program(shape, tuple(steps), draw(st.booleans()), draw(st.integers(0, 2 ** 31 - 1)))


@settings(max_examples=int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_compiled_graphs_match_the_interpreter(program):
    failure = fuzz.check([program])
    assert failure is None, f"{program.describe()}\n{failure.message}"


def test_a_bounded_soak_finds_no_mismatch():
    """A slice of the soak CI can afford (programs batched into shared graphs, as the soak does);
    the seed changes every session and is in the failure message, with the reproducers."""
    summary = fuzz.soak(int(os.environ.get("GRAPHC_FUZZ_SOAK", "320")), SESSION_SEED, progress=False)
    lines = []
    fuzz.report(summary, out=lines.append)
    assert not summary["findings"], "\n".join(lines)


# ---- the minimizer and the reproducer, on a bug planted on purpose --------------------------------
@pytest.fixture
def sqrt_is_miscompiled(monkeypatch):
    """A fake compiler bug: every compiled graph holding a sqrt returns its first output shifted."""
    original = c_backend.CompiledGraph.__call__

    def perturbed(self, bindings, out=None):
        results = original(self, bindings, out)
        if any(self.graph.node(i).op == "sqrt" for i in self.graph.topo_order()):
            results[0] = np.asarray(results[0]) + 0.5
        return results
    monkeypatch.setattr(c_backend.CompiledGraph, "__call__", perturbed)


def test_soak_finds_minimizes_and_reproduces_a_planted_bug(sqrt_is_miscompiled, capsys):
    seed, count = 11, 48
    summary = fuzz.soak(count, seed, progress=False)
    with_sqrt = [k for k in range(count) if _computes_sqrt(seed, k)]
    assert with_sqrt and summary["findings"]
    for finding in summary["findings"]:
        assert int(finding.origin.split("--only ")[1]) in with_sqrt
        (program,) = finding.minimized
        body = random_programs.build(program).lines[3:]   # after creating rng, x and t
        # the buggy op and nothing else: one step, a single element, no gradient
        assert body == ["t = (t.abs() + 1).sqrt()"], (finding.origin, body)
        assert not program.differentiate and int(np.prod(program.shape)) == 1
        # the reproducer is a script that runs on its own and shows the mismatch
        with pytest.raises(SystemExit) as exit_status:
            runpy.run_path(_write(finding.script), run_name="__main__")
        assert exit_status.value.code == 1
        assert "0.t: MISMATCH" in capsys.readouterr().out
    # programs whose sqrt the simplifier removes (e.g. under a softmax over one element) pass
    assert len(summary["findings"]) >= len(with_sqrt) // 2


def test_soak_exit_status(sqrt_is_miscompiled, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    assert fuzz.main(["--graphs", "4", "--seed", "3"]) == 0
    program = Program((2, 3), (("unary", list(random_programs.UNARY).index("sqrt_abs"), 0),), True, 5)
    monkeypatch.setattr(fuzz, "program_at", lambda seed, index: program)
    assert fuzz.main(["--graphs", "1", "--seed", "3", "--save", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "--seed 3 --only 0" in printed and "0.t: MISMATCH" not in printed   # printed, not run
    assert "t = (t.abs() + 1).sqrt()" in printed and "1 programs (seed 3)" in printed
    assert list(tmp_path.glob("repro_seed3_1.py"))


def test_a_crash_is_minimized_like_a_mismatch(monkeypatch):
    """A compiled program that raises (here: any graph with a matmul) is a finding of its own kind."""
    original = c_backend.CompiledGraph.__call__

    def crashing(self, bindings, out=None):
        if any(self.graph.node(i).op == "matmul" for i in self.graph.topo_order()):
            raise FloatingPointError("planted crash")
        return original(self, bindings, out)
    monkeypatch.setattr(c_backend.CompiledGraph, "__call__", crashing)
    steps = (("unary", 4, 9), ("matmul", 2, 0), ("reduce", 5, 3), ("slice", 7, 1))
    program = Program((3, 4), steps, True, 21)
    failure = fuzz.check([program])
    assert failure.signature == ("crash", "compile and run", "FloatingPointError")
    small, small_failure = fuzz.minimize(program, failure)
    assert small_failure.signature == failure.signature and "planted crash" in small_failure.message
    body = random_programs.build(small).lines[3:]
    assert len(body) == 1 and body[0].endswith("t = t @ w"), body
    script = fuzz.reproducer([small], small_failure, "test")
    with pytest.raises(FloatingPointError, match="planted crash"):
        runpy.run_path(_write(script), run_name="__main__")


def _computes_sqrt(seed, index) -> bool:
    """Whether program `index` of `seed` computes a sqrt (the generator may stop before it)."""
    built = random_programs.build(fuzz.program_at(seed, index))
    return any(".sqrt()" in line for line in built.lines)


def _write(script: str) -> str:
    import tempfile
    handle = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    with handle:
        handle.write(script)
    return handle.name


# ---- what the soak found -----------------------------------------------------------------------
@pytest.mark.parametrize("steps", [(), (("reshape", 0, 0),), (("reshape", 0, 0), ("reduce", 0, 48))])
def test_a_0d_input_returned_unchanged_keeps_its_shape(steps):
    """Found by the soak: the compiled program handed a 0-d input back with shape (1,), since
    np.ascontiguousarray promotes 0-d arrays to 1-d."""
    program = Program((), steps, False, 7)
    assert fuzz.check([program]) is None
    built = random_programs.build(program)
    assert built.outputs[0].shape == ()
