"""A process forked after graphc ran native code on its thread pools (OpenMP, OpenBLAS) works in
parent and child: a `multiprocessing` fork pool (Linux's default start method) computes the same
numbers as the parent. Without graphc's fork handler the child's first parallel loop waits forever
for OpenMP pool threads that exist only in the parent. Each case runs in a fresh interpreter with
a time limit, so a hang fails the test instead of stopping the suite."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SCRIPT = textwrap.dedent("""\
    import multiprocessing
    import numpy as np
    import graphc

    rng = np.random.default_rng(7)
    a = rng.standard_normal((600, 600)).astype(np.float32)
    x = graphc.tensor(a)
    step = graphc.compile(lambda t: ((t @ t).tanh() * 2 + t.exp()).sum(dim=1))
    for _ in range(3):                       # native kernels on the pools, in the parent
        parent = step(x).numpy()
        lazy = ((x * 3 + 1).tanh().sum(dim=0)).numpy()

    def child(k):
        # the compiled program, a lazy graph seen in the parent, and one never seen
        same = np.allclose(step(x).numpy(), parent, rtol=1e-5, atol=1e-4)
        again = np.allclose(((x * 3 + 1).tanh().sum(dim=0)).numpy(), lazy, rtol=1e-5, atol=1e-4)
        fresh = ((x * (k + 2)) @ x).sum().item()
        want = float(((a.astype(np.float64) * (k + 2)) @ a).sum())
        return same and again and abs(fresh - want) <= 1e-3 * max(1.0, abs(want))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(child, range(4))
    assert all(results), results
    assert np.allclose(step(x).numpy(), parent, rtol=1e-5, atol=1e-4)   # and the parent goes on
    print("ok")
    """)


def test_a_fork_pool_after_native_kernels_computes_in_every_child(tmp_path):
    # (it hung with OMP_WAIT_POLICY passive, graphc's default, and active alike)
    environment = dict(os.environ, GRAPHC_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_more_threads_in_a_forked_child_are_refused_with_a_warning(tmp_path):
    script = textwrap.dedent("""\
        import os, warnings
        import graphc
        x = graphc.randn(300, 300)
        for _ in range(3):
            (x * 2).tanh().sum().item()
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                graphc.set_num_threads(2)
            ok = graphc.get_num_threads() == 1 and any("forked" in str(w.message) for w in seen)
            ok = ok and abs((x * 2).tanh().sum().item() - (x * 2).tanh().sum().item()) < 1e-3
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", status)
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "child 0", (done.stdout, done.stderr[-3000:])
