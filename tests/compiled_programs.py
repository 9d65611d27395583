"""Random *compiled-function programs*: `graphc.compile` against running the same Python uncompiled.

A program is a Python function `step(x0, ...)` generated as source text (`generate`). It takes
tensor arguments (some requiring grad; by position or keyword, sometimes the same tensor twice or
the same tensors every call, sometimes a Python float argument), may read a captured tensor that
requires grad (a closure variable `cw`, or an element of a captured list, and a module-level
global `GW`), Python floats read from a closure (`alpha`), a global (`SCALE`, also through a
helper function), an object attribute (`cfg.beta`) and a module attribute, a module (`model`:
Linear, MLP, one with a float attribute, with Dropout, with BatchNorm) stepped by an optimizer
(SGD, momentum, Nesterov with weight decay, Adam, AdamW, RMSprop). It computes a body drawn by
`random_programs.step_code`, calls `loss.backward()` on `(out * lw).sum()` (a fixed random `lw`,
so gradients are not trivial; sometimes a second backward), may clip gradients, steps the
optimizer, zeros gradients (`zero_grad()`, `zero_grad(set_to_none=False)`, `w.grad.zero_()`,
`w.grad = None`) or lets them accumulate over calls, updates captured tensors in place under
`graphc.no_grad()` and returns values. Between calls the driver may change the floats, rebind
captured tensors (same or another shape), assign `.data` and `.grad` lazy values, toggle
`requires_grad`, train/eval and Dropout's p, change param_group options or zero gradients.

The driver (`run_program`, `differential`) runs a program twice from identical fresh state,
uncompiled and through `graphc.compile`, with fresh random inputs on every call, and compares
call by call every returned value, every `.grad` (arguments', captured tensors', parameters';
None against not-None too), every argument, captured tensor, parameter, buffer, float and
optimizer state entry, and at the end every value returned earlier (a later call must change it
as the Python would, and only so). Outside the compiled function, values are computed by the
reference interpreter. The driver functions only use NumPy and graphc: `reproducer` copies them
verbatim, with the program's source, into a stand-alone script.

Used by `test_compile_differential.py` (a bounded, seeded set) and `python -m tests.fuzz --mode
compiled` (a seeded soak that minimizes what fails).
"""
from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass, field, fields, replace

import numpy as np

import graphc

if __package__:
    from . import random_programs
else:   # imported by pytest, with tests/ on sys.path
    import random_programs

RTOL = 1e-4
ATOL = 1e-5           # scaled by max(1, the largest magnitude of the expected array)
MAX_NUMEL = 512       # compile time dominates: keep the graphs small
FLOAT_VALUES = (0.75, -0.5, 1.25, 0.3)
# which of FLOAT_VALUES a changing float holds at each call: values come back, so a compiled
# function that guards on the value still replays
FLOAT_SCHEDULE = (0, 0, 1, 1, 0, 1, 2, 2, 0)

# the driver's actions between calls, by name (see `_event_code`)
EVENTS = ("rebind", "rebind_shape", "global_rebind", "data", "requires_grad_off", "lr", "momentum",
          "betas", "train_eval", "dropout_p", "zero_grad", "grad_none", "captured_data", "list_rebind",
          "grad_assign", "captured_requires_grad")


@dataclass(frozen=True)
class CompiledProgram:
    """What to generate. Every field has a plain default, so a unit test names only its pattern."""
    seed: int = 0
    shape: tuple = (3, 4)          # x0's shape
    steps: tuple = ()              # the body: random_programs steps (kind, a, b)
    dtype: str = "float32"
    x0_grad: bool = True
    x1: str | None = None          # a second argument combined with x0: None | "mul" | "add" | "sub"
    x1_grad: bool = False
    x1_partner: int = 1            # random_programs._broadcast_partner's b (1: x0's shape)
    closure_tensor: str | None = None   # captured `cw` (requires grad): None | "mul" | "add"
    captured_list: bool = False    # the step reads cw as `ws[0]`, an element of a captured list
    global_tensor: str | None = None    # module-level `GW` (requires grad): None | "mul" | "add"
    captured_shape: str = "last"   # the captured tensors' shape: "last" (x0's last dim) | "full"
    closure_float: str | None = None    # where `alpha` is read: None | "body" | "loss" | "update"
    global_float: str | None = None     # where `SCALE` is read: None | "body" | "loss" | "update" |
    #                                     "helper" (a module-level function the step calls reads it)
    config_float: bool = False     # the step reads `cfg.beta`, an attribute of a captured object
    floats_change: bool = False    # the driver changes alpha, SCALE, cfg.beta and model.scale between calls
    float_arg: bool = False        # a Python float argument `s`, changed between calls
    module: str | None = None      # None | "linear" | "mlp" | "scaled" | "dropout" | "batchnorm"
    optimizer: str | None = None   # None | "sgd" | "momentum" | "nesterov" | "adam" | "adamw" | "rmsprop"
    clip: bool = False             # clip_grad_norm_ on the module's gradients before the step
    zero_grad: str = "none"        # "none" (accumulate) | "start" | "start_keep" | "end"
    update: str | None = None      # captured tensors updated under no_grad: None | "sub_" | "isub"
    captured_grad: str = "keep"    # captured tensors' .grad: "keep" | "none" (end) | "zero" (start)
    backward_twice: bool = False   # a second backward() (of another loss) accumulates into the same grads
    plain_loss: bool = False       # loss = out.sum(), no weights (a gradient may then be an input itself)
    returns: str = "loss"          # "loss" | "tuple" | "dict" | "detached" | "grad"
    events: tuple = ()             # (event name, after which call)
    kwargs: bool = False           # arguments passed by keyword, in an order that changes
    alias_calls: tuple = ()        # calls that pass the same tensor as x0 and x1
    alternate_shapes: bool = False  # x0's first dimension grows by one on odd calls
    reuse_inputs: bool = False     # the same argument tensors every call (their grads accumulate;
    #                                with `update`, the step updates x0 in place too)
    calls: int = 5

    def describe(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) != f.default or f.name in ("seed", "shape")]
        return f"CompiledProgram({', '.join(changed)})"

    @property
    def expects_retraces(self) -> bool:
        """Whether the driver changes something a compiled function may guard between calls
        (so a trace per call is allowed); otherwise the program must replay."""
        return bool(self.events or self.floats_change or self.float_arg or self.alias_calls
                    or self.alternate_shapes or self.kwargs)


