"""Graph passes: each a function from Graph to Graph (or to an analysis), with its own tests."""
from graphc.passes.autodiff import autodiff
from graphc.passes.algebra import simplify_algebra
from graphc.passes.common_subexpressions import eliminate_common_subexpressions
from graphc.passes.constant_folding import fold_constants
from graphc.passes.dead_code import eliminate_dead_code
from graphc.passes.views import collapse_views
from graphc.passes.simplify import simplify

__all__ = ["autodiff", "simplify", "eliminate_dead_code", "eliminate_common_subexpressions",
           "fold_constants", "simplify_algebra", "collapse_views"]
