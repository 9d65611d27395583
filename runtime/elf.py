"""A structural check of an ELF shared library before ``dlopen`` touches it.

Why: ``dlopen`` maps a library's segments straight from the file. If the file is truncated
(a full disk, a crash mid-write, a damaged cache), the mapping reaches past the end of the file
and the first access kills the whole process with SIGBUS - measured here with a .so cut in half.
A damaged cache entry must instead be detected, deleted and rebuilt, so the loader asks this
module first: every segment and the section header table must lie inside the file.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Optional, Union

__all__ = ["shared_library_problem"]

_MAGIC = b"\x7fELF"


def shared_library_problem(path: Union[str, Path]) -> Optional[str]:
    """None when ``path`` looks like a complete ELF file, else a sentence saying what is wrong.

    Only Linux libraries are ELF; elsewhere nothing is checked (None).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"cannot read it ({error})"
    size = len(data)
    if size < 52 or data[:4] != _MAGIC:
        return "it is not an ELF file (bad magic or too short)"
    elf_class, encoding = data[4], data[5]
    if elf_class not in (1, 2) or encoding not in (1, 2):
        return "its ELF header is invalid"
    order = "<" if encoding == 1 else ">"
    wide = elf_class == 2
    if wide and size < 64:
        return "its ELF header is truncated"
    if wide:
        phoff, shoff = struct.unpack_from(order + "QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 0x36)
    else:
        phoff, shoff = struct.unpack_from(order + "II", data, 0x1C)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 0x2A)
    if phoff + phnum * phentsize > size:
        return "its program header table runs past the end of the file (truncated?)"
    if shoff and shoff + shnum * shentsize > size:
        return "its section header table runs past the end of the file (truncated?)"
    # Where p_offset and p_filesz sit inside one program header entry, and their width.
    word, offset_at, filesz_at = ("Q", 8, 32) if wide else ("I", 4, 16)
    for index in range(phnum):
        start = phoff + index * phentsize
        (offset,) = struct.unpack_from(order + word, data, start + offset_at)
        (filesz,) = struct.unpack_from(order + word, data, start + filesz_at)
        if offset + filesz > size:
            return f"segment {index} runs past the end of the file (truncated?)"
    return None
