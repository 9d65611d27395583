"""What a compile produces: a file on disk plus the facts callers need about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Artifact"]


@dataclass(frozen=True)
class Artifact:
    """A built file in the cache.

    ``kind`` is "shared-library", "ptx" or "cubin"; ``key`` the cache key it was stored under;
    ``source_path`` the generated source kept beside it (for error messages and ``graphc dump``);
    ``cache_hit`` whether this call found it already built; ``build_seconds`` the compiler's wall
    time when it was built by this call (0.0 on a hit); ``metadata`` what the compiler recorded
    about the build (for instance ``{"sanitize": True}``, which the loader needs to know).
    """

    path: Path
    kind: str
    key: str
    source_path: Path
    cache_hit: bool
    build_seconds: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def read_text(self) -> str:
        """The artifact as text (PTX is text; a shared library is not)."""
        return self.path.read_text()

    def read_source(self) -> str:
        return self.source_path.read_text()
