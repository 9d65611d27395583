"""The build cache directory: unwritable -> a private temporary one with a warning; writable by
other users -> refused, because graphc loads and runs the libraries (and pipeline pickles) in it."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc
import runtime
from runtime import BuildCache, CacheDirectoryUnsafe, CacheDirectoryWarning, compile_c

SOURCE = textwrap.dedent(
    """
    void scale(void **buffers) {
        const float *x = (const float *)buffers[0];
        float *y = (float *)buffers[1];
        for (int i = 0; i < 37; ++i) y[i] = x[i] * SCALE - 0.25f;
    }
    """
)


def program_source(scale: float) -> str:
    return f"#define SCALE {scale!r}f\n" + SOURCE


def check_scale(program, scale: float, rng) -> None:
    x = rng.standard_normal(37).astype(np.float32)
    y = np.full(37, np.nan, dtype=np.float32)
    program([x, y])
    np.testing.assert_allclose(y, x.astype(np.float64) * scale - 0.25, rtol=1e-6, atol=1e-6)


@pytest.fixture(autouse=True)
def plain_builds(monkeypatch):
    monkeypatch.delenv("GRAPHC_SANITIZE", raising=False)


def fresh_default_caches(monkeypatch):
    """Forget the process-wide cache objects, so the next default_cache() looks at the directory."""
    monkeypatch.setattr(runtime.cache, "_default_caches", {})


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_unwritable_cache_directory_falls_back_to_a_private_one_with_one_warning(
        where, tmp_path, monkeypatch, rng):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache should be")
    requested = blocker if where == "a file" else blocker / "graphc"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(requested))
    fresh_default_caches(monkeypatch)
    with pytest.warns(CacheDirectoryWarning) as caught:
        program = compile_c(program_source(1.5), "scale")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"cannot use the build cache directory {requested}" in message
    assert "FileExistsError" in message or "NotADirectoryError" in message
    used = runtime.default_cache().directory
    assert used != requested and used.name.startswith("graphc-cache-")
    assert f"private temporary directory {used}" in message
    assert stat.S_IMODE(used.stat().st_mode) == 0o700 and used.stat().st_uid == os.geteuid()
    assert program.library_path.is_relative_to(used)
    check_scale(program, 1.5, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same process does not warn again
        again = compile_c(program_source(1.5), "scale")
    assert again.cache_hit and again.library_path == program.library_path
    assert blocker.read_text() == "a file where the cache should be"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_cache_directory_falls_back(tmp_path, rng):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    try:
        with pytest.warns(CacheDirectoryWarning, match="PermissionError"):
            cache = BuildCache(read_only)
        check_scale(compile_c(program_source(2.5), "scale", cache=cache), 2.5, rng)
    finally:
        read_only.chmod(0o700)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777, 0o757])
def test_cache_directory_writable_by_others_is_refused(mode, tmp_path, monkeypatch):
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(shared))
    fresh_default_caches(monkeypatch)
    with pytest.raises(CacheDirectoryUnsafe) as raised:
        compile_c(program_source(3.5), "scale")
    message = str(raised.value)
    assert f"refusing to use the graphc build cache at {shared}" in message
    assert f"its mode is {mode:04o}" in message
    assert "Another user could replace a compiled shared library there" in message
    assert f"chmod go-w {shared}" in message and "GRAPHC_CACHE_DIR" in message
    assert not (shared / "entries").exists()  # nothing was built or loaded from there
    shared.chmod(0o700)  # the fix the message gives
    fresh_default_caches(monkeypatch)
    compile_c(program_source(3.5), "scale")
    assert (shared / "entries").is_dir()


def test_writable_directory_inside_the_cache_is_refused(tmp_path, rng):
    root = tmp_path / "cache"
    check_scale(compile_c(program_source(4.5), "scale", cache=BuildCache(root)), 4.5, rng)
    (root / "entries").chmod(0o777)
    with pytest.raises(CacheDirectoryUnsafe, match=r"cache/entries: its mode is 0777: writable by group and other"):
        BuildCache(root)


def test_pipeline_pickles_are_not_read_from_an_unsafe_cache(tmp_path, monkeypatch, rng):
    # graphc keeps pickled pipeline stages in the cache: loading one is running code
    root = tmp_path / "cache"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines").chmod(0o770)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    fresh_default_caches(monkeypatch)
    x = graphc.tensor(rng.standard_normal((4, 11)).astype(np.float32))  # a graph no other test builds
    with pytest.raises(CacheDirectoryUnsafe, match="pipelines: its mode is 0770: writable by group"):
        (x * 2.71828 + 1.0).tanh().sum(1).numpy()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_cache_directory_owned_by_another_user_is_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 4242, -1)
    with pytest.raises(CacheDirectoryUnsafe, match="it is owned by user id 4242, not by this user"):
        BuildCache(foreign)


def test_new_cache_directory_is_private(tmp_path):
    cache = BuildCache(tmp_path / "fresh" / "graphc")
    assert cache.directory == tmp_path / "fresh" / "graphc"
    assert stat.S_IMODE(cache.directory.stat().st_mode) & 0o077 == 0


FOUR_WAY = textwrap.dedent(
    """
    import json, sys, time, numpy as np, runtime
    start = float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))  # all four start compiling together
    program = runtime.compile_c(sys.argv[1], "scale")
    x = np.random.default_rng().standard_normal(37).astype(np.float32)
    y = np.empty(37, dtype=np.float32)
    program([x, y])
    error = float(np.abs(y - (x.astype(np.float64) * 5.5 - 0.25)).max())
    print(json.dumps({"library": str(program.library_path), "error": error,
                      "stats": runtime.default_cache().stats.as_dict()}))
    """
)


def test_four_processes_compiling_one_source_share_one_entry(tmp_path):
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"),
                       PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    start = time.time() + 3.0
    children = [subprocess.Popen([sys.executable, "-c", FOUR_WAY, program_source(5.5), repr(start)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
                for _ in range(4)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(result["error"] < 1e-5 for result in results)
    assert len({result["library"] for result in results}) == 1
    stats = [result["stats"] for result in results]
    assert sum(s["builds"] for s in stats) >= 1 and all(s["failures"] == 0 for s in stats)
    # every build that was not published lost the rename and used the winner's entry
    assert sum(s["builds"] for s in stats) - sum(s["lost_races"] for s in stats) == 1
    cache = BuildCache(tmp_path / "cache")
    assert len(cache.entries()) == 1 and [path.name for path in cache.temp_dir.iterdir()] == [".graphc-cache"]


def test_a_cache_made_under_umask_002_is_private_and_accepted_again(tmp_path, rng, monkeypatch):
    """Where every user has a group of their own the umask is often 002; directories graphc makes
    in its cache must still be 0700, or the next process would refuse graphc's own cache."""
    from graphc.backends.c import CompiledGraph
    from graphc.schedule import build_graph
    from runtime.cache_safety import check_cache_directory
    root = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    previous = os.umask(0o002)
    try:
        cache = BuildCache(root)
        check_scale(compile_c(program_source(1.5), "scale", cache=cache), 1.5, rng)
        x = graphc.tensor(rng.standard_normal(9).astype(np.float32))
        gathered = build_graph([(x.exp() * 3)._node])
        np.testing.assert_allclose(CompiledGraph(gathered.graph)(gathered.bindings)[0],
                                   np.exp(x.numpy()) * 3, rtol=1e-6)   # writes a pipeline pickle too
    finally:
        os.umask(previous)
    directories = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert any(p.parent.name == "pipelines" for p in directories) and (root / "entries").is_dir()
    loose = [str(p) for p in directories if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not loose, f"directories others can enter or write: {loose}"
    check_cache_directory(root)   # a new process would accept it
