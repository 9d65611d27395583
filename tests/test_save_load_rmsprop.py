"""graphc.save / graphc.load, and RMSprop against a NumPy re-implementation."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import nn, optim
from graphc.serialization import SerializationError


def small_model():
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_state_dicts_round_trip(tmp_path, rng):
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = graphc.tensor(rng.standard_normal((4, 6)).astype(np.float32))
    model(x).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.graphc"
    graphc.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, path)
    loaded = graphc.load(path)
    assert loaded["epoch"] == 3
    fresh = small_model()
    fresh.load_state_dict(loaded["model"])
    np.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())
    fresh_optimizer = optim.SGD(fresh.parameters(), lr=0.5, momentum=0.1)
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    assert fresh_optimizer.param_groups[0]["lr"] == 0.1
    for p, q in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(optimizer.state[p]["momentum_buffer"].numpy(),
                                      fresh_optimizer.state[q]["momentum_buffer"].numpy())


def test_types_and_dtypes_survive(tmp_path, rng):
    values = {"ints": graphc.tensor(rng.integers(-5, 5, (2, 3))), "flags": graphc.tensor(rng.random(4) < 0.5),
              "double": graphc.tensor(rng.standard_normal(3)), 7: (1.5, None, "text", [1, 2])}
    graphc.save(values, tmp_path / "values")
    loaded = graphc.load(tmp_path / "values")
    assert loaded[7] == (1.5, None, "text", [1, 2])
    for key in ("ints", "flags", "double"):
        assert loaded[key].dtype is values[key].dtype
        np.testing.assert_array_equal(loaded[key].numpy(), values[key].numpy())


def test_truncated_and_tampered_files_give_clear_errors(tmp_path, rng):
    path = tmp_path / "model.graphc"
    graphc.save(small_model().state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "short").write_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError, match="truncated, altered or not a graphc file"):
        graphc.load(tmp_path / "short")
    tampered = bytearray(data)
    position = data.index(b"NUMPY") + 200  # inside the first tensor's bytes
    tampered[position] ^= 0xFF
    (tmp_path / "tampered").write_bytes(bytes(tampered))
    with pytest.raises(SerializationError, match="corrupt|altered"):
        graphc.load(tmp_path / "tampered")
    (tmp_path / "text").write_text("not a checkpoint")
    with pytest.raises(SerializationError):
        graphc.load(tmp_path / "text")


def test_unsupported_objects_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save a object"):
        graphc.save({"thing": object()}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(centered=True, weight_decay=0.1),
                                     dict(centered=True, momentum=0.5, alpha=0.9)])
def test_rmsprop_matches_numpy(options, rng):
    start = rng.standard_normal((3, 4))
    target = rng.standard_normal((3, 4))
    w = graphc.tensor(start.copy(), requires_grad=True)
    optimizer = optim.RMSprop([w], lr=0.01, **options)
    alpha, eps, momentum = options.get("alpha", 0.99), 1e-8, options.get("momentum", 0)
    weight_decay, centered = options.get("weight_decay", 0), options.get("centered", False)
    p, v, m, b = start.copy(), np.zeros_like(start), np.zeros_like(start), np.zeros_like(start)
    for _ in range(4):
        optimizer.zero_grad()
        ((w - graphc.tensor(target)) ** 2).sum().backward()
        optimizer.step()
        g = 2 * (p - target) + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            m = alpha * m + (1 - alpha) * g
            average = np.sqrt(v - m * m) + eps
        else:
            average = np.sqrt(v) + eps
        if momentum:
            b = momentum * b + g / average
            p = p - 0.01 * b
        else:
            p = p - 0.01 * g / average
    np.testing.assert_allclose(w.detach().numpy(), p, rtol=1e-10, atol=1e-12)