# ---- generating -----------------------------------------------------------------------------------
_CONSTANT = re.compile(r"graphc\.tensor\(rng\.standard_normal\((\(.*?\))\)\.astype\(np\.(\w+)\)\)")

SCALED_MODULE = '''
class Scaled(nn.Module):
    """A Linear whose output is multiplied by a Python float attribute."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.scale = 0.5

    def forward(self, x):
        return self.linear(x) * self.scale
'''

# module kind -> (constructor, the submodule whose weight and bias the driver changes)
MODULES = {
    "linear": ("nn.Linear({n}, {k})", "model"),
    "mlp": ("nn.Sequential(nn.Linear({n}, {k}), nn.Tanh(), nn.Linear({k}, {k}))", "model[0]"),
    "scaled": ("Scaled({n}, {k})", "model.linear"),
    "dropout": ("nn.Sequential(nn.Linear({n}, {k}), nn.Dropout(0.25))", "model[0]"),
    # no bias before BatchNorm: its gradient is 0 up to rounding, whose sign Adam would amplify to lr
    "batchnorm": ("nn.Sequential(nn.Linear({n}, {k}, bias=False), nn.BatchNorm1d({k}))", "model[1]"),
}
OPTIMIZERS = {
    "sgd": "optim.SGD(model.parameters(), lr=0.05)",
    "momentum": "optim.SGD(model.parameters(), lr=0.05, momentum=0.9)",
    # eps 1e-3: a gradient that is ~0 (rounding noise of either sign) moves a weight by ~0, not by lr
    "adam": "optim.Adam(model.parameters(), lr=0.01, eps=1e-3)",
    "nesterov": "optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)",
    "adamw": "optim.AdamW(model.parameters(), lr=0.01, eps=1e-3)",
    "rmsprop": "optim.RMSprop(model.parameters(), lr=0.01, eps=1e-3)",
}
CONFIG_CLASS = '''
class Config:
    """Settings the step reads as attributes."""
    beta = 0.75
'''
HELPER_FUNCTION = '''
def scaled(t):
    """A helper the step calls: it reads the global SCALE."""
    return t * SCALE
'''


def _partner(program: CompiledProgram, which: str) -> tuple:
    shape = tuple(program.shape)
    if which == "x1":
        return random_programs._broadcast_partner(shape, program.x1_partner)
    return shape[-1:] if program.captured_shape == "last" else shape


def _array_code(shape, dtype, generator="rng", requires_grad=False) -> str:
    extra = ", requires_grad=True" if requires_grad else ""
    return f"graphc.tensor({generator}.standard_normal({tuple(shape)!r}).astype(np.{dtype}){extra})"


def _float_at(call: int) -> float:
    return FLOAT_VALUES[FLOAT_SCHEDULE[call % len(FLOAT_SCHEDULE)]]


def _float_use(program, where: str) -> list:
    """The names of the floats read at `where` ("body", "loss" or "update"; a float placed in an
    update the program does not make is read in the loss)."""
    has_update = bool(program.update and (program.closure_tensor or program.global_tensor))
    names = []
    for name, place in (("alpha", program.closure_float), ("SCALE", program.global_float)):
        if place == "update" and not has_update:
            place = "loss"
        if place == "helper" and name != "SCALE":
            place = "body"
        if place == where:
            names.append(name)
    return names


@dataclass
class Generated:
    """A program's source and what generating it learned."""
    program: CompiledProgram
    source: str
    body: list = field(default_factory=list)   # the body's lines as they ran at generation


