"""The build cache only ever removes what it made; any entry it cannot read as what it should be is
a miss that gets rebuilt; a full disk says which directory is full and how much was needed."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime import BuildCache, CacheDirectoryNotRecognized, CacheDirectoryWarning, CacheDiskFull, CCompiler, compile_c
from runtime.cache import MARKER_NAME


KERNEL = textwrap.dedent(
    """
    void shift(void **buffers) {
        const float *x = (const float *)buffers[0];
        float *y = (float *)buffers[1];
        for (int i = 0; i < 19; ++i) y[i] = x[i] + OFFSET;
    }
    """
)


def kernel(offset: float) -> str:
    return f"#define OFFSET {offset!r}f\n" + KERNEL


def check(program, offset: float) -> None:
    x = np.arange(19, dtype=np.float32)
    y = np.full(19, np.nan, dtype=np.float32)
    program([x, y])
    np.testing.assert_allclose(y, x + np.float32(offset), rtol=1e-6)


@pytest.fixture(autouse=True)
def plain_builds(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHC_SANITIZE", raising=False)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setattr(runtime.cache, "_default_caches", {})


def user_files(root: Path) -> dict:
    """What a user kept in a folder before pointing GRAPHC_CACHE_DIR at it."""
    files = {"failed/report.txt": "quarterly report", "entries/old_run/result.csv": "a,b\n1,2\n",
             "notes.md": "my notes", "tmp/scratch.txt": "scratch"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return files


def assert_intact(root: Path, files: dict) -> None:
    for name, text in files.items():
        assert (root / name).read_text() == text, name


def failing_source() -> str:
    return "void broken(void **buffers) { this is not C; }\n"


# ---- clear removes only what graphc made -------------------------------------------------------------
def test_clear_removes_graphc_entries_and_keeps_the_users_files(tmp_path):
    root = tmp_path / "project"
    files = user_files(root)
    cache = BuildCache(root)
    check(compile_c(kernel(1.0), "shift", cache=cache), 1.0)
    check(compile_c(kernel(2.0), "shift", cache=cache), 2.0)
    with pytest.raises(runtime.CompileError):
        compile_c(failing_source(), "broken", cache=cache)
    shard = cache.make_directory(root / "pipelines" / "ab")
    (shard / ("ab" + "0" * 62 + ".pickle")).write_bytes(pickle.dumps(("stages",)))
    assert (root / MARKER_NAME).is_file() and (root / "pipelines" / MARKER_NAME).is_file()
    assert not (root / "entries" / MARKER_NAME).exists()   # the user's folder: graphc did not make it
    assert all((entry.path / MARKER_NAME).is_file() for entry in cache.entries())

    report = cache.clear_all()
    assert (report.entries, report.failed, report.pipelines) == (2, 1, 1)
    assert_intact(root, files)
    assert sorted(str(path.relative_to(root)) for path in report.kept) == [
        "entries/old_run", "failed/report.txt", "notes.md", "tmp/scratch.txt"]
    assert cache.entries() == []   # the user's entries/old_run is not listed as an entry either
    assert not list((root / "failed").glob("*/program.c"))
    assert not list((root / "pipelines").rglob("*.pickle")) and not (root / "pipelines" / "ab").exists()
    assert not compile_c(kernel(1.0), "shift", cache=cache).cache_hit   # cleared means rebuilt


def test_clear_refuses_a_folder_that_is_not_a_graphc_cache(tmp_path, monkeypatch, capsys):
    root = tmp_path / "my-data"
    files = user_files(root)
    with pytest.raises(CacheDirectoryNotRecognized) as raised:
        BuildCache(root).clear()
    message = str(raised.value)
    assert f"refusing to clear {root}: it is not a graphc build cache" in message
    for name in ("failed/report.txt", "entries/old_run/result.csv", "notes.md"):
        assert name in message
    assert "Nothing was deleted" in message and "GRAPHC_CACHE_DIR" in message
    assert_intact(root, files)

    # the command says the same and exits with 1
    from graphc.cli import main
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    assert main(["cache", "clear"]) == 1
    captured = capsys.readouterr()
    assert "graphc cache clear: refusing to clear" in captured.err and "failed/report.txt" in captured.err
    assert_intact(root, files)


def test_an_empty_or_missing_folder_clears_to_nothing(tmp_path):
    assert BuildCache(tmp_path / "new").clear() == 0
    (tmp_path / "empty").mkdir()
    assert BuildCache(tmp_path / "empty").clear() == 0


def test_clear_never_follows_a_symlink(tmp_path):
    root = tmp_path / "cache"
    cache = BuildCache(root)
    check(compile_c(kernel(3.0), "shift", cache=cache), 3.0)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("delete-0123", "build-old"):   # names clear() deletes inside tmp/
        (outside / name).mkdir()
        (outside / name / "program.so").write_text("precious")
        old = time.time() - 7200
        os.utime(outside / name, (old, old))
    (outside / "program.c").write_text("precious source")
    # tmp/ replaced by a symlink into the user's folder
    shutil.rmtree(root / "tmp")
    (root / "tmp").symlink_to(outside, target_is_directory=True)
    # and inside an entry, links to a file and to a directory outside
    entry = cache.entries()[0].path
    (entry / "extra.so").symlink_to(outside / "program.c")
    (entry / "linked").symlink_to(outside, target_is_directory=True)

    report = cache.clear_all()
    assert report.entries == 1
    assert (outside / "program.c").read_text() == "precious source"
    for name in ("delete-0123", "build-old"):
        assert (outside / name / "program.so").read_text() == "precious"
    assert (root / "tmp").is_symlink() and root / "tmp" in report.kept   # the link itself is left too
    assert not os.path.lexists(entry)


def test_a_cache_written_before_markers_is_still_cleared(tmp_path):
    root = tmp_path / "old-cache"
    cache = BuildCache(root)
    compile_c(kernel(4.0), "shift", cache=cache)
    with pytest.raises(runtime.CompileError):
        compile_c(failing_source(), "broken", cache=cache)
    for marker in root.rglob(MARKER_NAME):
        marker.unlink()
    report = BuildCache(root).clear_all()
    assert (report.entries, report.failed, report.kept) == (1, 1, [])


def test_an_entry_directory_with_a_file_graphc_does_not_write_keeps_that_file(tmp_path):
    root = tmp_path / "cache"
    cache = BuildCache(root)
    compile_c(kernel(5.0), "shift", cache=cache)
    entry = cache.entries()[0].path
    (entry / "my-notes.txt").write_text("keep me")
    report = cache.clear_all()
    kept = [path for path in report.kept if path.name == "my-notes.txt"]
    assert len(kept) == 1 and kept[0].read_text() == "keep me"
    assert not list(kept[0].parent.glob("program.*"))   # graphc's own files went


# ---- entries that cannot be read as what they should be are rebuilt ------------------------------------
def _outside_copy(tmp_path: Path, library: Path) -> str:
    outside = tmp_path / "elsewhere"
    outside.mkdir(exist_ok=True)
    shutil.copy(library, outside / library.name)
    return str(outside / library.name)


MANIFEST_DAMAGE = {
    "metadata is a string": lambda m, tmp, lib: m.update(metadata="sanitize"),
    "metadata is a list": lambda m, tmp, lib: m.update(metadata=[["sanitize", True]]),
    "size is a string": lambda m, tmp, lib: m.update(size=str(m["size"])),
    "kind is a number": lambda m, tmp, lib: m.update(kind=7),
    "format is a string": lambda m, tmp, lib: m.update(format="1"),
    "sha256 is a number": lambda m, tmp, lib: m.update(sha256=12345),
    "source is a path": lambda m, tmp, lib: m.update(source="../../program.c"),
    "artifact climbs out": lambda m, tmp, lib: m.update(artifact="../../elsewhere/program.so"),
    "artifact is absolute, outside the cache": lambda m, tmp, lib: m.update(artifact=_outside_copy(tmp, lib)),
    "the manifest is a list": None,
    "the manifest is a string": None,
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_an_entry_of_the_wrong_type_is_a_miss_that_is_rebuilt(damage, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    source = kernel(6.0 + len(damage))
    artifact = cache.get_or_build(source, CCompiler())
    manifest_path = artifact.path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    change = MANIFEST_DAMAGE[damage]
    _outside_copy(tmp_path, artifact.path)   # a valid library outside the cache, with the right sha256
    if change is None:
        manifest = [manifest] if "list" in damage else json.dumps(manifest)
    else:
        change(manifest, tmp_path, artifact.path)
    manifest_path.write_text(json.dumps(manifest))

    fresh = BuildCache(tmp_path / "cache")   # a later run
    program = compile_c(source, "shift", cache=fresh)
    assert not program.cache_hit and fresh.stats.discarded == 1 and fresh.stats.builds == 1
    assert program.library_path.is_relative_to(tmp_path / "cache")
    check(program, 6.0 + len(damage))
    again = compile_c(source, "shift", cache=BuildCache(tmp_path / "cache"))
    assert again.cache_hit   # the rebuilt entry is good
    assert (tmp_path / "elsewhere" / "program.so").exists()   # discarding never reaches outside the cache


def test_an_artifact_that_is_a_symlink_out_of_the_cache_is_a_miss(tmp_path):
    cache = BuildCache(tmp_path / "cache")
    source = kernel(21.0)
    artifact = cache.get_or_build(source, CCompiler())
    elsewhere = Path(_outside_copy(tmp_path, artifact.path))
    artifact.path.unlink()
    artifact.path.symlink_to(elsewhere)   # same bytes, same sha256: only where it lies is wrong
    fresh = BuildCache(tmp_path / "cache")
    program = compile_c(source, "shift", cache=fresh)
    assert not program.cache_hit and fresh.stats.discarded == 1
    assert not program.library_path.is_symlink() and elsewhere.exists()
    check(program, 21.0)


def test_listing_survives_manifests_of_the_wrong_type(tmp_path):
    cache = BuildCache(tmp_path / "cache")
    artifact = cache.get_or_build(kernel(22.0), CCompiler())
    manifest_path = artifact.path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(created="yesterday", kind=["x"], artifact="/etc/passwd")
    manifest_path.write_text(json.dumps(manifest))
    (listed,) = cache.entries()
    assert listed.kind == "corrupt" and listed.artifact_path is None and listed.age_seconds >= 0
    from graphc.cli import cache_command
    os.environ["GRAPHC_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        assert cache_command("list") == 0
    finally:
        os.environ["GRAPHC_CACHE_DIR"] = str(tmp_path / "default-cache")


class NotStages:
    pass


@pytest.mark.parametrize("stored", ["a string", "a short tuple", "wrong types", "an object", "garbage bytes"])
def test_a_pipeline_pickle_holding_the_wrong_object_is_rebuilt(stored, tmp_path, monkeypatch, rng):
    import graphc
    from graphc.backends import c as backend
    from graphc.schedule import build_graph
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    x = graphc.tensor(rng.standard_normal(13).astype(np.float32))
    gathered = build_graph([((x * 1.5).exp() - 0.125)._node])
    expected = np.exp(x.numpy() * np.float32(1.5)) - np.float32(0.125)
    np.testing.assert_allclose(backend.CompiledGraph(gathered.graph)(gathered.bindings)[0], expected,
                               rtol=1e-5, atol=1e-6)
    path = backend._pipeline_path(gathered.graph, None)
    assert path.is_file() and (path.parent / MARKER_NAME).is_file()
    payload = {"a string": pickle.dumps("stages"), "a short tuple": pickle.dumps((1, 2)),
               "wrong types": pickle.dumps(("plan", "program", "layout", "source")),
               "an object": pickle.dumps(NotStages()), "garbage bytes": b"\x80\x05garbage"}[stored]
    path.write_bytes(payload)
    for _ in range(2):   # every later run works, and the first rewrote the file
        result = backend.CompiledGraph(gathered.graph)(gathered.bindings)[0]
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    assert backend._valid_stages(pickle.loads(path.read_bytes()))


# ---- a full disk -------------------------------------------------------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    """small_tmpfs(name) -> a directory on a new 2 MiB tmpfs, filled to the last byte."""
    mounted = []

    def make(name: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root and the mount command")
        directory = tmp_path / name
        directory.mkdir()
        completed = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(directory)],
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({completed.stderr.strip()})")
        mounted.append(directory)
        with open(directory / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
        return directory

    yield make
    for directory in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(directory)], capture_output=True)   # a loaded library may keep it busy


def test_a_full_cache_disk_builds_in_a_private_directory_with_one_warning(small_tmpfs):
    full = small_tmpfs("full-cache")
    cache = BuildCache(full / "graphc")
    with pytest.warns(CacheDirectoryWarning) as caught:
        program = compile_c(kernel(31.0), "shift", cache=cache)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"graphc's build cache {full / 'graphc'} is full" in message
    assert "No space left on device" in message and "this program's build takes" in message
    assert f"private temporary directory {cache.directory}" in message
    assert cache.directory != full / "graphc" and program.library_path.is_relative_to(cache.directory)
    check(program, 31.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the rest of the process builds there without a word
        check(compile_c(kernel(32.0), "shift", cache=cache), 32.0)
    assert not list((full / "graphc").rglob("program.*"))   # nothing half-written left in the full one


def test_a_full_disk_with_nowhere_else_to_build_names_the_directory_and_the_space(small_tmpfs, monkeypatch):
    full = small_tmpfs("full-cache")
    also_full = small_tmpfs("full-tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(also_full))
    cache = BuildCache(full / "graphc")
    with pytest.raises(CacheDiskFull) as raised:
        compile_c(kernel(33.0), "shift", cache=cache)
    error = raised.value
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    message = str(error)
    assert f"graphc's build cache {full / 'graphc'} has no space left" in message
    assert "this build needs at least" in message and error.needed_bytes >= len(kernel(33.0))
    assert f"the private temporary directory {also_full}" in message and "is full too" in message
    assert "GRAPHC_CACHE_DIR" in message
    assert cache.directory == full / "graphc"   # a later build tries the cache again
    (full / "filler").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(compile_c(kernel(33.0), "shift", cache=cache), 33.0)   # with room again, it just works
