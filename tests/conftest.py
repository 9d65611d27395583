import os
import random
import zlib

import numpy as np
import pytest

# A new seed every session (fresh random inputs), printed so a failure can be replayed with
# GRAPHC_TEST_SEED=<seed>.
SESSION_SEED = int(os.environ.get("GRAPHC_TEST_SEED", random.SystemRandom().randrange(2 ** 31)))


def pytest_configure(config):
    # Tests exercise what users run: the C backend, compiling every graph at its first run
    # (GRAPHC_COMPILE_AFTER=1 restores tiering). The build cache makes reruns cheap.
    from graphc import backend
    backend.set_default(os.environ.get("GRAPHC_BACKEND", "c"),
                        compile_after=int(os.environ.get("GRAPHC_COMPILE_AFTER", "0")))


def pytest_report_header(config):
    return f"graphc test seed: GRAPHC_TEST_SEED={SESSION_SEED}"


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the session seed and the test's id."""
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])