def generate(program: CompiledProgram) -> Generated:
    """The source of `program`: a module defining `make(seed)`, which builds fresh state and
    returns {"step", "inputs", "between", "observed"} (see run_program)."""
    p = program
    dtype = p.dtype
    shape = tuple(p.shape)
    if p.alternate_shapes and len(shape) < 2:
        raise ValueError("alternate_shapes needs x0 of rank >= 2 (the first dimension changes)")
    # generation runs the step's forward lines on stand-in tensors, to learn the shapes they make
    stand_in = {"graphc": graphc, "np": np, "nn": graphc.nn, "rng": np.random.default_rng(0)}
    exec(SCALED_MODULE, stand_in)   # noqa: S102 - our own text

    def stand_in_tensor(shape_, requires_grad):
        return graphc.tensor(np.zeros(shape_, dtype=dtype), requires_grad=requires_grad)

    stand_in["x0"] = stand_in_tensor(shape, p.x0_grad)
    stand_in["x1"] = stand_in_tensor(_partner(p, "x1"), p.x1_grad)
    stand_in["cw"] = stand_in_tensor(_partner(p, "captured"), True)
    stand_in["GW"] = stand_in_tensor(_partner(p, "captured"), True)
    stand_in["alpha"] = stand_in["SCALE"] = stand_in["s"] = 0.5
    stand_in["ws"] = [stand_in["cw"]]
    exec(CONFIG_CLASS + HELPER_FUNCTION, stand_in)   # noqa: S102 - our own text
    stand_in["cfg"] = stand_in["Config"]()
    cw = "ws[0]" if p.captured_list else "cw"   # how the step reads the closure tensor

    setup, constants = [], []          # make()'s lines; the body's hoisted constants
    forward = []                       # the step's lines from the first op to `out = t`

    def run(code):
        exec(code, stand_in)   # noqa: S102 - our own generated lines
        forward.append(code)

    run("t = x0")
    if p.x1:
        run(f"t = t {dict(mul='*', add='+', sub='-')[p.x1]} x1")
    if p.float_arg:
        run("t = t * s")
    if p.closure_tensor:
        run(f"t = t {'*' if p.closure_tensor == 'mul' else '+'} {cw}")
    if p.global_tensor:
        run(f"t = t {'*' if p.global_tensor == 'mul' else '+'} GW")
    for name in _float_use(p, "body"):
        run(f"t = t * {name}" if name == "alpha" else f"t = t + {name}")
    if _float_use(p, "helper"):
        run("t = scaled(t)")
    if p.config_float:
        run("t = t * cfg.beta")
    if p.module:
        if stand_in["t"].ndim == 0:
            run("t = t.reshape(1)")
        n_in = stand_in["t"].shape[-1]
        if p.module == "batchnorm":
            # BatchNorm1d over at least four rows: over two, its output is +-1 whatever the input,
            # and its gradient is float32 rounding noise (compiled and uncompiled disagree by ~1%)
            if stand_in["t"].ndim != 2:
                run(f"t = t.reshape(-1, {n_in})")
            if stand_in["t"].shape[0] < 4:
                run("t = graphc.cat([t, t * 0.5 + 0.25, t * -0.75, t * 1.5 - 0.5], dim=0)")
        n_out = 1 + (p.seed % 4)
        constructor = MODULES[p.module][0].format(n=n_in, k=n_out)
        stand_in["model"] = eval(constructor, stand_in)   # noqa: S307 - our own text
        if dtype != "float32":
            stand_in["model"].to(getattr(graphc, dtype))
        setup.append(f"model = {constructor}" + (f".to(graphc.{dtype})" if dtype != "float32" else ""))
        if p.optimizer:
            setup.append(f"optimizer = {OPTIMIZERS[p.optimizer]}")
        run("t = model(t)")
    run("start = t")
    body = []
    for kind, a, b in p.steps:
        code = random_programs.step_code(kind, a, b, stand_in["t"])
        if code is None:
            continue
        exec(code, stand_in)   # noqa: S102 - our own generated lines
        body.append(code)

        def hoist(match):
            name = f"c{len(constants)}"
            constants.append(f"{name} = {_array_code(eval(match.group(1)), match.group(2))}")  # noqa: S307
            return name
        forward.append(_CONSTANT.sub(hoist, code))
        assert "rng." not in forward[-1], forward[-1]
        t = stand_in["t"]
        if t.numel() > MAX_NUMEL or t.ndim > random_programs.MAX_RANK:
            break
    out = stand_in["t"]
    forward.append("out = t")
    loss_shape = tuple(out.shape)[-1:] if p.alternate_shapes else tuple(out.shape)
    if not p.plain_loss:
        constants.append(f"lw = {_array_code(loss_shape, dtype)}")

    captured = ([cw] if p.closure_tensor else []) + (["GW"] if p.global_tensor else [])
    reach_optimizer = "optimizer" if p.optimizer else ("model" if p.module else None)

    # ---- the step ----------------------------------------------------------------------------
    step = []
    declared = []
    if p.update == "isub":
        declared += [("nonlocal", "cw")] if p.closure_tensor and not p.captured_list else []
        declared += [("global", "GW")] if p.global_tensor else []
    for kind in ("nonlocal", "global"):
        names = [n for k, n in declared if k == kind]
        if names:
            step.append(f"{kind} {', '.join(names)}")
    if reach_optimizer and p.zero_grad == "start":
        step.append(f"{reach_optimizer}.zero_grad()")
    elif reach_optimizer and p.zero_grad == "start_keep":
        step.append(f"{reach_optimizer}.zero_grad(set_to_none=False)")
    if p.captured_grad == "zero":
        for name in captured:
            step += [f"if {name}.grad is not None:", f"    {name}.grad.zero_()"]
    twice = p.backward_twice and stand_in["start"].requires_grad
    for code in forward:
        if code == "start = t" and out.requires_grad and not twice:
            continue   # only the fallback loss term and the second backward read it
        step.extend(code.splitlines())
    step.append("loss = out.sum()" if p.plain_loss else "loss = (out * lw).sum()")
    if not out.requires_grad:   # the body cut the gradient (an integer cast): reach the leaves anyway
        step.append("loss = loss + (start * start).mean()")
    for name in _float_use(p, "loss"):
        step.append(f"loss = loss * {name}")
    if twice:
        step += ["loss.backward(retain_graph=True)", "(start * start).mean().backward()   # accumulates"]
    else:
        step.append("loss.backward()")
    if p.clip and p.module:
        step.append("nn.utils.clip_grad_norm_(model.parameters(), 0.5)")
    if p.optimizer:
        step.append("optimizer.step()")
    updated = list(captured) + (["x0"] if p.reuse_inputs and p.x0_grad else [])
    if p.update and updated:
        rates = _float_use(p, "update")
        rate = "0.1" + "".join(f" * {name}" for name in rates)
        step.append("with graphc.no_grad():")
        for name in updated:
            step.append(f"    {name}.sub_({rate} * {name}.grad)" if p.update == "sub_" or name == "x0"
                        else f"    {name} -= {rate} * {name}.grad")
    if reach_optimizer and p.zero_grad == "end":
        step.append(f"{reach_optimizer}.zero_grad()")
    if p.captured_grad == "none":
        for name in captured:
            step.append(f"{name}.grad = None")
    returned = {"loss": "loss", "tuple": "loss, out", "dict": '{"loss": loss, "out": out, "n": 2}',
                "detached": "out.detach()",
                "grad": f"loss, {captured[0]}.grad" if captured else "loss, out"}[p.returns]
    step.append(f"return {returned}")

    # ---- the driver's hooks ------------------------------------------------------------------
    inputs = _inputs_code(p, dtype)
    between = _between_code(p, dtype)
    observed = []
    if p.closure_tensor:
        observed.append(f'"cw": {cw}')
    if p.global_tensor:
        observed.append('"GW": GW')
    if p.closure_float:
        observed.append('"alpha": alpha')
    if p.global_float:
        observed.append('"SCALE": SCALE')
    if p.config_float:
        observed.append('"cfg.beta": cfg.beta')
    if p.module:
        observed.append('"model": model')
    if p.optimizer:
        observed.append('"optimizer": optimizer')

    lines = ['"""A generated compiled-function program (tests/compiled_programs.py)."""',
             "import numpy as np", "", "import graphc", "from graphc import nn, optim", ""]
    if p.module == "scaled":
        lines += [""] + SCALED_MODULE.strip("\n").splitlines() + ["", ""]
    if p.global_tensor:
        lines.append("GW = None      # a module-level tensor the step reads (make() sets it)")
    if p.global_float:
        lines.append("SCALE = 0.0    # a module-level float the step reads (make() sets it)")
    if _float_use(p, "helper"):
        lines += [""] + HELPER_FUNCTION.strip("\n").splitlines()
    if p.config_float:
        lines += [""] + CONFIG_CLASS.strip("\n").splitlines()
    while lines[-1] == "":
        lines.pop()
    lines += ["", "", "def make(seed):"]
    make = []
    globals_set = [n for n, used in (("GW", p.global_tensor), ("SCALE", p.global_float)) if used]
    if globals_set:
        make.append(f"global {', '.join(globals_set)}")
    make += ["rng = np.random.default_rng(seed)", "data = np.random.default_rng(seed + 1)   # inputs",
             "graphc.manual_seed(seed)"]
    if p.closure_tensor:
        make.append(f"cw = {_array_code(_partner(p, 'captured'), dtype, requires_grad=True)}")
        if p.captured_list:
            make.append("ws = [cw]")
    if p.config_float:
        make.append("cfg = Config()")
    if p.global_tensor:
        make.append(f"GW = {_array_code(_partner(p, 'captured'), dtype, requires_grad=True)}")
    if p.closure_float:
        make.append(f"alpha = {_float_at(0)!r}")
    if p.global_float:
        make.append(f"SCALE = {_float_at(0)!r}")
    make += setup
    if p.module == "scaled":
        make.append(f"model.scale = {_float_at(0)!r}")
    make += constants
    make += ["", f"def step({_parameters(p)}):"] + ["    " + line for line in step]
    if p.reuse_inputs:
        make += ["", "fixed = None   # the arguments, made once"]
        make += ["", "def fresh(call):"] + ["    " + line for line in inputs]
        make += ["", "def inputs(call):", "    \"\"\"The same tensors every call: (args, kwargs).\"\"\"",
                 "    nonlocal fixed", "    if fixed is None:", "        fixed = fresh(call)", "    return fixed"]
    else:
        make += ["", "def inputs(call):", "    \"\"\"Fresh tensors for call `call`: (args, kwargs).\"\"\""]
        make += ["    " + line for line in inputs]
    make += ["", "def between(call):", "    \"\"\"What the driver does after call `call`.\"\"\""]
    make += ["    " + line for line in between]
    make += ["", "def observed():", "    \"\"\"What the driver compares after each call.\"\"\"",
             f"    return {{{', '.join(observed)}}}", "",
             'return {"step": step, "inputs": inputs, "between": between, "observed": observed}']
    lines += ["    " + line if line else "" for line in make]
    return Generated(program, "\n".join(lines) + "\n", body)


