"""Anomaly detection: report the first node that turns finite values into NaN or Inf.

As in PyTorch, `set_detect_anomaly(True)` switches it on (it also works as a context manager) and
`detect_anomaly()` is the context-manager spelling; `GRAPHC_CHECK_NAN=1` switches it on for a whole
run. Unlike PyTorch, the forward pass is checked too: graphc sees forward and backward as one graph,
so the report names the node, its op and the user's line, and says when the node belongs to a
backward pass (its line is then the forward line it differentiates).

The checks themselves live in `graphc.check`; this module only holds the switch.
"""
from __future__ import annotations

import os

_enabled = os.environ.get("GRAPHC_CHECK_NAN", "").strip().lower() in ("1", "true", "yes", "on")


def is_anomaly_enabled() -> bool:
    return _enabled


class set_detect_anomaly:
    """Turn anomaly detection on or off; as a context manager, restore the old setting on exit."""

    def __init__(self, mode: bool, check_nan: bool = True):
        global _enabled
        self.previous = _enabled
        _enabled = bool(mode) and bool(check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _enabled
        _enabled = self.previous
        return False


class detect_anomaly(set_detect_anomaly):
    """`with graphc.autograd.detect_anomaly():` — anomaly detection inside the block only."""

    def __init__(self, check_nan: bool = True):
        self.previous = _enabled
        self.check_nan = check_nan

    def __enter__(self):
        global _enabled
        _enabled = bool(self.check_nan)
        return self
