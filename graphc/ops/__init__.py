"""The op table, filled by the modules below (one entry per primitive op)."""
from graphc.ops.table import (CATEGORIES, CONTRACTION, ELEMENTWISE, MOVEMENT, OPS, REDUCE, SOURCE,
                              OpDef, get, is_category, register)
from graphc.ops import elementwise, reduce, movement, contraction, source  # noqa: F401  (fill OPS)
from graphc.ops.emit import Emitter

__all__ = ["OPS", "OpDef", "get", "register", "is_category", "Emitter", "CATEGORIES", "ELEMENTWISE",
           "REDUCE", "MOVEMENT", "CONTRACTION", "SOURCE"]
