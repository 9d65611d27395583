"""graphc.save / graphc.load: state dicts (and optimizer state) in a file that cannot run code.

The file is a zip (NumPy's .npz layout): one raw array per tensor and a JSON description of the
structure (dicts, lists, tuples, numbers, strings, None, tensors). Loading never unpickles (a
pickle can run any code while it loads: a file that holds one is refused with a message saying
so), checks every array's dtype and shape against the description, and the zip's checksums catch
a truncated or altered file.

Both directions stream: `save` writes each array's memory straight into its zip member, and `load`
allocates each array once (dtype and shape from the description, checked against the member's .npy
header and size first) and reads the member's bytes from the file into it, checking the CRC-32 as
it goes. So neither holds a second copy of a tensor, and a 1 GiB checkpoint loads at about the
speed of reading 1 GiB into new memory. The layout did not change (format ``graphc-save-1``):
every file graphc ever wrote still loads, compressed or uncompressed members alike.

Writing goes to a hidden temporary file beside the target (``.NAME.graphc-save-XXXX.tmp``),
flushed to disk, then renamed over the target, and the directory is synced so the rename itself
survives a power cut: a process killed part-way leaves the previous file whole (and at worst that
hidden temporary file, which `load` never reads unless asked for it by name).

    graphc.save(model.state_dict(), "model.graphc")
    model.load_state_dict(graphc.load("model.graphc"))
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import struct
import tempfile
import time
import zipfile
import zlib

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
    size = sum(array.nbytes for array in arrays) + len(header)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.graphc-save-", suffix=".tmp",
                                             dir=directory)
    except OSError as error:
        raise _save_error(error, path, directory, size) from None
    try:
        with os.fdopen(handle, "wb") as file:
            _write(file, header, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _save_error(error, path, directory, size) from error
        raise
    _sync_directory(directory)


def _save_error(error: OSError, path: str, directory: str, size: int) -> OSError:
    """The error of a failed save, naming the target and its directory, not the hidden temporary
    file graphc wrote first (the same OSError subclass, so `except PermissionError` still works)."""
    reason = error.strerror or str(error)
    code = error.errno
    if code in (errno.EACCES, errno.EPERM):
        detail = f"the directory {directory} is not writable ({reason})"
    elif code == errno.EROFS:
        detail = f"the directory {directory} is on a read-only file system"
    elif code == errno.ENOENT and not os.path.isdir(directory):
        detail = f"the directory {directory} does not exist"
    elif code == errno.ENOTDIR:
        detail = f"{directory} is not a directory (a part of that path is a file)"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        detail = f"no space left in {directory} ({reason}; the checkpoint needs about {_mib(size)})"
    elif code == errno.EISDIR or os.path.isdir(path):
        detail = f"{path} is a directory"
    else:
        detail = reason
    message = f"graphc.save: cannot write {path}: {detail}"
    return OSError(code, message) if code else OSError(message)


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB" if count >= 1 << 20 else f"{count} bytes"


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


def _npy_header(array: np.ndarray) -> bytes:
    """The .npy header np.save writes for `array` (version 1.0, or 2.0 when 1.0 cannot hold it)."""
    description = np.lib.format.header_data_from_array_1_0(array)
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, description)
    except ValueError:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, description)
    return buffer.getvalue()


def _write(file, header: str, arrays: list) -> None:
    """The zip, each array written straight from its memory into its member (no copy of it)."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr("structure.json", header)
        for index, array in enumerate(arrays):
            prefix = _npy_header(array)
            info = zipfile.ZipInfo(f"tensor{index}.npy", date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = len(prefix) + array.nbytes
            with archive.open(info, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as member:
                member.write(prefix)
                if array.nbytes:
                    member.write(memoryview(_bytes_of(array)))


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C- or Fortran-contiguous array's memory, in its file order."""
    ordered = array.T if (array.flags.f_contiguous and not array.flags.c_contiguous) else array
    return ordered.reshape(-1).view(np.uint8)


def _encode(value, arrays):
    from graphc.tensor import Tensor
    if isinstance(value, Tensor):
        array = np.asarray(value.detach()._value(), order="C")   # keeps 0-d (ascontiguousarray makes it 1-d)
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
    """Read what `save` wrote; tensors come back as graphc tensors on the CPU.

    Each tensor's bytes go from the file straight into the array it is returned in (allocated once,
    with the dtype and shape the file declares, checked first), and the zip's CRC-32 of every member
    is checked as it is read: memory grows by about the tensors' size, and the file is read once.
    """
    name = getattr(f, "name", f) if hasattr(f, "read") else os.fspath(f)
    _refuse_pickle_file(f, name)
    try:
        if hasattr(f, "read"):
            return _load_archive(f, name)
        with open(f, "rb") as file:  # a missing file is FileNotFoundError, as from open()
            return _load_archive(file, name)
    except (SerializationError, FileNotFoundError):
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, TypeError, AttributeError,
            struct.error) as error:
        raise SerializationError(f"graphc.load: {name} is truncated, altered or not a graphc file "
                                 f"({type(error).__name__}: {error})") from None


def _load_archive(file, name):
    with zipfile.ZipFile(file) as archive:
        pickles = [member for member in archive.namelist() if member.endswith((".pkl", ".pickle"))]
        if pickles:  # torch.save's zip layout keeps its structure in data.pkl
            raise SerializationError(f"graphc.load: {name} holds a pickle ({pickles[0]}), not a graphc "
                                     f"file; {NEVER_UNPICKLES}")
        header = json.loads(archive.read("structure.json"))  # zipfile checks this member's CRC
        _check_format(header, name)
        return _decode(header["structure"], _Members(archive, file, name), name)


def _check_format(header, name) -> None:
    """`graphc-save-1` is the only layout so far; a later one gets a message saying so."""
    found = header.get("format") if isinstance(header, dict) else None
    if found == FORMAT:
        return
    prefix = FORMAT.rpartition("-")[0] + "-"
    if isinstance(found, str) and found.startswith(prefix) and found[len(prefix):].isdigit():
        raise SerializationError(f"graphc.load: {name} was written by a newer graphc (format {found}); this "
                                 f"graphc reads {FORMAT}: upgrade graphc to load it")
    raise SerializationError(f"graphc.load: {name} is not a graphc file (format {found!r})")


NPY_HEADER_LIMIT = 1 << 16    # np.save's headers are ~128 bytes; a larger one is not from graphc.save
READ_CHUNK_BYTES = 4 << 20    # read and checksummed in pieces that stay in the CPU's caches
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")   # a zip member's local file header (30 bytes)


class _Members:
    """Opens the archive's tensor members for `_decode`."""

    def __init__(self, archive: zipfile.ZipFile, file, name):
        self.archive, self.file, self.name = archive, file, name

    def open(self, info: zipfile.ZipInfo):
        direct = (info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1
                  and info.compress_size == info.file_size and hasattr(self.file, "readinto")
                  and hasattr(self.file, "seek"))
        return _StoredMember(self.file, info) if direct else _ZipMember(self.archive.open(info), info)


class _StoredMember:
    """An uncompressed member read from the archive's own file: `readinto` goes from the file into
    the caller's memory (no intermediate bytes), with the CRC-32 computed on the way."""

    def __init__(self, file, info: zipfile.ZipInfo):
        self.file, self.info = file, info
        file.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(_read_exactly(file, _LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local file header of member {info.filename}")
        stored = _read_exactly(file, fields[10])
        encoding = "utf-8" if fields[3] & 0x800 else "cp437"
        if stored.decode(encoding, "replace") != info.orig_filename:
            raise zipfile.BadZipFile(f"member {info.filename}: the local header names {stored!r}")
        file.seek(fields[11], os.SEEK_CUR)   # the extra field
        self.remaining = info.file_size
        self.crc = 0

    def read(self, count: int) -> bytes:
        data = self.file.read(min(count, self.remaining))
        self.remaining -= len(data)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def readinto(self, view: memoryview) -> None:
        """Fill all of `view` from the member."""
        if len(view) > self.remaining:
            raise EOFError(f"member {self.info.filename} ends before its data")
        done = 0
        while done < len(view):
            piece = view[done:done + READ_CHUNK_BYTES]
            got = self.file.readinto(piece)
            if not got:
                raise EOFError(f"the file ends inside member {self.info.filename}")
            self.crc = zlib.crc32(piece[:got], self.crc)
            done += got
        self.remaining -= done

    def finish(self) -> None:
        if self.remaining:
            raise ValueError(f"member {self.info.filename} has {self.remaining} bytes after its data")
        if self.crc != self.info.CRC:
            raise _Corrupt(self.info.filename)


class _ZipMember:
    """A member through zipfile's own reader (compressed members, files without readinto):
    pieces of it are copied into the caller's memory; zipfile checks the CRC-32 at the end."""

    def __init__(self, stream, info: zipfile.ZipInfo):
        self.stream, self.info = stream, info
        self.remaining = info.file_size

    def read(self, count: int) -> bytes:
        parts, wanted = [], count
        while wanted:
            data = self.stream.read(wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        data = b"".join(parts)
        self.remaining -= len(data)
        return data

    def readinto(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            data = self.stream.read(min(READ_CHUNK_BYTES, len(view) - done))
            if not data:
                raise EOFError("a member ends before its data")
            view[done:done + len(data)] = data
            done += len(data)
        self.remaining -= done

    def finish(self) -> None:
        try:
            rest = self.stream.read(1)   # at the end zipfile compares the CRC-32
        except zipfile.BadZipFile as error:
            if "CRC" in str(error):
                raise _Corrupt(self.info.filename) from None
            raise
        finally:
            self.stream.close()
        if rest:
            raise ValueError(f"member {self.info.filename} has bytes after its data")


class _Corrupt(Exception):
    def __init__(self, member: str):
        super().__init__(member)
        self.member = member


def _read_exactly(file, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise EOFError("the file ends inside a zip header")
    return data


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


def _decode(item, members, name):
    if not isinstance(item, dict):
        raise SerializationError(f"graphc.load: {name}: unknown entry {item!r}")
    if "tensor" in item:
        tensor = _tensor_of(_read_tensor(item, members, name))
        if item.get("requires_grad"):
            tensor.requires_grad_(True)
        return tensor
    if "dict" in item:
        return {_decode(k, members, name): _decode(v, members, name) for k, v in item["dict"]}
    if "list" in item:
        return [_decode(v, members, name) for v in item["list"]]
    if "tuple" in item:
        return tuple(_decode(v, members, name) for v in item["tuple"])
    if "value" in item:
        return item["value"]
    raise SerializationError(f"graphc.load: {name}: unknown entry {sorted(item)}")


def _tensor_of(array: np.ndarray):
    """A tensor holding `array` itself (nobody else has it): no copy of a C-ordered one."""
    from graphc.tensor import Tensor
    return Tensor._from_array(array, share=array.flags.c_contiguous)


def _read_tensor(item, members, name) -> np.ndarray:
    """One tensor member: its .npy header checked against the structure, then its bytes read
    straight into a new array of that dtype and shape."""
    index = item["tensor"]
    member = members.open(members.archive.getinfo(f"tensor{index}.npy"))
    try:
        magic = member.read(8)
        if len(magic) != 8 or magic[:6] != np.lib.format.MAGIC_PREFIX or magic[6] not in (1, 2):
            raise SerializationError(f"graphc.load: {name}: tensor {index} is not a NumPy array of a "
                                     "version graphc.save writes")
        length_field = member.read(2 if magic[6] == 1 else 4)
        (length,) = struct.unpack("<H" if magic[6] == 1 else "<I", length_field)
        if length > NPY_HEADER_LIMIT:
            raise SerializationError(f"graphc.load: {name}: tensor {index} has a {length}-byte array "
                                     "header; graphc.save writes small ones")
        text = member.read(length)
        read_header = (np.lib.format.read_array_header_1_0 if magic[6] == 1
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(io.BytesIO(length_field + text),
                                                  max_header_size=NPY_HEADER_LIMIT)
        if dtype.hasobject:
            raise SerializationError(f"graphc.load: {name}: tensor {index} is a pickled object "
                                     f"array, not raw numbers; {NEVER_UNPICKLES}")
        expected = dtypes.by_name(item["dtype"])
        if dtype != expected.numpy or list(shape) != list(item["shape"]):
            raise SerializationError(f"graphc.load: {name}: tensor {index} holds "
                                     f"{dtype}{list(shape)}, the file says "
                                     f"{item['dtype']}{item['shape']}")
        count = dtype.itemsize * math.prod(shape)
        if member.remaining != count:
            raise SerializationError(f"graphc.load: {name} is truncated, altered or not a graphc file "
                                     f"(tensor {index} has {member.remaining} bytes of data, its "
                                     f"{dtype}{list(shape)} needs {count})")
        array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
        if count:
            member.readinto(memoryview(_bytes_of(array)))
        member.finish()
    except _Corrupt as corrupt:
        raise SerializationError(f"graphc.load: {name}: member {corrupt.member} is corrupt (checksum "
                                 "mismatch)") from None
    return array
