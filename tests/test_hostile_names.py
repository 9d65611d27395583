"""User-supplied strings (module, parameter and buffer names, source file names) never reach the
generated C outside comments, and cannot end a comment early.

A model whose names are C code, quotes, comment terminators, backslashes and newlines trains
(compiled and lazily) to the same numbers as a NumPy float64 reference; then every C file in the
private build cache is scanned with its comments removed.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc import backend, nn, optim
from graphc.nn.parameter import Parameter

# Names PyTorch accepts (anything but "" and names containing "."), chosen to break C if pasted in.
HOSTILE = {
    "layer_in": 'x; system("touch PWNED"); int hostile_a',
    "layer_out": "*/ int hostile_b = 1; /*",
    "scale": "quote\" ' hostile_c \\\" \\",
    "shift": "back\\slash hostile_d \\\nnew line */ hostile_e",
}
# Fragments that appear in no generated code unless a name leaked.
MARKERS = ("PWNED", "system(", "hostile_a", "hostile_b", "hostile_c", "hostile_d", "hostile_e", "hostile_f")
EVIL_FILE_NAME = "evil */ int hostile_f = 1; /*\n.py"

LR, STEPS = 0.1, 3


class HostileModel(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.blocks = nn.ModuleDict({HOSTILE["layer_in"]: nn.Linear(5, 7), HOSTILE["layer_out"]: nn.Linear(7, 3)})
        self.register_parameter(HOSTILE["scale"], Parameter(graphc.tensor(rng.standard_normal(3).astype(np.float32))))
        self.register_buffer(HOSTILE["shift"], graphc.tensor(rng.standard_normal(3).astype(np.float32)))

    def forward(self, x):
        h = self.blocks[HOSTILE["layer_in"]](x).tanh()
        return self.blocks[HOSTILE["layer_out"]](h) * getattr(self, HOSTILE["scale"]) + getattr(self, HOSTILE["shift"])


def numpy_reference(state: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The same training in float64 NumPy: forward, hand-derived backward, plain SGD."""
    p = {k: v.astype(np.float64) for k, v in state.items()}
    w1, b1 = p[f"blocks.{HOSTILE['layer_in']}.weight"], p[f"blocks.{HOSTILE['layer_in']}.bias"]
    w2, b2 = p[f"blocks.{HOSTILE['layer_out']}.weight"], p[f"blocks.{HOSTILE['layer_out']}.bias"]
    scale, shift = p[HOSTILE["scale"]], p[HOSTILE["shift"]]
    for _ in range(STEPS):
        h = np.tanh(x @ w1.T + b1)
        z = h @ w2.T + b2
        out = z * scale + shift
        d_out = 2.0 * (out - y) / out.size
        d_scale = (d_out * z).sum(0)
        d_z = d_out * scale
        d_w2, d_b2 = d_z.T @ h, d_z.sum(0)
        d_pre = (d_z @ w2) * (1.0 - h * h)
        d_w1, d_b1 = d_pre.T @ x, d_pre.sum(0)
        w1, b1, w2, b2, scale = (w1 - LR * d_w1, b1 - LR * d_b1, w2 - LR * d_w2, b2 - LR * d_b2,
                                 scale - LR * d_scale)
    return {f"blocks.{HOSTILE['layer_in']}.weight": w1, f"blocks.{HOSTILE['layer_in']}.bias": b1,
            f"blocks.{HOSTILE['layer_out']}.weight": w2, f"blocks.{HOSTILE['layer_out']}.bias": b2,
            HOSTILE["scale"]: scale, HOSTILE["shift"]: shift}


# Run from a "file" whose name would end a C comment and start a declaration: the user lines
# recorded in the graph (and printed in the generated C's comments) carry this name.
TRAINING_SOURCE = '''
def train(model, x, y, compiled):
    optimizer = optim.SGD(model.parameters(), lr=LR)

    def step(x, y):
        optimizer.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss

    run = graphc.compile(step) if compiled else step
    return [float(run(x, y).item()) for _ in range(STEPS)]
'''


def strip_c_comments(source: str) -> str:
    """The C source without its comments (string and character literals kept as they are)."""
    pattern = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
    return pattern.sub(lambda match: " " if match.group(0).startswith("/") else match.group(0), source)


@pytest.mark.parametrize("compiled", [True, False], ids=["graphc.compile", "lazy"])
def test_hostile_names_train_correctly_and_never_reach_the_c_code(compiled, tmp_path, monkeypatch, rng):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(backend, "_programs", {})  # compile here, into this test's cache
    monkeypatch.chdir(tmp_path)  # a leaked `system("touch PWNED")` would land here
    namespace = {"optim": optim, "graphc": graphc, "LR": LR, "STEPS": STEPS}
    exec(compile(TRAINING_SOURCE, EVIL_FILE_NAME, "exec"), namespace)

    model = HostileModel(rng)
    assert set(HOSTILE.values()) <= {name.rsplit(".", 1)[-1] if name.startswith("blocks.") else name
                                     for name in model.state_dict()} | {HOSTILE["layer_in"], HOSTILE["layer_out"]}
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    x = rng.standard_normal((9, 5)).astype(np.float32)
    y = rng.standard_normal((9, 3)).astype(np.float32)
    losses = namespace["train"](model, graphc.tensor(x), graphc.tensor(y), compiled)

    want = numpy_reference(before, x.astype(np.float64), y.astype(np.float64))
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), want[name], rtol=1e-4, atol=1e-5, err_msg=repr(name))
    assert losses[-1] < losses[0]

    # C sources, and CUDA ones where the suite runs on a GPU (GRAPHC_DEVICE_TESTS=1)
    sources = sorted([*(tmp_path / "cache").rglob("*.c"), *(tmp_path / "cache").rglob("*.cu")])
    assert sources, "nothing was compiled into the private cache"
    seen_in_comments = False
    for path in sources:
        text = path.read_text()
        code = strip_c_comments(text)
        for marker in MARKERS:
            assert marker not in code, f"{marker!r} reached the C code of {path}"
        for name in HOSTILE.values():
            assert name not in code
        seen_in_comments |= "hostile_f" in text  # the file name is kept, made safe, in comments
        assert "*/ int hostile_f" not in text and EVIL_FILE_NAME not in text
    assert seen_in_comments, "the generated C no longer names the user's source lines"
    assert not (tmp_path / "PWNED").exists()
