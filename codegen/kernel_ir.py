"""codegen's kernel IR: loop nests over flat buffers, with an expression tree per value.

It knows nothing of graphc's graph: a lowering builds it, and it can be written by hand in tests.
Expressions render to C (and, by overriding a few pieces, CUDA) text.

    Program
      buffers: the entry point's buffer table (inputs, outputs, the arena of intermediates)
      kernels: each a list of statements (Loop, Let, Store, Accumulate, Gemm, ...)
      entry order: kernels run in list order, one call for the whole program
"""
from __future__ import annotations

from dataclasses import dataclass, field


# ---- expressions ---------------------------------------------------------------------------------
class Expr:
    """A C expression; subclasses render themselves."""


@dataclass(frozen=True)
class Var(Expr):
    """A loop variable, a temporary or an accumulator, by name."""
    name: str


@dataclass(frozen=True)
class Const(Expr):
    """A literal, already in C syntax (e.g. '1.0f', 'INFINITY', '(int64_t)3')."""
    text: str


@dataclass(frozen=True)
class Op(Expr):
    """An operation: `template` with {0}, {1}... replaced by the rendered args."""
    template: str
    args: tuple


@dataclass(frozen=True)
class Load(Expr):
    """buffer[index]; with `mask`, only where mask holds (else `other`), so no out-of-bounds read."""
    buffer: str
    index: Expr
    mask: Expr | None = None
    other: Expr | None = None


# ---- statements ---------------------------------------------------------------------------------
@dataclass
class Let:
    """`const ctype name = value;` — each graph value is computed once per iteration."""
    name: str
    ctype: str
    value: Expr


@dataclass
class Store:
    buffer: str
    index: Expr
    value: Expr


@dataclass
class Declare:
    """A mutable accumulator: `ctype name = init;`."""
    name: str
    ctype: str
    init: Expr


@dataclass
class Accumulate:
    """`name = combine(name, value)`, combine one of '+', '*', 'max' (NaN-propagating)."""
    name: str
    combine: str
    value: Expr


@dataclass
class Loop:
    """for (int64_t var = 0; var < extent; var++) { body }.

    parallel: split iterations over threads (OpenMP) when the kernel is big enough;
    simd: ask the compiler to vectorize (reductions over `reduce` accumulators allowed).
    """
    var: str
    extent: int
    body: list
    parallel: bool = False
    simd: bool = False
    reduce: tuple = ()  # ((combine, accumulator name), ...) carried across iterations
    start: Expr | None = None  # bounds computed at run time: for (var = start; var < stop; ...)
    stop: Expr | None = None


@dataclass
class If:
    """if (condition) { body } else { orelse }."""
    condition: Expr
    body: list
    orelse: list = field(default_factory=list)


@dataclass
class Gemm:
    """C[M,N] (+)= op(A)[M,K] @ op(B)[K,N] through BLAS, row-major, repeated over `batch`.

    Offsets and batch strides are in elements; lda/ldb/ldc are row strides.
    """
    a: str
    b: str
    c: str
    m: int
    n: int
    k: int
    transpose_a: bool
    transpose_b: bool
    lda: int
    ldb: int
    ldc: int
    ctype: str = "float"
    batch: int = 1
    batch_stride_a: int = 0
    batch_stride_b: int = 0
    batch_stride_c: int = 0
    offset_a: int = 0
    offset_b: int = 0
    offset_c: int = 0
    sum_batches: bool = False  # every batch adds into the same C (the first overwrites it)


@dataclass
class Buffer:
    """One entry of the program's buffer table, or a view into the arena.

    role: 'input' | 'output' | 'temp'. Temps live in the arena at `offset` bytes.
    """
    name: str
    ctype: str
    size: int
    role: str
    slot: int = -1
    offset: int = 0
    restrict: bool = True  # False when another buffer of the table may point at the same memory


@dataclass
class Kernel:
    name: str
    body: list
    comment: list = field(default_factory=list)   # fused nodes and user lines, shown above it
    buffers: list = field(default_factory=list)   # names of the buffers it touches
    work: int = 0                                 # elements touched, for the OpenMP threshold


@dataclass
class Program:
    name: str
    buffers: list
    kernels: list
    arena_slot: int = -1
    arena_bytes: int = 0
    uses_blas: bool = False
    uses_random: bool = False
    checks_indices: bool = False   # gathers/scatters record an out-of-range index (graphc_index_error)
    comment: list = field(default_factory=list)

    def buffer(self, name: str) -> Buffer:
        for buffer in self.buffers:
            if buffer.name == name:
                return buffer
        raise KeyError(name)


def walk_statements(statements):
    """Every statement of a body, nested loop and branch bodies included, in source order."""
    for statement in statements:
        yield statement
        if isinstance(statement, Loop):
            yield from walk_statements(statement.body)
        elif isinstance(statement, If):
            yield from walk_statements(statement.body)
            yield from walk_statements(statement.orelse)
