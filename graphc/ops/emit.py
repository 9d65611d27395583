"""`Emitter`: write graph-building code as calls, e.g. ``e.mul(g, e.cos(x))``.

vjp rules and front-end composites use it, so they read like the math they implement. Any op
of the table is a method: ``e.sum(x, axes=(0,), keepdims=True)``.
"""
from __future__ import annotations

import math

from graphc.dtypes import DType


class Emitter:
    def __init__(self, graph, where: str | None = None):
        self.graph = graph
        self.location = where

    def __getattr__(self, op):
        if op.startswith("_"):
            raise AttributeError(op)

        def emit(*inputs, **attrs):
            return self.graph.call(op, inputs, self.location, **attrs)
        emit.__name__ = op
        return emit

    def shape(self, handle) -> tuple:
        return self.graph.node(handle).shape

    def dtype(self, handle) -> DType:
        return self.graph.node(handle).dtype

    def full(self, value, shape, dtype: DType):
        """A constant broadcast to `shape` (a view: no memory in generated code)."""
        scalar = self.graph.constant(value, dtype, self.location)
        return self.expand(scalar, shape=tuple(shape)) if len(shape) else scalar

    def full_like(self, value, handle):
        return self.full(value, self.shape(handle), self.dtype(handle))

    def scale(self, handle, factor: float):
        return self.mul(handle, self.full_like(factor, handle))

    def sum_to(self, handle, shape: tuple):
        """Undo a broadcast: sum `handle` down to `shape` (numpy broadcasting rules)."""
        current = self.shape(handle)
        if tuple(current) == tuple(shape):
            return handle
        lead = len(current) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, size in enumerate(shape) if size == 1 and current[lead + i] != 1)
        reduced = self.sum(handle, axes=axes, keepdims=True) if axes else handle
        return self.reshape(reduced, shape=tuple(shape))

    def broadcast_to(self, handle, shape: tuple):
        """Expand a keepdims-shaped (or lower-rank) value to `shape`."""
        return handle if tuple(self.shape(handle)) == tuple(shape) else self.expand(handle, shape=tuple(shape))

    def numel(self, handle) -> int:
        return math.prod(self.shape(handle))
