"""The on-disk build cache: location, keys, corruption repair, listing, clearing, process races."""

import hashlib
import json
import multiprocessing
import os
import textwrap
import traceback

import numpy as np
import pytest

import runtime
from runtime import BuildCache, CCompiler, compile_c
from runtime.cache import cache_directory, cpu_features

# Each test writes its own constant into the source, so every test compiles a new program.
KERNEL = textwrap.dedent(
    """
    #include <stdint.h>
    void affine(void **buffers) {
        const double *x = (const double *)buffers[0];
        double *y = (double *)buffers[1];
        const int64_t n = *(const int64_t *)buffers[2];
        #pragma omp parallel for simd
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * OFFSET + 0.5;
    }
    """
)


def kernel(offset: float) -> str:
    return f"#define OFFSET {offset!r}\n" + KERNEL


def check_program(program, offset: float, n: int = 1001) -> None:
    x = np.random.default_rng().standard_normal(n)
    y = np.full(n, np.nan)
    program([x, y, np.array([n], dtype=np.int64)])
    np.testing.assert_allclose(y, x * offset + 0.5, rtol=1e-15, atol=1e-15)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_SANITIZE", raising=False)


def test_cache_directory_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_directory() == tmp_path / "explicit"
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "graphc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_directory() == tmp_path / "home" / ".cache" / "graphc"


def test_key_covers_cpu_features_and_format(monkeypatch):
    cache = BuildCache()
    compiler = CCompiler()
    key = cache.key_for(kernel(1.5), compiler)
    assert len(key) == 64 and key == cache.key_for(kernel(1.5), compiler)
    assert cpu_features()  # the flags line, or at least the machine name
    monkeypatch.setattr(runtime.cache, "cpu_features", lambda: "another-cpu: avx2")
    assert cache.key_for(kernel(1.5), compiler) != key
    monkeypatch.undo()
    monkeypatch.setattr(runtime.cache, "RUNTIME_FORMAT_VERSION", 99)
    assert cache.key_for(kernel(1.5), compiler) != key


def test_entry_layout_manifest_and_source_beside_artifact():
    program = compile_c(kernel(2.0), "affine")
    entry = program.library_path.parent
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["kind"] == "shared-library" and manifest["key"] == entry.name
    assert manifest["sha256"] == hashlib.sha256(program.library_path.read_bytes()).hexdigest()
    assert program.source_path == entry / "program.c"
    assert program.read_source() == kernel(2.0)
    assert not any((runtime.default_cache().temp_dir).glob("build-*"))  # nothing left behind


def test_truncated_library_is_detected_deleted_and_rebuilt():
    # Built but not loaded here, as when another (crashed) process wrote it: truncating a library
    # this process has mapped would SIGBUS it, which is why the cache never rewrites files in place.
    library = CCompiler().compile(kernel(3.0)).path
    original = library.read_bytes()
    library.write_bytes(original[: len(original) // 2])

    again = compile_c(kernel(3.0), "affine")
    stats = runtime.default_cache().stats
    assert not again.cache_hit
    assert (stats.misses, stats.builds, stats.discarded) == (2, 2, 1)
    assert again.library_path == library and library.stat().st_size == len(original)
    check_program(again, 3.0)


def test_library_that_passes_the_hash_but_not_the_loader_is_rebuilt():
    # Corrupt both the library and its manifest consistently: only the load-time check can tell.
    # (Compiled without loading: dlopen of a name already loaded would return the old copy.)
    artifact = CCompiler().compile(kernel(4.0))
    truncated = artifact.path.read_bytes()[:3000]
    artifact.path.write_bytes(truncated)
    manifest_path = artifact.path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(size=len(truncated), sha256=hashlib.sha256(truncated).hexdigest())
    manifest_path.write_text(json.dumps(manifest))

    program = compile_c(kernel(4.0), "affine")  # must not SIGBUS in dlopen
    stats = runtime.default_cache().stats
    assert (stats.hits, stats.builds, stats.discarded) == (1, 2, 1)
    assert not program.cache_hit
    check_program(program, 4.0)


def test_unreadable_manifest_is_rebuilt():
    first = compile_c(kernel(5.0), "affine")
    (first.library_path.parent / "manifest.json").write_text("{not json")
    again = compile_c(kernel(5.0), "affine")
    assert not again.cache_hit and runtime.default_cache().stats.discarded == 1
    check_program(again, 5.0)


def test_list_and_clear_entries():
    assert runtime.cache_entries() == []
    compile_c(kernel(6.0), "affine")
    compile_c(kernel(7.0), "affine")
    entries = runtime.cache_entries()
    assert len(entries) == 2
    for entry in entries:
        assert entry.kind == "shared-library"
        files_size = sum(path.stat().st_size for path in entry.path.iterdir())
        assert entry.size_bytes == files_size > 1000
        assert 0 <= entry.age_seconds < 60
        assert entry.artifact_path.exists() and entry.source_path.exists()

    assert runtime.clear_cache() == 2
    assert runtime.cache_entries() == []
    program = compile_c(kernel(6.0), "affine")
    assert not program.cache_hit  # cleared means rebuilt


def test_stats_belong_to_the_cache_directory(tmp_path, monkeypatch):
    compile_c(kernel(8.0), "affine")
    compile_c(kernel(8.0), "affine")
    assert runtime.default_cache().stats.hits == 1
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "other"))
    assert runtime.default_cache().stats.hits == 0
    assert not compile_c(kernel(8.0), "affine").cache_hit  # a different directory has nothing