def _parameters(p) -> str:
    names = ["x0"] + (["x1"] if p.x1 else []) + (["s"] if p.float_arg else [])
    return ", ".join(names)


def _inputs_code(p, dtype) -> list:
    lines = []
    first = f"data.standard_normal({tuple(p.shape)!r})"
    if p.alternate_shapes:
        grown = (p.shape[0] + 1,) + tuple(p.shape[1:])
        first = f"data.standard_normal({tuple(p.shape)!r} if call % 2 == 0 else {grown!r})"
    extra = ", requires_grad=True" if p.x0_grad else ""
    lines.append(f"x0 = graphc.tensor({first}.astype(np.{dtype}){extra})")
    names = ["x0"]
    if p.x1:
        lines.append(f"x1 = {_array_code(_partner(p, 'x1'), dtype, 'data', p.x1_grad)}")
        if p.alias_calls:
            lines.append(f"if call in {tuple(p.alias_calls)!r}:")
            lines.append("    x1 = x0   # the same tensor passed twice")
        names.append("x1")
    if p.float_arg:
        lines.append(f"s = {FLOAT_VALUES!r}[{FLOAT_SCHEDULE!r}[call % {len(FLOAT_SCHEDULE)}]]")
        names.append("s")
    if p.kwargs:   # by keyword, in an order that turns around on odd calls
        pairs = ", ".join(f"({n!r}, {n})" for n in names)
        lines.append(f"pairs = [{pairs}]")
        lines.append("return (), dict(pairs if call % 2 == 0 else pairs[::-1])")
    else:
        lines.append(f"return ({', '.join(names)},), {{}}")
    return lines


def _first_linear(p) -> str:   # (BatchNorm for "batchnorm": its Linear has no bias)
    return MODULES[p.module][1]


