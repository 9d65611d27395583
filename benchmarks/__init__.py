"""graphc against PyTorch eager, JAX jit and the machine's roofs: `python -m benchmarks`.

The workloads are the ones defined in WORKLOADS.md (W1 mlp, W2 LeNet-5, W3 fused elementwise,
W3b y = x*a + b, W4 row softmax, W5 linear regression), the roofs R1 (copy bandwidth) and R2
(NumPy GEMM), graphc's matmul at 2048³ and at W1's layer shapes, W1's compile latency in a cold
and a warm cache, checkpoint loads and compile time against depth. Each workload lives in
`benchmarks/workloads/`; the systems measured (graphc compiled, graphc lazy, PyTorch eager, JAX
jit where installed) are small adapters in `benchmarks/systems.py`, so a workload's model, data
and step are written once for the PyTorch-API systems.

Every system is measured in a child process of its own (`benchmarks/child.py`) with its own
default settings; the parent (`benchmarks/__main__.py`) imports no framework, alternates the
systems over several rounds and reports medians with the rounds' spread.
"""
