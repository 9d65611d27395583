"""The build cache seen from whole programs (other processes, races, corruption) and tiering."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROGRAM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc, runtime
    from graphc import backend
    backend.set_default("c", compile_after=int(sys.argv[2]))
    values = np.random.default_rng(int(sys.argv[1])).standard_normal((64, 33)).astype(np.float32)
    x = graphc.tensor(values)
    y = (x.softmax(dim=1) * x.tanh()).sum(dim=0)
    result = y.numpy()
    expected = (np.exp(values - values.max(1, keepdims=True)) /
                np.exp(values - values.max(1, keepdims=True)).sum(1, keepdims=True) * np.tanh(values)).sum(0)
    print(json.dumps({"error": float(np.abs(result - expected).max()),
                      "stats": runtime.default_cache().stats.as_dict(), "backend": backend.stats}))
""")


def run(cache_dir: Path, seed: int, compile_after: int = 0) -> dict:
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    completed = subprocess.run([sys.executable, "-c", PROGRAM, str(seed), str(compile_after)],
                               capture_output=True, text=True, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing(tmp_path, rng):
    seed = int(rng.integers(1 << 30))
    first = run(tmp_path, seed)
    assert first["stats"]["builds"] == 1 and first["error"] < 1e-4
    second = run(tmp_path, seed + 1)  # same graph structure, other data
    assert second["stats"]["builds"] == 0 and second["stats"]["hits"] == 1
    assert second["error"] < 1e-4


def test_four_processes_compiling_the_same_graph_all_succeed(tmp_path, rng):
    seed = int(rng.integers(1 << 30))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: run(tmp_path, seed + k), range(4)))
    assert all(r["error"] < 1e-4 for r in results)
    assert sum(r["stats"]["builds"] for r in results) >= 1
    assert len(list(tmp_path.rglob("*.so"))) == 1  # one published entry


def test_a_truncated_entry_is_rebuilt(tmp_path, rng):
    seed = int(rng.integers(1 << 30))
    run(tmp_path, seed)
    [library] = list(tmp_path.rglob("*.so"))
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 3])
    result = run(tmp_path, seed)
    assert result["error"] < 1e-4
    assert result["stats"]["discarded"] == 1 and result["stats"]["builds"] == 1


def test_first_sighting_of_a_graph_never_waits_for_the_compiler(tmp_path, rng):
    """Tiering: the tutorial's autograd example, default settings, empty cache: nothing compiles."""
    program = textwrap.dedent("""
        import json
        import graphc
        from graphc import backend
        x = graphc.ones(2, 2, requires_grad=True)
        y = x + 2
        z = y * y * 3
        out = z.mean()
        out.backward()
        print(x.grad)
        print(json.dumps(backend.stats))
    """)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHC_")}
    environment["GRAPHC_CACHE_DIR"] = str(tmp_path)
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                               env=environment, timeout=120)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert "4.5000" in lines[0]
    stats = json.loads(lines[-1])
    assert stats["compiled"] == 0 and stats["interpreted"] >= 1


def test_a_recurring_graph_is_compiled_after_the_threshold(tmp_path, rng):
    result = run(tmp_path, int(rng.integers(1 << 30)), compile_after=1)
    assert result["backend"]["compiled"] == 0  # one sighting: interpreted
    program = PROGRAM.replace("result = y.numpy()", "result = y.numpy()\n"
                              "for _ in range(2):\n    y = (x.softmax(dim=1) * x.tanh()).sum(dim=0); y.numpy()")
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))
    completed = subprocess.run([sys.executable, "-c", program, "1", "1"], capture_output=True, text=True,
                               env=environment, timeout=300)
    stats = json.loads(completed.stdout.strip().splitlines()[-1])["backend"]
    assert stats["interpreted"] == 1 and stats["compiled"] == 1 and stats["replayed"] == 1
