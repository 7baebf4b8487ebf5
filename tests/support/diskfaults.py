"""Disk faults for the tests that prove envctl keeps what it had: a tmpfs filled to ENOSPC,
a read-only bind mount. Both need root to mount; without it the test that asks is skipped,
saying what was not proven (docs/testing.md)."""

from __future__ import annotations

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, size: str, *, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"NOT PROVEN HERE: a really full filesystem needs root to mount a tmpfs ({proc.stderr.strip()}); "
                    "the RLIMIT_FSIZE variant covers the write path; run the suite as root (docs/testing.md)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)


def fill(folder: Path) -> None:
    """Fill the filesystem of `folder` until even a small write fails with ENOSPC."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@contextmanager
def read_only_bind(path: Path):
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"NOT PROVEN HERE: a read-only env needs root to bind-mount ({done.stderr.strip()}); run the suite as root (docs/testing.md)")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True, timeout=60)
        if ro.returncode != 0:
            pytest.skip(f"NOT PROVEN HERE: cannot remount read-only ({ro.stderr.strip()}); run the suite as root (docs/testing.md)")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)