def _event_code(p, name, dtype) -> list:
    """The lines of one driver action (nonlocal/global declarations are added by the caller)."""
    captured = _partner(p, "captured")
    if name == "rebind":
        return [f"cw = {_array_code(captured, dtype, 'data', True)}   # a new tensor, same shape"]
    if name == "rebind_shape":
        return [f"cw = {_array_code((1,), dtype, 'data', True)}   # a new tensor, another shape"]
    if name == "global_rebind":
        return [f"GW = {_array_code(captured, dtype, 'data', True)}"]
    if name == "captured_data":
        return ["cw.data = cw.detach() * 0.5 + 0.25   # a lazy value"]
    if name == "list_rebind":
        return [f"ws[0] = {_array_code(captured, dtype, 'data', True)}   # the list holds a new tensor"]
    if name == "captured_requires_grad":
        return ["cw.requires_grad_(not cw.requires_grad)"]
    linear = _first_linear(p) if p.module else None
    if name == "data":
        return [f"{linear}.weight.data = {linear}.weight.detach() * 0.5 + 0.01   # a lazy value"]
    if name == "requires_grad_off":
        return [f"{linear}.bias.requires_grad_(False)"]
    if name == "lr":
        return ['optimizer.param_groups[0]["lr"] = 0.02']
    if name == "momentum":
        return ['optimizer.param_groups[0]["momentum"] = 0.5']
    if name == "betas":
        return ['optimizer.param_groups[0]["betas"] = (0.5, 0.9)']
    if name == "train_eval":
        return ["model.train(not model.training)"]
    if name == "dropout_p":
        return ["model[1].p = 0.75"]
    if name == "zero_grad":
        return [("optimizer" if p.optimizer else "model") + ".zero_grad()"]
    if name == "grad_none":
        return ["cw.grad = None"]
    if name == "grad_assign":
        return [f"{linear}.weight.grad = graphc.ones_like({linear}.weight) * 0.1   # a lazy gradient"]
    raise ValueError(f"unknown event {name!r}")


_EVENT_NEEDS = {   # event -> what the program must have for it
    "rebind": lambda p: p.closure_tensor and not p.captured_list,
    "captured_data": lambda p: p.closure_tensor and not p.captured_list,
    "rebind_shape": lambda p: p.closure_tensor and not p.captured_list and p.captured_shape == "last",
    "global_rebind": lambda p: p.global_tensor,
    "data": lambda p: p.module, "requires_grad_off": lambda p: p.module,
    "lr": lambda p: p.optimizer, "momentum": lambda p: p.optimizer == "momentum",
    "betas": lambda p: p.optimizer == "adam", "train_eval": lambda p: p.module,
    "dropout_p": lambda p: p.module == "dropout", "zero_grad": lambda p: p.module,
    "grad_none": lambda p: p.closure_tensor and not p.captured_list,
    "list_rebind": lambda p: p.closure_tensor and p.captured_list,
    "grad_assign": lambda p: p.module,
    # toggled off, the step's backward still has something to reach; no update reads cw.grad
    "captured_requires_grad": lambda p: p.closure_tensor and not p.captured_list and not p.update
    and (p.x0_grad or p.module or p.global_tensor),
}


def _between_code(p, dtype) -> list:
    lines, nonlocal_names, global_names = [], set(), set()
    if p.floats_change and (p.closure_float or p.global_float or p.module == "scaled" or p.config_float):
        lines.append(f"value = {FLOAT_VALUES!r}[{FLOAT_SCHEDULE!r}[(call + 1) % {len(FLOAT_SCHEDULE)}]]"
                     "   # the floats' value for the next call")
        if p.closure_float:
            lines.append("alpha = value")
            nonlocal_names.add("alpha")
        if p.global_float:
            lines.append("SCALE = value")
            global_names.add("SCALE")
        if p.module == "scaled":
            lines.append("model.scale = value")
        if p.config_float:
            lines.append("cfg.beta = value")
    for name, after in p.events:
        if not _EVENT_NEEDS[name](p):
            continue
        if name in ("rebind", "rebind_shape"):
            nonlocal_names.add("cw")
        if name == "global_rebind":
            global_names.add("GW")
        lines.append(f"if call == {after}:")
        lines.extend("    " + line for line in _event_code(p, name, dtype))
    head = []
    if nonlocal_names:
        head.append(f"nonlocal {', '.join(sorted(nonlocal_names))}")
    if global_names:
        head.append(f"global {', '.join(sorted(global_names))}")
    return head + (lines or ["pass"])


