"""Find the user's file:line that called into graphc, for errors and for `graphc dump`."""
from __future__ import annotations

import functools
import os
import sys

_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.abspath(__file__)).rsplit(os.sep, 1)[0] + os.sep + name + os.sep
    for name in ("graphc", "codegen", "runtime"))
_SKIP_PREFIXES = _PACKAGE_DIRS + ("<frozen", )


def user_location() -> str:
    """``path:line`` of the innermost stack frame outside graphc's own packages."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIP_PREFIXES) and "contextlib" not in filename:
            return f"{_short_path(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


@functools.lru_cache(maxsize=256)
def _short_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
