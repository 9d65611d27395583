"""Thread count for generated programs: OpenMP's pool and OpenBLAS's pool.

Both pools are process-wide, so setting them once here covers every loaded program. The default
is every core (or GRAPHC_NUM_THREADS).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings

_state = {"threads": None}

# Two thread pools share the cores: OpenMP's (generated loops) and OpenBLAS's (GEMM). By default
# each spins after its work, waiting for more, and on 2 cores the spinning pool starves the other:
# measured here, a W1 train step went from 5.5 ms (1 thread) to 80-99 ms (2 threads). Sleeping
# threads cost a wake-up per parallel region instead. Both are read when the libraries load, so
# they are set at import, and only where the user has not chosen.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _openmp():
    name = ctypes.util.find_library("gomp") or "libgomp.so.1"
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _openblas():
    try:
        import scipy_openblas32
    except ImportError:
        return None
    directory = scipy_openblas32.get_lib_dir()
    for file_name in sorted(os.listdir(directory)):
        if file_name.startswith("lib" + scipy_openblas32.get_library()) and ".so" in file_name:
            try:
                return ctypes.CDLL(os.path.join(directory, file_name))
            except OSError:
                return None
    return None


def default_threads() -> int:
    value = os.environ.get("GRAPHC_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_num_threads(count: int) -> None:
    """Use `count` threads in OpenMP loops and in BLAS calls from generated code. In a process
    forked after the parent ran native loops, one thread only (see `_after_fork_in_child`)."""
    count = int(count)
    if count < 1:
        raise ValueError(f"set_num_threads expects a positive number, got {count}")
    if _state.get("forked") and count > 1:
        warnings.warn("graphc: this process was forked after its parent ran graphc's OpenMP loops; "
                      "GNU OpenMP cannot start its thread pool again in a forked child, so native "
                      "loops here stay on one thread (start workers with the 'spawn' or "
                      "'forkserver' method for more)", RuntimeWarning, stacklevel=2)
        count = 1
    openmp = _openmp()
    if openmp is not None:
        openmp.omp_set_num_threads(ctypes.c_int(count))
    openblas = _openblas()
    if openblas is not None and hasattr(openblas, "scipy_openblas_set_num_threads"):
        openblas.scipy_openblas_set_num_threads(ctypes.c_int(count))
    _state["threads"] = count


def get_num_threads() -> int:
    if _state["threads"] is None:
        set_num_threads(default_threads())
    return _state["threads"]


def _after_fork_in_child() -> None:
    """A child forked after the parent's native loops ran on OpenMP's pool: GNU OpenMP would
    wait forever for pool threads that exist only in the parent (the first parallel loop hangs),
    so the child's loops run on one thread. A pool never started is safe to start in the child."""
    if _state["threads"] is None:
        return
    _state["forked"] = True
    openmp = _openmp()
    if openmp is not None:
        openmp.omp_set_num_threads(ctypes.c_int(1))
    _state["threads"] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
