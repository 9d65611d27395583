"""Lowering: a fused graph -> codegen's kernel IR."""
from graphc.lowering.program import Layout, lower_program

__all__ = ["Layout", "lower_program"]
