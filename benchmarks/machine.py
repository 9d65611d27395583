"""What machine the numbers come from, the thread settings children inherit, and NumPy's BLAS thread count."""
from __future__ import annotations

import ctypes
import os
import platform
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def describe(threads: str, versions: dict) -> dict:
    """The machine and the software measured; `threads` says how threads were set, `versions`
    maps a framework's name to its version (as the child processes reported them)."""
    import numpy
    return {
        "cpu": cpu_model(), "cores": core_count(), "threads": threads,
        "python": platform.python_version(), "numpy": numpy.__version__,
        "versions": dict(versions), "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def machine_line(machine: dict) -> str:
    versions = "".join(f", {name} {version}" for name, version in machine["versions"].items())
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores; threads: {machine['threads']}; "
            f"Python {machine['python']}, NumPy {machine['numpy']}{versions}; "
            f"load average {machine['load_average_at_start']} at start, "
            f"{machine.get('load_average_at_end', '?')} at end")


def thread_environment() -> dict:
    """The variables that set thread pools, as this process's children inherit them."""
    prefixes = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "GRAPHC_NUM_THREADS", "XLA_FLAGS")
    return {name: value for name, value in sorted(os.environ.items()) if name.startswith(prefixes)}


def set_numpy_threads(count: int) -> bool:
    """Set the thread count of the OpenBLAS that NumPy loaded (found in /proc/self/maps).

    NumPy has no API for it and threadpoolctl may be missing; returns False when no OpenBLAS with
    a known setter is loaded.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split()[-1] for line in handle if "openblas" in line.lower() and "/" in line}
    except OSError:
        return False
    numpy_directory = os.path.dirname(os.path.dirname(numpy.__file__))
    done = False
    for path in sorted(paths):
        if "numpy" not in path and not path.startswith(numpy_directory):
            continue
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(library, name):
                getattr(library, name)(ctypes.c_int(count))
                done = True
                break
    return done


def command_line(argv: list[str] | None) -> str:
    arguments = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m benchmarks"] + list(arguments))
