"""Checkpoints survive a writer killed part-way, and loading one never runs a pickle."""
from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.serialization import SerializationError

ROOT = Path(__file__).resolve().parents[1]

# The child builds ~200 MB of float32 arrays (50 x 4 MiB), says so, and saves them over the target.
BIG_SAVE = textwrap.dedent(
    """
    import sys, numpy as np, graphc
    target = sys.argv[1]
    rng = np.random.default_rng(0)
    state = {f"layer{k}.weight": graphc.from_numpy(rng.standard_normal(1 << 20, dtype=np.float32))
             for k in range(50)}
    print("saving", flush=True)
    graphc.save(state, target)
    print("saved", flush=True)
    """
)


def test_checkpoint_killed_mid_save_leaves_the_previous_file_intact(tmp_path, rng):
    target = tmp_path / "model.graphc"
    old = {"layer0.weight": graphc.tensor(rng.standard_normal((7, 129)).astype(np.float32)),
           "step": 41, "note": "previous checkpoint"}
    graphc.save(old, target)
    old_bytes = target.read_bytes()

    child = subprocess.Popen([sys.executable, "-c", BIG_SAVE, str(target)], stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert child.stdout.readline().strip() == "saving"
        deadline, grown = time.monotonic() + 60, None
        while time.monotonic() < deadline and child.poll() is None:
            temporaries = [path for path in tmp_path.iterdir() if path != target]
            sizes = [path.stat().st_size for path in temporaries if path.exists()]
            if sizes and max(sizes) > 16 << 20:  # the temporary file exists and has grown
                grown = max(sizes)
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert grown is not None and child.returncode == -signal.SIGKILL, (
        f"the save was not caught part-way (returncode {child.returncode})")

    assert target.read_bytes() == old_bytes
    loaded = graphc.load(target)
    assert loaded["step"] == 41 and loaded["note"] == "previous checkpoint"
    np.testing.assert_array_equal(loaded["layer0.weight"].numpy(), old["layer0.weight"].numpy())
    # what the killed writer left is one hidden temporary file, named after the target, that is
    # neither the target nor a loadable checkpoint
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.graphc.graphc-save-"), leftovers
    assert leftovers[0].endswith(".tmp")
    with pytest.raises(SerializationError, match="truncated, altered or not a graphc file"):
        graphc.load(tmp_path / leftovers[0])

    # and the next save over it works
    new = {"layer0.weight": graphc.tensor(rng.standard_normal((3, 5)).astype(np.float32))}
    graphc.save(new, target)
    np.testing.assert_array_equal(graphc.load(target)["layer0.weight"].numpy(), new["layer0.weight"].numpy())


class RunsAShellCommand:
    """Unpickling this runs `touch MARKER`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _structure(count: int = 1) -> bytes:
    items = [[{"value": f"w{k}"}, {"tensor": k, "dtype": "float32", "shape": [2], "requires_grad": False}]
             for k in range(count)]
    return json.dumps({"format": "graphc-save-1", "structure": {"dict": items}}).encode()


def test_loading_never_runs_a_pickle(tmp_path, rng):
    marker = tmp_path / "PWNED"
    payload = RunsAShellCommand(marker)
    pickle.loads(pickle.dumps(payload))  # the payload works when it is unpickled...
    assert marker.exists()
    marker.unlink()

    # 1. a graphc file whose tensor member is a pickled object array
    object_array = np.empty(2, dtype=object)
    object_array[:] = [payload, payload]
    member = io.BytesIO()
    np.save(member, object_array, allow_pickle=True)
    honest = io.BytesIO()
    np.save(honest, rng.standard_normal(2).astype(np.float32))
    with zipfile.ZipFile(tmp_path / "object-array.graphc", "w") as archive:
        archive.writestr("structure.json", _structure(2))
        archive.writestr("tensor0.npy", honest.getvalue())
        archive.writestr("tensor1.npy", member.getvalue())
    with pytest.raises(SerializationError, match="tensor 1 is a pickled object array, not raw numbers; "
                                                 "graphc.load never unpickles"):
        graphc.load(tmp_path / "object-array.graphc")

    # 2. a zip holding a pickle (torch.save's layout)
    with zipfile.ZipFile(tmp_path / "torch-style.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": payload}))
    with pytest.raises(SerializationError, match=r"holds a pickle \(archive/data.pkl\), not a graphc file; "
                                                 "graphc.load never unpickles"):
        graphc.load(tmp_path / "torch-style.pt")

    # 3. a whole-file pickle, by path and as an open file
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": payload}))
    with pytest.raises(SerializationError, match="is a Python pickle, not a graphc file"):
        graphc.load(tmp_path / "plain.pkl")
    with open(tmp_path / "plain.pkl", "rb") as file:
        with pytest.raises(SerializationError, match="graphc.load never unpickles"):
            graphc.load(file)

    assert not marker.exists()
