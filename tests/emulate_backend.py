"""pytest -p tests.emulate_backend: every graph the tests realize runs through the CUDA backend's
renderer on the host emulator (tests/cuda_emulator.py), as GRAPHC_DEVICE_TESTS=1 runs it on a GPU."""
import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    from graphc import backend
    from tests.cuda_emulator import EmulatedCudaGraph

    class Emulated:
        current_graph = None

        def __init__(self, graph):
            self.compiled = EmulatedCudaGraph(graph)

        def __call__(self, bindings):
            self.compiled.current_graph = self.current_graph
            return self.compiled(bindings, gemm_by_library=True)

    backend._HostCopies = Emulated
    backend.set_default("cuda", compile_after=0)
