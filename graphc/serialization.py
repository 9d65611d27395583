"""graphc.save / graphc.load: state dicts (and optimizer state) in a file that cannot run code.

The file is a zip (NumPy's .npz layout): one raw array per tensor and a JSON description of the
structure (dicts, lists, tuples, numbers, strings, None, tensors). Loading never unpickles (a
pickle can run any code while it loads: a file that holds one is refused with a message saying
so), checks every array's dtype and shape against the description, and the zip's checksums catch
a truncated or altered file.

Writing goes to a hidden temporary file beside the target (``.NAME.graphc-save-XXXX.tmp``),
flushed to disk, then renamed over the target, and the directory is synced so the rename itself
survives a power cut: a process killed part-way leaves the previous file whole (and at worst that
hidden temporary file, which `load` never reads unless asked for it by name).

    graphc.save(model.state_dict(), "model.graphc")
    model.load_state_dict(graphc.load("model.graphc"))
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from graphc import dtypes
from graphc.errors import GraphcError

FORMAT = "graphc-save-1"


class SerializationError(GraphcError):
    """A file graphc.load cannot read: not a graphc file, truncated, altered, or inconsistent."""


def save(obj, f) -> None:
    """Write `obj` (tensors in nested dicts/lists/tuples of numbers and strings) to path or file `f`."""
    arrays: list = []
    structure = _encode(obj, arrays)
    header = json.dumps({"format": FORMAT, "structure": structure})
    if hasattr(f, "write"):
        _write(f, header, arrays)
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.graphc-save-", suffix=".tmp",
                                         dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            _write(file, header, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def _sync_directory(directory: str) -> None:
    """fsync a directory, so a rename in it is on disk (not possible on every OS or file system)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _write(file, header: str, arrays: list) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("structure.json", header)
        for index, array in enumerate(arrays):
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            archive.writestr(f"tensor{index}.npy", buffer.getvalue())


def _encode(value, arrays):
    from graphc.tensor import Tensor
    if isinstance(value, Tensor):
        array = np.ascontiguousarray(value.detach()._value())
        arrays.append(array)
        return {"tensor": len(arrays) - 1, "dtype": value.dtype.name, "shape": list(array.shape),
                "requires_grad": bool(value.requires_grad)}
    if isinstance(value, dict):
        return {"dict": [[_encode_key(k), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [_encode(v, arrays) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"graphc.save: cannot save a {type(value).__name__} (tensors, numbers, strings, None "
                    "and dicts/lists/tuples of them only)")


def _encode_key(key):
    if isinstance(key, (bool, int, float, str)) or key is None:
        return {"value": key}
    raise TypeError(f"graphc.save: dict keys must be numbers or strings, got {type(key).__name__}")


def load(f, map_location=None, weights_only=True):
    """Read what `save` wrote; tensors come back as graphc tensors on the CPU."""
    name = getattr(f, "name", f) if hasattr(f, "read") else os.fspath(f)
    _refuse_pickle_file(f, name)
    try:
        with zipfile.ZipFile(f) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise SerializationError(f"graphc.load: {name}: member {bad} is corrupt (checksum mismatch)")
            pickles = [member for member in archive.namelist() if member.endswith((".pkl", ".pickle"))]
            if pickles:  # torch.save's zip layout keeps its structure in data.pkl
                raise SerializationError(f"graphc.load: {name} holds a pickle ({pickles[0]}), not a graphc "
                                         f"file; {NEVER_UNPICKLES}")
            header = json.loads(archive.read("structure.json"))
            if header.get("format") != FORMAT:
                raise SerializationError(f"graphc.load: {name} is not a graphc file (format "
                                         f"{header.get('format')!r})")
            return _decode(header["structure"], archive, name)
    except SerializationError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, json.JSONDecodeError) as error:
        raise SerializationError(f"graphc.load: {name} is truncated, altered or not a graphc file "
                                 f"({type(error).__name__}: {error})") from None


NEVER_UNPICKLES = ("graphc.load never unpickles: a pickle can run any code while it loads. A graphc "
                   "file holds raw arrays and JSON only")


def _refuse_pickle_file(f, name) -> None:
    """A whole-file pickle (pickle.dump, an old torch.save) gets its own message, not 'truncated'."""
    if hasattr(f, "read"):
        if not hasattr(f, "seek"):
            return
        position = f.tell()
        start = f.read(2)
        f.seek(position)
    else:
        try:
            with open(f, "rb") as file:
                start = file.read(2)
        except OSError:
            return  # the zip reader reports it
    if len(start) == 2 and start[0] == 0x80 and 2 <= start[1] <= 5:  # PROTO opcode, protocols 2-5
        raise SerializationError(f"graphc.load: {name} is a Python pickle, not a graphc file; {NEVER_UNPICKLES}")


def _decode(item, archive, name):
    from graphc.tensor import Tensor
    if "tensor" in item:
        raw = archive.read(f"tensor{item['tensor']}.npy")
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as error:
            if "allow_pickle" not in str(error):
                raise
            raise SerializationError(f"graphc.load: {name}: tensor {item['tensor']} is a pickled object "
                                     f"array, not raw numbers; {NEVER_UNPICKLES}") from None
        dtype = dtypes.by_name(item["dtype"])
        if array.dtype != dtype.numpy or list(array.shape) != list(item["shape"]):
            raise SerializationError(f"graphc.load: {name}: tensor {item['tensor']} holds "
                                     f"{array.dtype}{list(array.shape)}, the file says "
                                     f"{item['dtype']}{item['shape']}")
        tensor = Tensor._from_array(array)
        if item.get("requires_grad"):
            tensor.requires_grad_(True)
        return tensor
    if "dict" in item:
        return {_decode(k, archive, name): _decode(v, archive, name) for k, v in item["dict"]}
    if "list" in item:
        return [_decode(v, archive, name) for v in item["list"]]
    if "tuple" in item:
        return tuple(_decode(v, archive, name) for v in item["tuple"])
    if "value" in item:
        return item["value"]
    raise SerializationError(f"graphc.load: {name}: unknown entry {sorted(item)}")
