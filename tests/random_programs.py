"""Random Tensor-API programs for differential testing (the compiled C program against the
reference interpreter), shared by `test_differential.py` (hypothesis draws them) and
`python -m tests.fuzz` (a seeded soak).

A program is a start shape, a list of steps `(kind, a, b)` and a flag to differentiate. Each step
turns into one or two lines of Tensor-API Python code that update `t`; the two integers pick the
variant (which unary op, which dimension, which broadcast shape...), reduced modulo what fits the
current shape, and a step that does not fit is skipped. Programs are built by executing those very
lines, so the code printed in a reproducer is the code that ran, and a smaller integer always
means a simpler variant (the minimizer relies on that).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np

import graphc

KINDS = ["unary", "binary", "permute", "slice", "reduce", "expand", "reshape", "matmul", "where",
         "cast", "softmax", "select", "cat"]

# simplest first: the minimizer moves towards index 0
UNARY = {
    "neg": "-t", "abs": "t.abs()", "relu": "t.relu()", "square": "t * t", "tanh": "t.tanh()",
    "exp_small": "(t * 0.25).exp()", "sigmoid": "t.sigmoid()", "sqrt_abs": "(t.abs() + 1).sqrt()",
    "log_abs": "(t.abs() + 1).log()", "sin": "t.sin()", "clamp": "t.clamp(-0.5, 0.5)",
    "floor": "(t * 2 + 0.3183).floor()", "sign": "t.sign() * t",
}
BINARY = {
    "add": "t + other", "sub": "other - t", "mul": "t * other", "maximum": "graphc.maximum(t, other)",
    "minimum": "graphc.minimum(other, t)", "div_safe": "t / (other * other + 1)",
    "pow_abs": "(t.abs() + 0.5) ** (other * 0.5)",
}
REDUCTIONS = ["sum", "amax", "mean", "amin"]
MAX_NUMEL = 4096
MAX_RANK = 4


@dataclass(frozen=True)
class Program:
    """What to build: the input's shape, the steps, whether to differentiate, the data seed."""
    shape: tuple
    steps: tuple
    differentiate: bool
    seed: int

    def describe(self) -> str:
        return (f"Program(shape={self.shape}, steps={list(self.steps)}, "
                f"differentiate={self.differentiate}, seed={self.seed})")


@dataclass
class Built:
    """A built program: the code that ran, and its outputs (lazy tensors, nothing computed)."""
    program: Program
    lines: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    output_names: list = field(default_factory=list)


