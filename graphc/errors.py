"""graphc's exceptions: each names the op and the user's line that made the offending tensor."""
from __future__ import annotations


class GraphcError(RuntimeError):
    """A user mistake caught before anything runs."""


class ShapeError(GraphcError, ValueError):
    """Shapes that do not fit the op (broadcast, matmul, view, cat...)."""


class CheckFailure(GraphcError):
    """GRAPHC_CHECK: a compiled kernel's result differs from the reference interpreter's."""


class AnomalyError(GraphcError):
    """Anomaly detection: a node made NaN or Inf out of finite inputs."""


class RetraceError(GraphcError):
    """A `graphc.compile(..., strict=True)` function called with a signature its trace does not
    cover (a changed shape, dtype, mode or state layout): strict mode raises instead of retracing."""


def op_error(op: str, message: str, where: str | None = None, hint: str | None = None,
             kind: type = GraphcError) -> GraphcError:
    """Build an error that reads ``op: message (at file.py:12)`` with an optional HINT line."""
    text = f"{op}: {message}"
    if where:
        text += f"\n  at {where}"
    if hint:
        text += f"\nHINT: {hint}"
    return kind(text)


class TraceError(GraphcError):
    """A traced function needed a value that only exists when the graph runs."""
