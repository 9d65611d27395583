"""graphc.compile and graphc.trace: a whole step as one static graph, replayed natively."""
from __future__ import annotations


def compile(function=None, *, backend=None, max_variants=None, check=False, strict=None):
    """Compile `function` (or a Module's forward): traced once per input signature, replayed after.

        @graphc.compile
        def train_step(x, y):
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

    The function's Python code runs only when it is traced; later calls with the same shapes,
    dtypes, modes and state layout run the compiled program (one native call). Python code inside
    that needs a computed value (`if loss > 0`, `.item()`, `print(t)`) raises a TraceError naming
    the line. `backend="numpy"` replays on the reference interpreter instead of C. `check=True`
    runs every kernel beside the reference interpreter and raises `graphc.errors.CheckFailure`
    naming the first kernel (and node, and line) whose result differs (slow; as GRAPHC_CHECK=1).
    `strict=True` (or GRAPHC_STRICT=1) traces once: a later call with a different signature raises
    `graphc.errors.RetraceError` naming what changed, instead of tracing again.
    """
    from graphc.compile.function import MAX_VARIANTS, CompiledFunction

    def wrap(target):
        return CompiledFunction(target, backend=backend, max_variants=max_variants or MAX_VARIANTS,
                                check=check, strict=strict)
    return wrap if function is None else wrap(function)


def trace(function, *args, **kwargs):
    """The `Graph` of `function(*args)`: every op, the backward and optimizer updates included.

    Nothing is computed and no state changes (parameters, gradients and optimizer state are as
    before). The graph's outputs are the results, then the new values of every tensor the function
    updates in place.
    """
    from graphc.compile.function import trace_graph
    return trace_graph(function, args, kwargs)
