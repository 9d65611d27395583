"""Sanitizer builds: flags, redzones between arena temporaries, the refusal to load without the
ASan runtime, and every kernel kind of the C backend run under AddressSanitizer + UBSan."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
import runtime
from graphc.passes.memory import plan_memory
from runtime import CCompiler

# check mode, anomaly detection and sanitizers are the C backend's: their graphs run there
pytestmark = pytest.mark.usefixtures("c_backend")

ROOT = Path(__file__).resolve().parents[1]
SANITIZER_REPORTS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehaviorSanitizer")


def asan_runtime() -> str | None:
    """The compiler's libasan.so, or None when it has none (cc answers the bare name then)."""
    answer = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return answer if os.path.isabs(answer) and os.path.exists(answer) else None


def test_sanitize_flags_stop_at_the_first_finding_and_change_the_key(tmp_path):
    flags = CCompiler(sanitize=True).compile_flags
    for flag in ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"):
        assert flag in flags
    # the last -O wins: sanitized builds are quick to compile and keep every memory access
    assert [flag for flag in flags if flag.startswith("-O")][-1] == "-O0"
    assert "-fsanitize=address,undefined" not in CCompiler(sanitize=False).compile_flags
    cache = runtime.BuildCache(tmp_path / "cache")
    assert cache.key_for("int x;", CCompiler(sanitize=True)) != cache.key_for("int x;", CCompiler(sanitize=False))


def test_memory_plan_with_redzones_separates_every_temporary(rng):
    count = 9
    sizes = {f"t{k}": int(rng.integers(0, 300)) * 4 for k in range(count)}
    firsts = rng.integers(0, 5, size=count)
    lifetimes = {f"t{k}": (int(firsts[k]), int(firsts[k] + rng.integers(0, 3))) for k in range(count)}
    plain = plan_memory(sizes, lifetimes)
    guarded = plan_memory(sizes, lifetimes, redzone=64)
    assert plain.poison == [] and guarded.arena_bytes > plain.arena_bytes
    # every arena byte belongs to exactly one temporary or one poisoned range, and the byte right
    # after each temporary is poisoned, so an overflow of any of them lands in a redzone
    owner = np.zeros(guarded.arena_bytes, dtype=np.int64)
    for key, offset in guarded.offsets.items():
        owner[offset:offset + sizes[key]] += 1
    poisoned = np.zeros(guarded.arena_bytes, dtype=bool)
    for offset, size in guarded.poison:
        assert size > 0
        owner[offset:offset + size] += 1
        poisoned[offset:offset + size] = True
    assert (owner == 1).all()
    for key, offset in guarded.offsets.items():
        assert offset % 64 == 0
        assert poisoned[offset + sizes[key]] and poisoned[offset - 1]


def test_sanitized_program_without_the_asan_runtime_is_refused_with_the_fix(monkeypatch, tmp_path, rng):
    if "libasan" in Path("/proc/self/maps").read_text():
        pytest.skip("this process has the ASan runtime")
    monkeypatch.setenv("GRAPHC_SANITIZE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    x = graphc.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    with pytest.raises(runtime.LoadError) as raised:
        (x.exp() * 3.0 + x).sum(0).numpy()
    message = str(raised.value)
    assert "AddressSanitizer" in message and "GRAPHC_SANITIZE" in message
    assert "LD_PRELOAD=$(cc -print-file-name=libasan.so)" in message and "ASAN_OPTIONS=detect_leaks=0" in message
    monkeypatch.delenv("GRAPHC_SANITIZE")
    # the same graph, built normally, runs
    got = (x.exp() * 3.0 + x).sum(0).numpy()
    want = (np.exp(x.numpy().astype(np.float64)) * 3.0 + x.numpy()).sum(0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_kernel_corpus_runs_clean_under_asan_and_ubsan(tmp_path):
    library = asan_runtime()
    if library is None:
        pytest.skip("the C compiler has no libasan.so (install libasan for your gcc to run this test)")
    environment = dict(
        os.environ,
        LD_PRELOAD=library,
        ASAN_OPTIONS="detect_leaks=0",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        GRAPHC_SANITIZE="1",
        GRAPHC_CACHE_DIR=str(tmp_path / "cache"),
        GRAPHC_TEST_SEED=str(np.random.SeedSequence().entropy % 2 ** 31),
        PYTHONPATH=str(ROOT),
    )
    completed = subprocess.run([sys.executable, str(ROOT / "tests" / "sanitize_corpus.py")], cwd=tmp_path,
                               capture_output=True, text=True, env=environment, timeout=600)
    report = (f"exit status {completed.returncode}, seed {environment['GRAPHC_TEST_SEED']}\n"
              f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-8000:]}")
    assert completed.returncode == 0, report
    for marker in SANITIZER_REPORTS:
        assert marker not in completed.stderr, report
    last_line = completed.stdout.strip().splitlines()[-1]
    assert last_line.startswith("corpus ok: 12 cases"), report
    # every case compared real arrays against the interpreter
    compared = int(last_line.split(",")[1].split()[0])
    assert compared > 200, report
