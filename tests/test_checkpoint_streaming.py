"""graphc.load reads each tensor straight into its final array (memory grows by the tensors' bytes,
not twice that), files in the layout graphc always wrote still load, and a save that cannot write
names the target and its directory, not the hidden temporary file."""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.serialization import SerializationError

ROOT = Path(__file__).resolve().parents[1]


def sample_state(rng) -> dict:
    nan_with_payload = np.array([0x7FC00001, 0xFFC12345, 0x80000000], dtype=np.uint32).view(np.float32)
    return {
        "weight": graphc.tensor(rng.standard_normal((33, 17)).astype(np.float32), requires_grad=True),
        "bits": graphc.tensor(nan_with_payload.copy()),             # NaN payloads and -0.0, bit for bit
        "double": graphc.tensor(rng.standard_normal((2, 3, 4))),
        "scalar": graphc.tensor(np.float64(2.5)),                     # 0-d
        "empty": graphc.tensor(np.zeros((0, 5), dtype=np.float32)),
        "ints": graphc.tensor(rng.integers(-2**40, 2**40, (7,))),
        "int32": graphc.tensor(rng.integers(-9, 9, (3, 3)).astype(np.int32)),
        "mask": graphc.tensor(rng.random((4, 4)) < 0.5),
        "nested": [{"step": 12, "lr": 0.1, "name": "adam", "none": None}, (1, 2.5, "x")],
    }


def assert_same_state(loaded: dict, saved: dict) -> None:
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        if isinstance(value, graphc.Tensor):
            got = loaded[key]
            assert got.dtype is value.dtype and tuple(got.shape) == tuple(value.shape)
            assert got.requires_grad == value.requires_grad
            a, b = got.detach().numpy(), value.detach().numpy()
            assert a.tobytes() == b.tobytes(), key   # exact, NaN payloads included
        else:
            assert loaded[key] == value


def test_values_round_trip_exactly(tmp_path, rng):
    state = sample_state(rng)
    graphc.save(state, tmp_path / "state.graphc")
    loaded = graphc.load(tmp_path / "state.graphc")
    assert_same_state(loaded, state)
    # the loaded tensors own their arrays: writing one changes nothing else
    loaded["weight"].detach().numpy()[0, 0] = 7.0
    assert graphc.load(tmp_path / "state.graphc")["weight"].detach().numpy()[0, 0] != 7.0


def old_write(path, header: dict, arrays, compression=zipfile.ZIP_STORED) -> None:
    """How graphc.save wrote files before streaming (np.save into memory, then writestr)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("structure.json", json.dumps(header))
        for index, array in enumerate(arrays):
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            archive.writestr(f"tensor{index}.npy", buffer.getvalue())


class ReadOnlyStream:
    """A file object with read/seek/tell only (no readinto): loading takes zipfile's own reader."""

    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)
        self.read, self.seek, self.tell = self._inner.read, self._inner.seek, self._inner.tell

    def seekable(self):
        return True


@pytest.mark.parametrize("how", ["stored", "deflated", "open file", "stream without readinto"])
def test_files_in_the_layout_graphc_always_wrote_still_load(how, tmp_path, rng):
    weight = rng.standard_normal((5, 6)).astype(np.float32)
    fortran = np.asfortranarray(rng.standard_normal((3, 4)))    # np.save keeps Fortran order
    header = {"format": "graphc-save-1", "structure": {"dict": [
        [{"value": "w"}, {"tensor": 0, "dtype": "float32", "shape": [5, 6], "requires_grad": True}],
        [{"value": "f"}, {"tensor": 1, "dtype": "float64", "shape": [3, 4], "requires_grad": False}],
        [{"value": "epoch"}, {"value": 4}]]}}
    path = tmp_path / "old.graphc"
    old_write(path, header, [weight, fortran],
              zipfile.ZIP_DEFLATED if how == "deflated" else zipfile.ZIP_STORED)
    if how == "open file":
        with open(path, "rb") as file:
            loaded = graphc.load(file)
    elif how == "stream without readinto":
        loaded = graphc.load(ReadOnlyStream(path.read_bytes()))
    else:
        loaded = graphc.load(path)
    assert loaded["epoch"] == 4 and loaded["w"].requires_grad
    np.testing.assert_array_equal(loaded["w"].detach().numpy(), weight)
    np.testing.assert_array_equal(loaded["f"].numpy(), fortran)


