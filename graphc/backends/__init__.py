"""Backends that run a Graph: the NumPy reference interpreter and compiled C."""
