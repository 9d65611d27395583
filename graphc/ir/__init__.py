"""graphc's IR: a `Graph` of primitive-op nodes over networkx."""
from graphc.ir.graph import Graph, Node

__all__ = ["Graph", "Node"]