def random_program(rnd: random.Random) -> CompiledProgram:
    """A program drawn from a plain seeded generator: every pattern with its probability."""
    rank = rnd.choice([1, 1, 2, 2, 2, 3])
    shape = tuple(rnd.randint(1, 4) for _ in range(rank))
    calls = rnd.randint(4, 6)
    alternate = rank >= 2 and rnd.random() < 0.1
    steps = () if alternate else tuple((rnd.choice(random_programs.KINDS), rnd.randrange(1000),
                                        rnd.randrange(1000)) for _ in range(rnd.randint(0, 4)))
    module = rnd.choice(["linear", "linear", "mlp", "scaled", "dropout", "batchnorm"]) \
        if rnd.random() < 0.45 else None
    optimizer = (rnd.choice(["sgd", "momentum", "momentum", "nesterov", "adam", "adam", "adamw", "rmsprop"])
                 if module and rnd.random() < 0.8 else None)
    x1 = rnd.choice(["mul", "add", "sub"]) if rnd.random() < 0.5 else None
    x1_partner = 1 if alternate else rnd.randrange(1000)
    if alternate and rnd.random() < 0.5:
        x1_partner = 0   # x0's last dimension: broadcasts over the changing first one
    closure_tensor = rnd.choice(["mul", "add"]) if rnd.random() < 0.5 else None
    global_tensor = rnd.choice(["mul", "add"]) if rnd.random() < 0.3 else None
    captured = closure_tensor or global_tensor
    float_places = ["body", "body", "loss"] + (["update"] if captured else [])
    closure_float = rnd.choice(float_places) if rnd.random() < 0.4 else None
    global_float = rnd.choice(float_places + ["helper"]) if rnd.random() < 0.3 else None
    config_float = rnd.random() < 0.15
    x1_grad = rnd.random() < 0.5
    program = CompiledProgram(
        seed=rnd.randrange(2 ** 31), shape=shape, steps=steps,
        # BatchNorm runs in float64: over a few rows of a bias-free Linear (of one input feature,
        # say) its output hardly depends on the weights, whose gradient is then float32 rounding
        # (four soak findings, each agreeing in float64); Adam and RMSprop amplify it up to lr
        dtype="float64" if rnd.random() < 0.15 or module == "batchnorm" else "float32",
        x0_grad=rnd.random() < 0.6, x1=x1, x1_grad=x1_grad, x1_partner=x1_partner,
        closure_tensor=closure_tensor, global_tensor=global_tensor,
        captured_shape="last" if alternate or rnd.random() < 0.6 else "full",
        closure_float=closure_float, global_float=global_float,
        config_float=config_float, captured_list=bool(closure_tensor) and rnd.random() < 0.3,
        floats_change=bool(closure_float or global_float or config_float or module == "scaled")
        and rnd.random() < 0.7,
        clip=bool(module) and rnd.random() < 0.2, backward_twice=rnd.random() < 0.15,
        plain_loss=rnd.random() < 0.1,
        reuse_inputs=not alternate and rnd.random() < 0.15,
        float_arg=rnd.random() < 0.1, module=module, optimizer=optimizer,
        zero_grad=rnd.choices(["none", "start", "start_keep", "end"], [0.3, 0.35, 0.2, 0.15])[0],
        update=rnd.choice(["sub_", "isub"]) if captured and rnd.random() < 0.5 else None,
        captured_grad=rnd.choices(["keep", "none", "zero"], [0.5, 0.25, 0.25])[0],
        returns=rnd.choices(["loss", "tuple", "dict", "detached", "grad"], [0.3, 0.3, 0.15, 0.1, 0.15])[0],
        kwargs=rnd.random() < 0.1, alternate_shapes=alternate, calls=calls)
    if x1 and random_programs._broadcast_partner(shape, x1_partner) == shape and x1_grad == program.x0_grad \
            and rnd.random() < 0.3:
        program = replace(program, alias_calls=tuple(sorted(rnd.sample(range(calls), 2))))
    if not (program.x0_grad or (x1 and x1_grad) or captured or module):
        program = replace(program, x0_grad=True)   # something must require grad
    events = []
    for name in EVENTS:
        if _EVENT_NEEDS[name](program) and rnd.random() < 0.12:
            events.append((name, rnd.randrange(calls - 1)))
    rnd.shuffle(events)
    return replace(program, events=tuple(sorted(events[:2], key=lambda event: event[1])))