def test_a_file_graphc_saves_now_is_a_plain_npz(tmp_path, rng):
    """The layout is unchanged: NumPy reads the members, as before."""
    weight = rng.standard_normal((9, 2)).astype(np.float32)
    graphc.save({"w": graphc.from_numpy(weight)}, tmp_path / "new.graphc")
    with np.load(tmp_path / "new.graphc", allow_pickle=False) as members:
        np.testing.assert_array_equal(members["tensor0"], weight)
    with zipfile.ZipFile(tmp_path / "new.graphc") as archive:
        assert json.loads(archive.read("structure.json"))["format"] == "graphc-save-1"


def test_load_allocates_the_tensors_once(tmp_path, rng):
    arrays = {f"w{k}": rng.standard_normal(1 << 19).astype(np.float32) for k in range(8)}   # 8 x 2 MiB
    total = sum(array.nbytes for array in arrays.values())
    graphc.save({name: graphc.from_numpy(array) for name, array in arrays.items()}, tmp_path / "s.graphc")
    tracemalloc.start()
    try:
        loaded = graphc.load(tmp_path / "s.graphc")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # before: each member was read into bytes and then copied (a second tensor's worth at least)
    assert peak < total + (1 << 20), f"peak {peak / 2**20:.1f} MiB for {total / 2**20:.0f} MiB of tensors"
    assert current >= total
    for name, array in arrays.items():
        assert loaded[name].numpy().tobytes() == array.tobytes()


PEAK_CHILD = textwrap.dedent(
    """
    import json, sys, numpy as np, graphc
    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")   # VmHWM starts again from the current resident size
    before = kib("VmRSS")
    state = graphc.load(sys.argv[1])
    peak = kib("VmHWM")
    arrays = [t.numpy() for t in state.values()]
    print(json.dumps({"grown_kib": peak - before, "bytes": sum(a.nbytes for a in arrays),
                      "sums": [float(a.astype(np.float64).sum()) for a in arrays]}))
    """
)


def test_peak_resident_memory_of_a_load_is_the_tensors(tmp_path, rng):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("resetting the peak resident size needs a writable /proc/self/clear_refs (Linux)")
    arrays = [rng.standard_normal(1 << 21).astype(np.float32) for _ in range(6)]   # 6 x 8 MiB
    total = sum(array.nbytes for array in arrays)
    graphc.save({f"w{k}": graphc.from_numpy(a) for k, a in enumerate(arrays)}, tmp_path / "s.graphc")
    completed = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(tmp_path / "s.graphc")],
                               capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["bytes"] == total
    grown = result["grown_kib"] * 1024
    assert grown < total + (8 << 20), f"resident memory grew {grown / 2**20:.1f} MiB for {total >> 20} MiB"
    assert result["sums"] == [float(a.astype(np.float64).sum()) for a in arrays]


def test_a_header_claiming_more_data_than_the_member_holds_is_refused(tmp_path):
    header = {"format": "graphc-save-1", "structure": {"dict": [
        [{"value": "w"}, {"tensor": 0, "dtype": "float32", "shape": [1 << 40], "requires_grad": False}]]}}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    with zipfile.ZipFile(tmp_path / "liar.graphc", "w") as archive:
        archive.writestr("structure.json", json.dumps(header))
        archive.writestr("tensor0.npy", member.getvalue() + b"\0" * 16)
    # refused from the sizes, before a 4 TiB array is allocated
    with pytest.raises(SerializationError, match=r"tensor 0 has 16 bytes of data, its float32\[1099511627776\] "
                                                 r"needs 4398046511104"):
        graphc.load(tmp_path / "liar.graphc")


def test_a_flipped_bit_in_a_tensor_fails_the_checksum(tmp_path, rng):
    graphc.save({"w": graphc.tensor(rng.standard_normal(4096).astype(np.float32))}, tmp_path / "s.graphc")
    data = bytearray((tmp_path / "s.graphc").read_bytes())
    data[data.index(b"NUMPY") + 3000] ^= 0x10
    (tmp_path / "s.graphc").write_bytes(bytes(data))
    with pytest.raises(SerializationError, match=r"member tensor0.npy is corrupt \(checksum mismatch\)"):
        graphc.load(tmp_path / "s.graphc")


def test_a_newer_format_says_so(tmp_path):
    with zipfile.ZipFile(tmp_path / "future.graphc", "w") as archive:
        archive.writestr("structure.json", json.dumps({"format": "graphc-save-7", "structure": {"value": 1}}))
    with pytest.raises(SerializationError, match="written by a newer graphc \\(format graphc-save-7\\); this "
                                                 "graphc reads graphc-save-1"):
        graphc.load(tmp_path / "future.graphc")


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        graphc.load(tmp_path / "nothing-here.graphc")


