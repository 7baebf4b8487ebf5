"""Serialize creates of one prefix and swap a finished env in atomically.

A create builds beside the final prefix and exchanges the two in one
renameat2(RENAME_EXCHANGE) where the kernel has it (two renames otherwise);
leftovers of a killed create are put right by the next one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable


Progress = Callable[..., None]


def emit(progress: Progress | None, event: str, **info: Any) -> None:
    if progress is not None:
        progress(event, **info)


@contextmanager
def prefix_lock(prefix: Path, progress: Progress | None, *, shared: bool = False) -> Iterator[bool]:
    """Hold flock on <prefix>.lock; yields True when another process had it first.

    create takes it exclusively; a certification running the env takes it
    shared (env_in_use), so a create of the same prefix waits until the smoke
    run is over instead of swapping the env away under it.
    """
    path = prefix.with_name(prefix.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a new inode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            holder = "a create" if shared else "another create or a certification"
            emit(progress, "waiting", lock=str(path), message=f"{holder} holds {path}; waiting")
            fcntl.flock(fd, mode)
            waited = True
        yield waited
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def env_in_use(prefix: Path, progress: Progress | None = None) -> Iterator[bool]:
    """Keep creates of `prefix` from swapping it while the block runs (a shared flock).

    Where the lock file cannot be made (a read-only env outside envctl's
    control) nothing can create there either, so the block just runs.
    """
    try:
        cm = prefix_lock(Path(os.path.abspath(prefix)), progress, shared=True)
        waited = cm.__enter__()
    except OSError:
        yield False
        return
    try:
        yield waited
    finally:
        cm.__exit__(None, None, None)


def _leftovers(prefix: Path, kind: str) -> list[Path]:
    return sorted(prefix.parent.glob(f"{prefix.name}.{kind}-*"))


def recover_leftovers(prefix: Path) -> None:
    """Undo what a killed create left behind (we hold the prefix lock, so nobody else is working).

    Only the two-rename fallback swap can leave no prefix with the old env
    parked aside: put it back. Every staging folder is a dead, partial build.
    """
    olds = _leftovers(prefix, "old")
    if not prefix.exists() and olds:
        os.rename(olds[-1], prefix)
        olds = olds[:-1]
    for path in olds + _leftovers(prefix, "staging"):
        shutil.rmtree(path, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(staging: Path, prefix: Path) -> Path | None:
    """Make the complete `staging` the env at `prefix`; return the old env's folder to delete."""
    if not os.path.lexists(prefix):
        os.rename(staging, prefix)
        return None
    if _exchange(staging, prefix):
        return staging  # now holds the old env
    # Fallback: two renames. A kill between them leaves <prefix>.old-*, which recover_leftovers restores.
    old = prefix.with_name(f"{prefix.name}.old-{os.getpid()}")
    os.rename(prefix, old)
    try:
        os.rename(staging, prefix)
    except OSError:
        os.rename(old, prefix)
        raise
    return old
