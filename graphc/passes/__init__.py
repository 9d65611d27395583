"""Graph passes: each a function from Graph to Graph (or to an analysis), with its own tests."""
from graphc.passes.autodiff import autodiff

__all__ = ["autodiff"]