# ---- a save that cannot write names the target -------------------------------------------------------
def assert_names_the_target(error: BaseException, target: Path, directory: Path) -> None:
    message = str(error)
    assert f"graphc.save: cannot write {target}" in message, message
    assert str(directory) in message
    assert ".graphc-save-" not in message, message   # not the hidden temporary file


def run_as_root_only(what: str):
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")


@pytest.fixture
def mounted(tmp_path):
    """mount(args, directory): run `mount`, unmounted after the test; skip where mounting is refused."""
    done = []

    def mount(*arguments):
        completed = subprocess.run(["mount", *arguments], capture_output=True, text=True)
        if completed.returncode != 0:
            pytest.skip(f"cannot mount here ({(completed.stderr or completed.stdout).strip()})")
        done.append(arguments[-1])

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "--lazy", target], capture_output=True)


def test_save_into_a_read_only_directory_names_the_target(tmp_path, mounted, rng):
    run_as_root_only("a read-only bind mount")
    directory = tmp_path / "read-only"
    directory.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted("--bind", str(directory), str(directory))
    completed = subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.skip(f"cannot remount read-only here ({completed.stderr.strip()})")
    target = directory / "model.graphc"
    with pytest.raises(OSError) as raised:
        graphc.save({"w": graphc.tensor(rng.standard_normal(8).astype(np.float32))}, target)
    assert raised.value.errno == errno.EROFS
    assert_names_the_target(raised.value, target, directory)
    assert "read-only file system" in str(raised.value)


def test_save_into_an_immutable_directory_names_the_target(tmp_path, rng):
    run_as_root_only("chattr +i")
    directory = tmp_path / "immutable"
    directory.mkdir()
    if shutil.which("chattr") is None:
        pytest.skip("no chattr command")
    completed = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.skip(f"this file system does not take chattr +i ({completed.stderr.strip()})")
    try:
        target = directory / "model.graphc"
        with pytest.raises(PermissionError) as raised:
            graphc.save({"w": graphc.tensor(rng.standard_normal(8).astype(np.float32))}, target)
        assert_names_the_target(raised.value, target, directory)
        assert f"the directory {directory} is not writable" in str(raised.value)
    finally:
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root (the root tests use a "
                                              "read-only mount and chattr instead)")
def test_save_into_a_directory_without_write_permission_names_the_target(tmp_path, rng):
    directory = tmp_path / "locked"
    directory.mkdir(mode=0o500)
    try:
        target = directory / "model.graphc"
        with pytest.raises(PermissionError) as raised:
            graphc.save({"w": graphc.tensor(rng.standard_normal(8).astype(np.float32))}, target)
        assert_names_the_target(raised.value, target, directory)
        assert f"the directory {directory} is not writable" in str(raised.value)
    finally:
        directory.chmod(0o700)


def test_save_below_a_file_names_the_target(tmp_path, rng):
    (tmp_path / "a-file").write_text("not a directory")
    target = tmp_path / "a-file" / "model.graphc"
    with pytest.raises(NotADirectoryError) as raised:
        graphc.save({"w": graphc.tensor(rng.standard_normal(8).astype(np.float32))}, target)
    assert_names_the_target(raised.value, target, tmp_path / "a-file")


def test_save_on_a_full_disk_names_the_target_and_the_size(tmp_path, mounted, rng):
    run_as_root_only("mounting a small tmpfs")
    directory = tmp_path / "small"
    directory.mkdir()
    mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory))
    target = directory / "model.graphc"
    previous = {"w": graphc.tensor(np.arange(8, dtype=np.float32))}
    graphc.save(previous, target)
    with pytest.raises(OSError) as raised:
        graphc.save({"w": graphc.tensor(rng.standard_normal(1 << 19).astype(np.float32))}, target)   # 2 MiB
    assert raised.value.errno == errno.ENOSPC
    assert_names_the_target(raised.value, target, directory)
    assert "the checkpoint needs about 2.0 MiB" in str(raised.value)
    assert [path.name for path in directory.iterdir()] == ["model.graphc"]   # the temporary is gone
    np.testing.assert_array_equal(graphc.load(target)["w"].numpy(), np.arange(8, dtype=np.float32))


def test_the_checkpoint_benchmark_runs_at_a_tiny_size():
    from benchmarks.workloads import checkpoint_load
    outcome = checkpoint_load.measure(1, 4, seed=0, repeats=1, systems=("graphc",))
    measured = outcome["systems"]["graphc"]
    assert outcome["bytes"] == 1 << 20 and measured["checks"] == [outcome["check"]]
    assert measured["seconds"] > 0 and measured["peak_mib"] < 16
