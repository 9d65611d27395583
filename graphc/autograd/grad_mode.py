"""Grad mode: whether new ops record what `backward()` needs (`no_grad`, `enable_grad`...)."""
from __future__ import annotations

import contextlib
import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def _set(enabled: bool) -> None:
    _state.enabled = bool(enabled)


class _GradModeContext(contextlib.ContextDecorator):
    """Base for the grad-mode switches: usable as `with` blocks and as decorators."""

    target: bool

    def __enter__(self):
        self._previous = is_grad_enabled()
        _set(self.target)
        return self

    def __exit__(self, *exc):
        _set(self._previous)
        return False

    def __call__(self, function=None):
        if function is None:  # `@no_grad()` written with parentheses on a class-style use
            return self
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return function(*args, **kwargs)
        return wrapper


class no_grad(_GradModeContext):
    """Ops inside do not record gradients: ``with graphc.no_grad(): w -= lr * w.grad``."""
    target = False


class enable_grad(_GradModeContext):
    target = True


class set_grad_enabled(_GradModeContext):
    """``with set_grad_enabled(False): ...``; also works as a plain call."""

    def __init__(self, mode: bool):
        self.target = bool(mode)
        self._previous = is_grad_enabled()
        _set(self.target)  # takes effect at once, like PyTorch's function form

    def __enter__(self):
        return self

    def __call__(self, function=None):
        if function is None:
            return self
        mode = self.target
        _set(self._previous)  # the decorator form should not leave the mode changed
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            previous = is_grad_enabled()
            _set(mode)
            try:
                return function(*args, **kwargs)
            finally:
                _set(previous)
        return wrapper
