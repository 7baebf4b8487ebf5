"""Bounds on what a small input can cost: file size and kind, YAML alias expansion, message length, text.

Every file envctl parses (the matrix, a lock, a certificate) is read through
`read_regular`: a FIFO, a device such as /dev/zero or /dev/urandom, or a
folder is refused at once (opened non-blocking, so a FIFO without a writer
cannot hang the open), and a file larger than its cap is refused before it is
parsed. `short` is the only way user values enter error messages: bounded
whatever the value (reprlib caps every level, and the result is cut).
`control_char` finds the characters no field may carry (a newline in
`pip_extra` becomes a second line of a requirements file; one in a target
name becomes a folder name and breaks generated YAML). `read_json` is the one
way a JSON file a user or an env controls is parsed: capped, regular files
only, UTF-8, and at most MAX_DEPTH levels deep (a deeper document would
otherwise end in a RecursionError in the parser or in whatever walks it).
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any

from envctl.core.errors import EnvctlError, FileMissing

# A real matrix is a few KB; a real lock a few hundred KB (measured: the
# project's largest lock, three platforms with CUDA, is under 200 KB).
MAX_MATRIX_BYTES = 1 << 20
MAX_LOCK_BYTES = 32 << 20
MAX_JSON_BYTES = 16 << 20
# YAML aliases let a few hundred bytes describe a tree of 10**9 nodes; what the
# document would be with every alias written out is capped (scalars count by length).
MAX_EXPANDED = 2_000_000
# Nesting of lists and mappings: envctl's own files need under 10 levels.
MAX_DEPTH = 64

# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
# Free text (a description, an xfail reason) may span lines: FREE_TEXT_ALLOWED.
FREE_TEXT_ALLOWED = "\n\t"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 3, 8, 8, 8, 8
_repr.maxstring, _repr.maxother, _repr.maxlong = 80, 80, 40


def short(value: Any, limit: int = 160) -> str:
    """repr(value), bounded in time and length whatever the value (nested, aliased, huge)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a message must never fail to format
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def control_char(text: str, allow: str = "") -> str | None:
    """A description of the first control character in `text` not in `allow` ('a newline (U+000A)'), or None."""
    match = next((m for m in _CONTROL.finditer(text) if m.group() not in allow), None)
    if match is None:
        return None
    char = match.group()
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}
    return f"{names.get(char, 'a control character')} (U+{ord(char):04X})"


def check_text(text: str, what: str) -> str:
    """`text` if it has no control characters; EnvctlError otherwise."""
    found = control_char(text)
    if found:
        raise EnvctlError(f"{what} {short(text)} contains {found}; control characters are not allowed")
    return text


# Not blocking on a FIFO, not inherited, binary on Windows (which lacks the first two and needs the third).
READ_FLAGS = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0) | getattr(os, "O_BINARY", 0)


def read_regular(path: Path, cap: int, what: str = "file") -> bytes:
    """The bytes of `path`, which must be a regular file of at most `cap` bytes; EnvctlError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | READ_FLAGS)
    except FileNotFoundError:
        raise FileMissing("file not found", file=path) from None
    except OSError as exc:
        raise EnvctlError(f"cannot read the {what}: {exc.strerror or exc}", file=path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a file")
            raise EnvctlError(f"the {what} must be a regular file, but this is {kind}", file=path)
        if info.st_size > cap:
            raise EnvctlError(f"the {what} is {info.st_size} bytes; more than {cap} is refused", file=path)
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:  # grew while being read
            raise EnvctlError(f"the {what} is more than {cap} bytes; refused", file=path)
        return b"".join(chunks)
    except OSError as exc:
        raise EnvctlError(f"cannot read the {what}: {exc.strerror or exc}", file=path) from None
    finally:
        os.close(fd)


def read_text(path: Path, cap: int, what: str = "file") -> str:
    data = read_regular(path, cap, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvctlError(f"the {what} is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None


def read_project_text(path: Path, cap: int = MAX_MATRIX_BYTES, what: str = "file") -> str:
    """read_text for a file that may legitimately be missing: FileNotFoundError then, EnvctlError for the rest.

    For envctl's own small files that a user could replace (environment.yml, an
    env's state file): a FIFO or device there is refused instead of hanging.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return read_text(Path(path), cap, what)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if lists/dicts in `value` nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(text: str, what: str = "JSON file", file: Path | str | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted text: every failure (syntax, nesting) is an EnvctlError naming `file`."""
    try:
        data = json.loads(text)
    except RecursionError:
        data = None
        deep = True
    except json.JSONDecodeError as exc:
        raise EnvctlError(f"the {what} is not valid JSON: {exc.msg} (column {exc.colno})", file=file,
                          line=exc.lineno) from None
    except ValueError as exc:  # e.g. a number too long to convert
        raise EnvctlError(f"the {what} is not valid JSON: {short(str(exc), 200)}", file=file) from None
    else:
        deep = too_deep(data, max_depth)
    if deep:
        raise EnvctlError(f"the {what} nests lists or objects more than {max_depth} levels deep; refused", file=file)
    return data


def read_json(path: Path, cap: int = MAX_JSON_BYTES, what: str = "JSON file", max_depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON of `path`: a capped regular UTF-8 file, bounded in depth; EnvctlError otherwise."""
    return parse_json(read_text(Path(path), cap, what), what, path, max_depth)
