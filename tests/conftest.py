import os
import random
import zlib

import numpy as np
import pytest

# A new seed every session (fresh random inputs), printed so a failure can be replayed with
# GRAPHC_TEST_SEED=<seed>.
SESSION_SEED = int(os.environ.get("GRAPHC_TEST_SEED", random.SystemRandom().randrange(2 ** 31)))


# GRAPHC_DEVICE_TESTS=1: every graph the tests realize runs on the GPU (the "cuda" backend) and is
# checked against the interpreter as usual; without a GPU the whole session is skipped, saying why.
DEVICE_TESTS = os.environ.get("GRAPHC_DEVICE_TESTS", "") not in ("", "0")


def pytest_configure(config):
    # Tests exercise what users run: the C backend, compiling every graph at its first run
    # (GRAPHC_COMPILE_AFTER=1 restores tiering). The build cache makes reruns cheap.
    from graphc import backend
    name = "cuda" if DEVICE_TESTS else os.environ.get("GRAPHC_BACKEND", "c")
    backend.set_default(name, compile_after=int(os.environ.get("GRAPHC_COMPILE_AFTER", "0")))


def pytest_collection_modifyitems(config, items):
    if not DEVICE_TESTS:
        return
    import runtime
    if not runtime.cuda_available():
        skip = pytest.mark.skip(reason="GRAPHC_DEVICE_TESTS=1 but no CUDA device is usable here "
                                       "(CuPy missing, no driver or no GPU: runtime.cuda_available() is False)")
        for item in items:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"graphc test seed: GRAPHC_TEST_SEED={SESSION_SEED}"


@pytest.fixture
def c_backend():
    """Graphs realized during the test run on the C backend even where the suite runs on a GPU:
    for tests of what only the C backend has (check mode, sanitizers) or of a machine without CUDA."""
    from graphc import backend
    saved = backend.get_default()
    backend.set_default("c")
    yield
    backend.set_default(saved)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the session seed and the test's id."""
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])