def random_program(rnd: random.Random, max_steps: int = 8) -> Program:
    """A program drawn from a plain seeded generator (the soak's source)."""
    rank = rnd.choice([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    shape = tuple(rnd.randint(1, 5) for _ in range(rank))
    steps = tuple((rnd.choice(KINDS), rnd.randrange(1000), rnd.randrange(1000))
                  for _ in range(rnd.randint(1, max_steps)))
    return Program(shape, steps, rnd.random() < 0.5, rnd.randrange(2 ** 31))


def _array(shape, dtype="float32") -> str:
    return f"graphc.tensor(rng.standard_normal({tuple(shape)!r}).astype(np.{dtype}))"


def _dtype_name(t) -> str:
    return str(t.dtype).rsplit(".", 1)[-1]


def _broadcast_partner(shape: tuple, b: int) -> tuple:
    """The shape of a second operand that broadcasts against `shape` (b picks which kind)."""
    variant = b % 5
    if not shape or variant == 0:
        return shape[-1:]
    if variant == 1:
        return shape
    if variant == 2:   # some dimensions set to 1
        return tuple(1 if (b >> (3 + k)) & 1 else n for k, n in enumerate(shape))
    if variant == 3:
        return ()
    if len(shape) < MAX_RANK:   # broadcasts t up: a new leading dimension
        return (2,) + tuple(1 if (b >> (3 + k)) & 1 else n for k, n in enumerate(shape))
    return shape


def step_code(kind: str, a: int, b: int, t) -> str | None:
    """The Tensor-API line(s) for one step applied to tensor `t`, or None when it does not fit."""
    shape, rank = tuple(t.shape), t.ndim
    if kind == "unary":
        return f"t = {list(UNARY.values())[a % len(UNARY)]}"
    if kind == "binary":
        other = _array(_broadcast_partner(shape, b), _dtype_name(t))
        return f"other = {other}\nt = {list(BINARY.values())[a % len(BINARY)]}"
    if kind == "permute" and rank >= 2:
        dims = list(range(rank))
        random.Random(a).shuffle(dims)
        if b % 2:
            return f"t = t.transpose({dims[0]}, {dims[1]})"
        return f"t = t.permute({', '.join(map(str, dims))})"
    if kind == "slice" and rank >= 1:
        dim = a % rank
        size = shape[dim]
        step = [1, 2, 3, 5, 7][b % 5]
        if (b // 5) % 2 and size >= 2:   # stop at -1: start must stay before it
            start, stop = (a // rank) % (size - 1), "-1"
        else:
            start, stop = (a // rank) % size, ""
        start_text = str(start - size) if (b // 10) % 2 else str(start)
        index = [":"] * dim + [f"{start_text}:{stop}:{step}"]
        return f"t = t[{', '.join(index)}]"
    if kind == "reduce" and rank >= 1:
        name = REDUCTIONS[b % len(REDUCTIONS)]
        keep = bool((b // 4) % 2)
        mode = (b // 8) % 6
        if mode == 0:
            return f"t = t.{name}()"
        if mode == 1 and rank >= 2:
            dims = tuple(sorted({a % rank, (a // rank) % rank}))
            return f"t = t.{name}(dim={dims!r}, keepdim={keep})"
        dim = a % rank - (rank if mode == 2 else 0)
        return f"t = t.{name}({dim}, keepdim={keep})"
    if kind == "expand":
        ones = [k for k, n in enumerate(shape) if n == 1]
        if ones and b % 2:   # an existing size-1 dimension grows
            sizes = [-1] * rank
            sizes[ones[a % len(ones)]] = 2 + a % 3
            return f"t = t.expand({', '.join(map(str, sizes))})"
        if rank >= MAX_RANK:
            return None
        position = a % (rank + 1)
        sizes = [-1] * (rank + 1)
        sizes[position] = 2 + a % 2
        return f"t = t.unsqueeze({position}).expand({', '.join(map(str, sizes))})"
    if kind == "reshape" and rank >= 1:
        variant = b % 3
        if variant == 1 and rank >= 2:   # merge two neighbours
            d = a % (rank - 1)
            sizes = shape[:d] + (shape[d] * shape[d + 1],) + shape[d + 2:]
            return f"t = t.reshape({', '.join(map(str, sizes))})"
        if variant == 2 and rank < MAX_RANK:   # split one dimension
            for d in range(rank):
                d = (d + a) % rank
                factor = next((f for f in (2, 3) if shape[d] % f == 0 and shape[d] > f), None)
                if factor:
                    sizes = shape[:d] + (factor, -1) + shape[d + 1:]
                    return f"t = t.reshape({', '.join(map(str, sizes))})"
        return "t = t.reshape(-1)"
    if kind == "matmul" and rank >= 1:
        k = 1 + a % 4
        dtype = _dtype_name(t)
        variant = b % 4
        if variant == 1 and rank >= 2:
            return f"w = {_array((k, shape[-2]), dtype)}\nt = w @ t"
        if variant == 2 and rank >= 2:
            return f"w = {_array((shape[-2], k), dtype)}\nt = t.transpose(-2, -1) @ w"
        if variant == 3 and 2 <= rank < MAX_RANK:   # batched, the batch broadcasting
            batch = (shape[-3] if (b // 4) % 2 else 1) if rank >= 3 else (b // 8) % 2 + 1
            return f"w = {_array((batch, shape[-1], k), dtype)}\nt = t @ w"
        return f"w = {_array((shape[-1], k), dtype)}\nt = t @ w"
    if kind == "where":
        variant = b % 3
        if variant == 1:
            other = _array(_broadcast_partner(shape, a), _dtype_name(t))
            return f"other = {other}\nt = graphc.where(t <= other, other, t)"
        if variant == 2:
            return "t = graphc.where((t >= -0.2) & (t < 0.7), t, 0.0)"
        return "t = graphc.where(t > 0.1, t, t * 0.5)"
    if kind == "cast":
        # the offset keeps exact values (a softmax row's sum, a mean of them) off integer
        # boundaries, where truncation would turn a last-bit rounding difference into a whole unit
        return ["t = t.double().float()", "t = (t * 4 + 0.3183).long().float() * 0.25",
                "t = ((t * 4 + 0.3183).long() % 3).float() + t", "t = (t * 3 + 0.3183).int().double()"][b % 4]
    if kind == "select" and rank >= 1:   # an integer index drops a dimension
        dim = a % rank
        index = (a // rank) % shape[dim] - (shape[dim] if b % 2 else 0)
        if (b // 2) % 2:
            return f"t = t.select({dim}, {index})"
        return f"t = t[{', '.join([':'] * dim + [str(index)])}]"
    if kind == "cat" and rank >= 1:
        dim = a % rank
        partner = ["t * 0.5", "t.relu()", f"t.narrow({dim}, 0, 1)"][b % 3]
        return f"t = graphc.cat([t, {partner}], dim={dim})"
    if kind == "softmax" and rank >= 1:
        dim = a % rank
        return f"t = t.{'log_softmax' if b % 2 else 'softmax'}({dim})"
    return None


def build(program: Program, built: Built | None = None) -> Built:
    """Build `program` by executing its lines; the outputs are lazy tensors. Pass `built` to
    keep the lines that ran when a line raises."""
    built = Built(program) if built is None else built
    namespace = {"graphc": graphc, "np": np}

    def run(code):
        built.lines.append(code)   # first: a line that raises is part of the story
        exec(code, namespace)   # noqa: S102 - our own generated lines

    run(f"rng = np.random.default_rng({program.seed})")
    run(f"x = graphc.tensor(rng.standard_normal({tuple(program.shape)!r}).astype(np.float32), "
        f"requires_grad=True)")
    run("t = x")
    for kind, a, b in program.steps:
        code = step_code(kind, a, b, namespace["t"])
        if code is None:
            continue
        run(code)
        t = namespace["t"]
        if t.numel() > MAX_NUMEL or t.ndim > MAX_RANK:
            break
    built.outputs, built.output_names = [namespace["t"]], ["t"]
    if program.differentiate and namespace["t"].requires_grad:
        run("(grad,) = graphc.autograd.grad(t.sum(), x, allow_unused=True)")
        if namespace["grad"] is not None:
            built.outputs.append(namespace["grad"])
            built.output_names.append("grad")
    return built


def simpler_variants(program: Program):
    """Programs one simplification away from `program`, the biggest cuts first (for the
    minimizer): no differentiation, fewer steps, smaller shapes, simpler op variants."""
    if program.differentiate:
        yield replace(program, differentiate=False)
    steps = list(program.steps)
    chunk = len(steps) // 2
    while chunk >= 1:
        for start in range(0, len(steps), chunk):
            kept = steps[:start] + steps[start + chunk:]
            yield replace(program, steps=tuple(kept))
        chunk //= 2
    shape = list(program.shape)
    for d in range(len(shape)):
        yield replace(program, shape=tuple(shape[:d] + shape[d + 1:]))
        for smaller in sorted({1, (shape[d] + 1) // 2, shape[d] - 1}):
            if 1 <= smaller < shape[d]:
                yield replace(program, shape=tuple(shape[:d] + [smaller] + shape[d + 1:]))
    for k, (kind, a, b) in enumerate(steps):
        for simpler in ((kind, 0, 0), (kind, a, 0), (kind, 0, b), (kind, a // 2, b), (kind, a, b // 2)):
            if simpler != (kind, a, b):
                yield replace(program, steps=tuple(steps[:k] + [simpler] + steps[k + 1:]))
