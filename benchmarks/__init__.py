"""graphc against PyTorch eager and the machine's roofs: `python -m benchmarks`.

The workloads are the ones defined in WORKLOADS.md (W1 mlp, W2 LeNet-5, W3 fused elementwise,
W3b y = x*a + b, W4 row softmax, W5 linear regression), the roofs R1 (copy bandwidth) and R2
(NumPy GEMM), graphc's matmul at 2048³ and at W1's layer shapes, and W1's compile latency in a
cold and a warm cache. Each workload lives in `benchmarks/workloads/`; the systems measured
(graphc compiled, graphc lazy, PyTorch eager) are small adapters in `benchmarks/systems.py`, so a
workload's model, data and step are written once for all of them.

This module imports nothing heavy: `python -m benchmarks --threads N` sets the thread counts
before NumPy's or PyTorch's BLAS starts its pool.
"""
