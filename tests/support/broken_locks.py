"""Locks that tests break on purpose, declared, so the session's lock check can tell them from a bug.

The session fixture `every_lock_reads_in_rattler_too` (tests/conftest.py) parses every
`*.conda-lock.yml` the tests left behind; one that conda-lock cannot parse fails the
session unless the test that wrote it declared it here.
"""

from __future__ import annotations

import os
from pathlib import Path

DECLARED: set[str] = set()


def declare(path: Path) -> Path:
    """Mark `path` (as written, symlinks not followed) as a lock broken on purpose."""
    DECLARED.add(os.path.abspath(path))
    return path


def write(path: Path, text: str) -> Path:
    """Write `text` as a deliberately broken lock at `path` and declare it."""
    path.write_text(text)
    return declare(path)


def declared(path: Path) -> bool:
    return os.path.abspath(path) in DECLARED