def simpler_variants(program: CompiledProgram):
    """Programs one simplification away (for the minimizer), the biggest cuts first."""
    p = program
    defaults = {f.name: f.default for f in fields(CompiledProgram)}
    for name in ("events", "alias_calls", "steps"):
        items = list(getattr(p, name))
        chunk = len(items)
        while chunk >= 1:
            for start in range(0, len(items), chunk):
                yield replace(p, **{name: tuple(items[:start] + items[start + chunk:])})
            chunk //= 2
    for name in ("module", "optimizer", "closure_tensor", "global_tensor", "closure_float", "global_float",
                 "x1", "update", "float_arg", "kwargs", "floats_change", "alternate_shapes", "dtype",
                 "zero_grad", "captured_grad", "returns", "x1_grad", "captured_shape", "x1_partner",
                 "captured_list", "config_float", "clip", "backward_twice", "reuse_inputs", "plain_loss"):
        if getattr(p, name) != defaults[name]:
            yield replace(p, **{name: defaults[name]})
    if p.module == "mlp" or p.module == "scaled":
        yield replace(p, module="linear")
    if p.module == "batchnorm" or p.module == "dropout":
        yield replace(p, module="linear")
    if p.optimizer not in (None, "sgd"):
        yield replace(p, optimizer="sgd")
    if p.global_float == "helper":
        yield replace(p, global_float="body")
    if p.x1 and p.x1_partner:
        yield replace(p, x1_partner=0)
    for calls in range(1, p.calls):
        if all(after < calls - 1 for _, after in p.events):
            yield replace(p, calls=calls)
    shape = list(p.shape)
    for d in range(len(shape)):
        if len(shape) > (2 if p.alternate_shapes else 1):
            yield replace(p, shape=tuple(shape[:d] + shape[d + 1:]))
        for smaller in sorted({1, (shape[d] + 1) // 2, shape[d] - 1}):
            if 1 <= smaller < shape[d]:
                yield replace(p, shape=tuple(shape[:d] + [smaller] + shape[d + 1:]))
    steps = list(p.steps)
    for k, (kind, a, b) in enumerate(steps):
        for simpler in ((kind, 0, 0), (kind, a, 0), (kind, 0, b), (kind, a // 2, b), (kind, a, b // 2)):
            if simpler != (kind, a, b):
                yield replace(p, steps=tuple(steps[:k] + [simpler] + steps[k + 1:]))


# ---- the driver: self-contained (NumPy and graphc only); `reproducer` copies it verbatim ------
def run_program(source, compiled, calls, seed=0, compile_backend="c", reference_backend="numpy"):
    """Run the program in `source` `calls` times from fresh state, uncompiled or through
    graphc.compile. -> (records, final, stats): per call the observations (or what raised),
    every returned value once more after the last call, and the compiled function's stats.
    Values realized outside the compiled function run on `reference_backend` (the interpreter)."""
    import builtins as _builtins
    import linecache as _linecache
    from graphc import backend
    filename = f"<compiled program {'compiled' if compiled else 'uncompiled'} {abs(hash(source))}>"
    _linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "compiled_program"}
    saved = backend.get_default()
    backend.set_default(reference_backend)
    records, results, stats = [], [], None
    try:
        _builtins.exec(_builtins.compile(source, filename, "exec"), namespace)  # noqa: S102
        hooks = namespace["make"](seed)
        step = hooks["step"]
        function = graphc.compile(step, backend=compile_backend) if compiled else step
        for call in range(calls):
            stage = "inputs"
            try:
                args, kwargs = hooks["inputs"](call)
                stage = "call"
                result = function(*args, **kwargs)
                stage = "observe"
                arguments = list(args) + [kwargs[k] for k in sorted(kwargs)]
                records.append(observe(result, arguments, hooks["observed"]()))
                results.append(result)
                stage = "between"
                hooks["between"](call)
            except Exception as error:   # noqa: BLE001 - what raised is compared too
                import traceback as _traceback
                where = [f"line {frame.lineno}: {frame.line}" for frame in _traceback.extract_tb(error.__traceback__)
                         if frame.filename == filename]
                records.append({"raised": f"{stage}: {type(error).__name__}",
                                "raised message": f"{type(error).__name__} at {where[-1] if where else stage}: {error}",
                                "raised traceback": _traceback.format_exc()})
                break
        if compiled:
            stats = dict(function.stats(), driver_calls=len(records))
    finally:
        backend.set_default(saved)
    final = {}
    try:
        for call, result in enumerate(results):
            record_value(final, f"call {call} result", result)
    except Exception as error:   # noqa: BLE001
        final["raised"] = f"rereading results: {type(error).__name__}: {error}"
    return records, final, stats


def tensor_value(tensor):
    """A tensor as a NumPy copy (None stays None)."""
    if tensor is None:
        return None
    return np.array(tensor.detach().numpy(), copy=True)


def record_value(entries, name, value):
    """Add `value` (a tensor, number, None, or a list/tuple/dict of them) under `name`."""
    if isinstance(value, graphc.Tensor):
        entries[name] = tensor_value(value)
    elif isinstance(value, (list, tuple)):
        entries[name + " type"] = type(value).__name__
        for k, item in enumerate(value):
            record_value(entries, f"{name}[{k}]", item)
    elif isinstance(value, dict):
        entries[name + " keys"] = repr(list(value))
        for key, item in value.items():
            record_value(entries, f"{name}[{key!r}]", item)
    else:
        entries[name] = value


def observe(result, arguments, observed) -> dict:
    """Everything compared after a call: the result, the arguments' grads, and each observed
    object's values, grads, requires_grad flags, training flags and optimizer state."""
    entries = {}
    record_value(entries, "result", result)
    for k, argument in enumerate(arguments):
        if isinstance(argument, graphc.Tensor):
            entries[f"argument {k}"] = tensor_value(argument)
            entries[f"argument {k}.grad"] = tensor_value(argument.grad)
    for name, item in observed.items():
        if isinstance(item, graphc.Tensor):
            entries[name] = tensor_value(item)
            entries[name + ".grad"] = tensor_value(item.grad)
            entries[name + ".requires_grad"] = item.requires_grad
        elif isinstance(item, graphc.nn.Module):
            entries[name + ".training"] = [m.training for m in item.modules()]
            for key, parameter in item.named_parameters():
                entries[f"{name}.{key}"] = tensor_value(parameter)
                entries[f"{name}.{key}.grad"] = tensor_value(parameter.grad)
                entries[f"{name}.{key}.requires_grad"] = parameter.requires_grad
            for key, buffer in item.named_buffers():
                entries[f"{name}.{key} (buffer)"] = tensor_value(buffer)
        elif isinstance(item, graphc.optim.Optimizer):
            number = 0
            for g, group in enumerate(item.param_groups):
                for key, option in group.items():
                    if key != "params":
                        entries[f"{name}.param_groups[{g}][{key!r}]"] = option
                for parameter in group["params"]:
                    state = item.state.get(parameter, {})
                    entries[f"{name}.state[{number}] keys"] = sorted(state)
                    for key, value in state.items():
                        record_value(entries, f"{name}.state[{number}][{key!r}]", value)
                    number += 1
        else:
            record_value(entries, name, item)
    return entries


def difference(got, want):
    """Why an observed `got` (compiled) disagrees with `want` (uncompiled), or None."""
    if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
        if not (isinstance(want, np.ndarray) and isinstance(got, np.ndarray)):
            return f"compiled {_brief(got)}, uncompiled {_brief(want)}"
        if got.shape != want.shape:
            return f"shape {list(got.shape)} != {list(want.shape)}"
        if got.dtype != want.dtype:
            return f"dtype {got.dtype} != {want.dtype}"
        if want.size == 0:
            return None
        expected, actual = want.astype(np.float64), got.astype(np.float64)
        finite = np.isfinite(expected)
        scale = max(1.0, float(np.abs(expected[finite]).max())) if finite.any() else 1.0
        close = np.isclose(actual, expected, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
        if close.all():
            return None
        worst = np.unravel_index(np.argmax(np.where(close, 0, np.abs(actual - expected) + 1)), want.shape)
        return (f"{int((~close).sum())} of {want.size} differ; at {list(map(int, worst))}: compiled "
                f"{actual[worst]!r}, uncompiled {expected[worst]!r}")
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return None if np.isclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True) \
            else f"compiled {got!r}, uncompiled {want!r}"
    return None if got == want else f"compiled {_brief(got)}, uncompiled {_brief(want)}"


def _brief(value):
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array {list(value.shape)} {value.dtype}"
    return repr(value)


def compare(want_records, got_records, want_final, got_final) -> list:
    """Every disagreement, as 'call K: NAME: why', in call order."""
    problems = []
    for call in range(min(len(want_records), len(got_records))):
        want, got = want_records[call], got_records[call]
        if "raised" in want or "raised" in got:   # the same error on both sides agrees
            if want.get("raised") != got.get("raised"):
                problems.append(f"call {call}: raised: compiled {got.get('raised message', 'nothing')!r}; "
                                f"uncompiled {want.get('raised message', 'nothing')!r}")
            return problems
        for name in list(want) + [n for n in got if n not in want]:
            if name not in got or name not in want:
                side = "compiled" if name not in got else "uncompiled"
                problems.append(f"call {call}: {name}: missing from the {side} run")
                continue
            why = difference(got[name], want[name])
            if why is not None:
                problems.append(f"call {call}: {name}: {why}")
    if problems:
        return problems
    for name in list(want_final) + [n for n in got_final if n not in want_final]:
        why = difference(got_final.get(name), want_final.get(name))
        if why is not None:
            problems.append(f"after the last call: {name}: {why}")
    return problems


def differential(source, calls, seed=0, compile_backend="c"):
    """Run `source` uncompiled and compiled. -> (problems, the compiled function's stats)."""
    want, want_final, _ = run_program(source, False, calls, seed)
    got, got_final, stats = run_program(source, True, calls, seed, compile_backend=compile_backend)
    return compare(want, got, want_final, got_final), stats


def replays(stats) -> int:
    """How many calls replayed a compiled program: neither traced, nor run uncompiled past the
    variant limit, nor under guards the compiled function chose to run uncompiled."""
    if not stats:
        return 0
    kept = [entry for entry in stats["history"] if entry.get("kept")]   # one per variant, in order
    uncompiled = sum(calls for entry, calls in zip(kept, stats["calls"]) if entry.get("uncompiled"))
    return stats["driver_calls"] - stats["traces"] - stats["fallbacks"] - uncompiled


def main(source, calls, seed=0) -> int:
    """Print every disagreement and the compiled function's traces; 1 when they disagree."""
    want, want_final, _ = run_program(source, False, calls, seed)
    got, got_final, stats = run_program(source, True, calls, seed)
    problems = compare(want, got, want_final, got_final)
    for side, records in (("uncompiled", want), ("compiled", got)):
        if records and "raised traceback" in records[-1]:
            print(f"---- the {side} run raised at call {len(records) - 1}:\n{records[-1]['raised traceback']}")
    for problem in problems:
        print("MISMATCH", problem)
    if stats:
        print(f"compiled: {stats['traces']} trace(s) for {stats['driver_calls']} calls, {replays(stats)} replayed")
        for entry in stats["history"]:
            print("  trace:", entry["reason"], "" if entry.get("kept") else f"(not kept: {entry.get('note')})",
                  f"(runs uncompiled: {entry['uncompiled']})" if entry.get("uncompiled") else "")
    print("compiled and uncompiled runs agree" if not problems else f"{len(problems)} disagreement(s)")
    return 1 if problems else 0


DRIVER = (run_program, tensor_value, record_value, observe, difference, _brief, compare, differential,
          replays, main)


# ---- checking, minimizing, reproducing --------------------------------------------------------------
@dataclass
class Outcome:
    """A checked program: its disagreements (empty when it agrees) and the compiled stats."""
    program: CompiledProgram
    source: str
    problems: list
    stats: dict | None

    @property
    def signature(self) -> tuple:
        """What kind of failure (compared while minimizing): the first disagreement's name,
        without the call number and the indices that depend on the program's shape."""
        if not self.problems:
            return ()
        first = self.problems[0].split(": ", 2)
        name = first[1] if len(first) > 1 else first[0]
        if name == "raised":   # which side raised what (not the message: it names shapes and lines)
            return ("raised",) + tuple(re.findall(r"(?:^|; )(compiled|uncompiled) ['\"](\w+)", first[2]))
        return ("mismatch", re.sub(r"\[\d+\]", "[]", name))

    @property
    def replays(self) -> int:
        return replays(self.stats)


def check(program: CompiledProgram, compile_backend: str = "c") -> Outcome:
    """Generate `program`, run it uncompiled and compiled, compare."""
    generated = generate(program)
    problems, stats = differential(generated.source, program.calls, program.seed, compile_backend)
    return Outcome(program, generated.source, problems, stats)


def minimize(outcome: Outcome, attempts: int = 150, transform=None) -> Outcome:
    """The simplest program found that still fails like `outcome` (greedy, as fuzz.minimize).
    `transform` (program -> program) is applied to every candidate, e.g. to keep a pattern out."""
    tried, improved, seen = 0, True, {outcome.program}
    while improved and tried < attempts:
        improved = False
        for candidate in simpler_variants(outcome.program):
            candidate = transform(candidate) if transform else candidate
            if candidate in seen:
                continue
            seen.add(candidate)
            tried += 1
            try:
                found = check(candidate)
            except Exception:   # noqa: BLE001 - a simplification that cannot be generated
                found = None
            if found is not None and found.problems and found.signature == outcome.signature:
                outcome, improved = found, True
                break
            if tried >= attempts:
                break
    return outcome


def reproducer(outcome: Outcome, origin: str) -> str:
    """A stand-alone script: the program's source and the driver, comparing the two runs."""
    first = outcome.problems[0] if outcome.problems else "no disagreement"
    body = outcome.source
    if "'''" in body or body.endswith("\\"):
        raise ValueError("the program's source cannot be quoted in ''' '''")
    parts = [f'"""graphc.compile differential reproducer ({origin}): {first}', "",
             f"{outcome.program.describe()}", "",
             "Run it: python THIS_FILE.py (exit status 1 while the compiled run differs from the uncompiled one).",
             '"""', "import numpy as np", "", "import graphc", "", f"PROGRAM = r'''{body}'''",
             f"CALLS = {outcome.program.calls}", f"SEED = {outcome.program.seed}",
             f"RTOL = {RTOL!r}", f"ATOL = {ATOL!r}", ""]
    for function in DRIVER:
        parts += ["", inspect.getsource(function)]
    parts += ["", 'if __name__ == "__main__":', "    raise SystemExit(main(PROGRAM, CALLS, SEED))"]
    return "\n".join(parts) + "\n"


def program_at(seed: int, index: int) -> CompiledProgram:
    """Program `index` of a soak with `seed` (its own generator: replayable alone)."""
    return random_program(random.Random(f"graphc-compiled:{seed}:{index}"))


__all__ = ["CompiledProgram", "generate", "random_program", "check", "minimize", "reproducer",
           "program_at", "run_program", "differential", "simpler_variants"]