def _race_worker(cache_dir, source, offset, barrier, results):
    """Run in a fresh process: build privately, wait until the other process has built too,
    then publish - so both really race on the final rename."""
    try:
        os.environ["GRAPHC_CACHE_DIR"] = cache_dir
        from runtime.c_compiler import CCompiler as WorkerCompiler

        real_build = WorkerCompiler.build

        def build_then_wait(self, text, out_dir):
            path = real_build(self, text, out_dir)
            barrier.wait(timeout=60)
            return path

        WorkerCompiler.build = build_then_wait
        program = runtime.compile_c(source, "affine")
        check_program(program, offset)
        results.put(("ok", runtime.default_cache().stats.as_dict(), str(program.library_path)))
    except BaseException:
        results.put(("error", traceback.format_exc(), None))


def test_two_processes_compiling_the_same_source_both_succeed(tmp_path):
    context = multiprocessing.get_context("spawn")  # fork after OpenMP started can deadlock
    barrier, results = context.Barrier(2), context.Queue()
    cache_dir = str(tmp_path / "cache")
    source = kernel(9.0)
    workers = [
        context.Process(target=_race_worker, args=(cache_dir, source, 9.0, barrier, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [status for status, _, _ in outcomes] == ["ok", "ok"], outcomes
    stats = [details for _, details, _ in outcomes]
    assert all(item["builds"] == 1 for item in stats)  # both really compiled...
    assert sum(item["lost_races"] for item in stats) == 1  # ...and exactly one lost the rename
    assert outcomes[0][2] == outcomes[1][2]  # both use the one published library
    cache = BuildCache(cache_dir)
    assert len(cache.entries()) == 1
    assert [path.name for path in cache.temp_dir.iterdir()] == [".graphc-cache"]  # the loser removed its build
    program = compile_c(source, "affine", cache=cache)
    assert program.cache_hit
    check_program(program, 9.0)


def test_corrupt_entry_published_by_another_process_during_our_build_is_replaced(monkeypatch):
    cache = runtime.default_cache()
    source = kernel(10.0)
    key = cache.key_for(source, CCompiler())
    real_build = CCompiler.build

    def build_while_someone_publishes_junk(self, text, out_dir):
        path = real_build(self, text, out_dir)
        junk = cache.entry_path(key)
        junk.mkdir(parents=True)
        (junk / "manifest.json").write_text("garbage")
        return path

    monkeypatch.setattr(CCompiler, "build", build_while_someone_publishes_junk)
    program = compile_c(source, "affine")
    assert cache.stats.discarded == 1 and cache.stats.lost_races == 0
    check_program(program, 10.0)
    assert json.loads((cache.entry_path(key) / "manifest.json").read_text())["key"] == key


def test_threads_compiling_the_same_source_build_once():
    from concurrent.futures import ThreadPoolExecutor

    source = kernel(11.0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        programs = list(pool.map(lambda _: compile_c(source, "affine"), range(4)))
    stats = runtime.default_cache().stats
    assert (stats.builds, stats.hits, stats.misses) == (1, 3, 1)
    assert sum(not program.cache_hit for program in programs) == 1
    for program in programs:
        check_program(program, 11.0)
