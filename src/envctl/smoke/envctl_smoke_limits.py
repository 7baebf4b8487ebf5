"""Bounds on --inputs files, judged by what they declare before anything is allocated (stdlib only).

`np.load` allocates an .npy array from the shape and dtype in its header
before it reads the data, and an .npz entry inflates to whatever it
declares: a 475 KB .npz once drove the runner to 6.4 GB. So before numpy or
torch touches a file, its declared sizes are added up (each zip entry's
uncompressed size, each .npy header's shape x item size) and a file past
MAX_INPUT_BYTES, or an .npy header claiming more data than its entry holds,
is refused with a message naming the file and the limit. The host checks the
same (envctl certify refuses before building); the runner checks again,
since it may be given a spec by hand.
"""

import ast
import math
import os
import re
import stat
import struct
import zipfile

# Smoke inputs are a few samples: a batch of 8 RGB 224x224 float32 images is under 5 MiB.
MAX_INPUT_BYTES = 256 * 1024 * 1024
_MAX_HEADER = 64 * 1024
_SIMPLE = re.compile(r"[<>|=]?([?bBhHiIlLqQpPefdgFDGSUVaOmMcu])(\d*)(\[\w+\])?")


class InputTooLarge(ValueError):
    """An --inputs file that declares more than the limit, or that is not what it claims."""


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def _itemsize(descr, where):
    if isinstance(descr, str):
        match = _SIMPLE.fullmatch(descr)
        if not match:
            raise InputTooLarge("%s: unsupported dtype %r in its .npy header" % (where, descr[:40]))
        kind, digits = match.group(1), match.group(2)
        size = int(digits) if digits else {"?": 1, "b": 1, "B": 1, "c": 1, "S": 0, "a": 0, "V": 0, "U": 0}.get(kind, 8)
        return size * 4 if kind == "U" else size
    if isinstance(descr, list):  # a structured dtype: [(name, descr[, shape]), ...]
        total = 0
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                raise InputTooLarge("%s: malformed structured dtype in its .npy header" % where)
            shape = field[2] if len(field) == 3 else ()
            total += _itemsize(field[1], where) * _count(shape if isinstance(shape, tuple) else (shape,), where)
        return total
    raise InputTooLarge("%s: unsupported dtype in its .npy header" % where)


def _count(shape, where):
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise InputTooLarge("%s: the .npy header's shape %r is not a tuple of sizes" % (where, str(shape)[:60]))
    return math.prod(shape)


def npy_data_bytes(handle, where):
    """The bytes of array data an .npy stream's header declares (read from the header alone)."""
    if handle.read(6) != b"\x93NUMPY":
        raise InputTooLarge("%s: not an .npy array" % where)
    version = handle.read(2)
    if len(version) != 2 or version[0] not in (1, 2, 3):
        raise InputTooLarge("%s: unknown .npy format version" % where)
    raw = handle.read(2 if version[0] == 1 else 4)
    length = struct.unpack("<H" if version[0] == 1 else "<I", raw)[0] if len(raw) in (2, 4) else _MAX_HEADER + 1
    if length > _MAX_HEADER:
        raise InputTooLarge("%s: the .npy header is over %d bytes" % (where, _MAX_HEADER))
    try:
        header = ast.literal_eval(handle.read(length).decode("latin1" if version[0] < 3 else "utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        header = None
    if not isinstance(header, dict) or "shape" not in header or "descr" not in header:
        raise InputTooLarge("%s: the .npy header is not a dict with 'shape' and 'descr'" % where)
    return _count(header["shape"], where) * _itemsize(header["descr"], where)


def check_input_file(path, limit=MAX_INPUT_BYTES):
    """InputTooLarge unless `path` is a regular .npz/.pt file whose declared contents fit in `limit` bytes."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise InputTooLarge("%s is not a regular file" % path)
    if not zipfile.is_zipfile(path):  # a legacy .pt: stored as it is, so its size is what it holds
        if info.st_size > limit:
            raise InputTooLarge("%s is %s; inputs over %s are refused" % (path, _mib(info.st_size), _mib(limit)))
        if path.endswith(".npz"):
            raise InputTooLarge("%s is not an .npz (zip) archive" % path)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for entry in archive.infolist():
                total += entry.file_size
                where = "%s (entry %s)" % (path, entry.filename[:80])
                if total > limit:
                    raise InputTooLarge("%s declares %s or more once unpacked; inputs over %s are refused"
                                        % (where, _mib(total), _mib(limit)))
                if path.endswith(".npz") and entry.filename.endswith(".npy"):
                    with archive.open(entry) as handle:
                        declared = npy_data_bytes(handle, where)
                    if declared > limit:
                        raise InputTooLarge("%s: its header declares an array of %s; inputs over %s are refused"
                                            % (where, _mib(declared), _mib(limit)))
                    if declared > entry.file_size:
                        raise InputTooLarge("%s: its header declares %d bytes of data, but the entry holds %d"
                                            % (where, declared, entry.file_size))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise InputTooLarge("%s is not a readable archive: %s" % (path, str(exc)[:200])) from None
