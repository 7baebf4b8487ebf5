"""Serialize creates of one prefix and swap a finished env in atomically.

A create builds beside the final prefix and exchanges the two in one
renameat2(RENAME_EXCHANGE) where the kernel has it (two renames otherwise);
leftovers of a killed create are put right by the next one.

Scratch names live in a namespace no target name can enter: `<name>~staging-<pid>`,
`<name>~old-<pid>` and the flock file `<name>~lock` all contain '~', which
SAFE_NAME never admits, so one target's scratch can never be another target's
env. And recovery touches only folders it can prove envctl made: each holds
a marker file (SCRATCH_MARKER) naming the pid that made it and the exact
prefix it belongs to. Folders are found by exact name, never by glob, so a
user's `myenv.old-backup/` or a prefix with `[ab]` or `*` in it is left alone.
"""

from __future__ import annotations

import errno
try:  # POSIX: flock, with shared locks for certifications
    import fcntl
except ImportError:  # Windows: filelock's exclusive lock (readers then take turns too)
    fcntl = None  # type: ignore[assignment]
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.core.progress import Progress, emit

SCRATCH_MARKER = ".envctl-scratch.json"
_SEP = "~"  # never in a target name (atomic.SAFE_NAME); see the module docstring
KINDS = ("staging", "old")


def check_prefix_path(prefix: Path) -> Path:
    """`prefix` as an absolute path that can have siblings (not `/`, not a name ending in '~...')."""
    prefix = Path(os.path.abspath(prefix))
    if not prefix.name or prefix.parent == prefix:
        raise EnvctlError(f"{prefix} cannot be an env prefix: it is a filesystem root", hint="Choose a folder such as ./myenv.")
    if _SEP in prefix.name or prefix.name in (".", ".."):
        raise EnvctlError(f"the prefix name {prefix.name!r} is not allowed: '{_SEP}' is reserved for envctl's scratch folders",
                          hint="Choose a prefix whose last part has no '~'.")
    return prefix


def flock_path(prefix: Path) -> Path:
    return prefix.with_name(f"{prefix.name}{_SEP}lock")


def scratch_path(prefix: Path, kind: str, pid: int | None = None) -> Path:
    assert kind in KINDS
    return prefix.with_name(f"{prefix.name}{_SEP}{kind}-{os.getpid() if pid is None else pid}")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none (a link there needs privileges to make)


def mark_scratch(folder: Path, prefix: Path) -> None:
    """Claim `folder` as envctl's scratch for `prefix` (written before it can be left behind)."""
    data = json.dumps({"pid": os.getpid(), "prefix": str(prefix)})
    fd = os.open(folder / SCRATCH_MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)


def unmark(folder: Path) -> None:
    try:
        os.unlink(folder / SCRATCH_MARKER)
    except FileNotFoundError:
        pass


def _proven(folder: Path, prefix: Path, pid: int) -> bool:
    """True when `folder` carries envctl's marker for exactly this prefix and pid (and is a real folder)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        with open(folder / SCRATCH_MARKER, "rb") as handle:
            data = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("prefix") == str(prefix) and data.get("pid") == pid


def _scratch(prefix: Path, kind: str) -> list[Path]:
    """Folders named exactly `<name>~<kind>-<pid>` beside `prefix` that prove they are envctl's; oldest pid last."""
    head = f"{prefix.name}{_SEP}{kind}-"
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(prefix.parent)
    except OSError:
        return []
    for name in names:
        tail = name[len(head):]
        if name.startswith(head) and tail.isdigit() and tail == str(int(tail)):
            path = prefix.parent / name
            if _proven(path, prefix, int(tail)):
                found.append((int(tail), path))
    return [p for _, p in sorted(found)]


@contextmanager
def prefix_lock(prefix: Path, progress: Progress | None, *, shared: bool = False) -> Iterator[bool]:
    """Hold flock on <prefix>~lock; yields True when another process had it first.

    create takes it exclusively; a certification running the env takes it
    shared (env_in_use), so a create of the same prefix waits until the smoke
    run is over instead of swapping the env away under it.
    """
    path = flock_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # filelock makes and opens the file itself (a symlink there is still refused)
        if path.is_symlink():
            raise EnvctlError(f"refusing to use the lock file {path}: it is a symlink",
                              hint="Remove the symlink; envctl makes this file itself.")
        with _portable_lock(path, progress) as waited:
            yield waited
        return
    # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a new inode.
    # O_NOFOLLOW: a symlink planted at the lock's name must not make envctl create the file it names.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EnvctlError(f"refusing to use the lock file {path}: it is a symlink",
                              hint="Remove the symlink; envctl makes this file itself.") from None
        raise
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
def _portable_lock(path: Path, progress: Progress | None) -> Iterator[bool]:
    """Where there is no fcntl (Windows), filelock's OS lock on the same file; always exclusive."""
    import warnings

    with warnings.catch_warnings():  # off Windows (tests only) filelock warns that it falls back to a soft lock
        warnings.simplefilter("ignore")
        from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
        waited = False
    except Timeout:
        emit(progress, "waiting", lock=str(path), message=f"another envctl holds {path}; waiting")
        lock.acquire()
        waited = True
    try:
        yield waited
    finally:
        lock.release()


@contextmanager
def env_in_use(prefix: Path, progress: Progress | None = None) -> Iterator[bool]:
    """Keep creates of `prefix` from swapping it while the block runs (a shared flock).

    Where the lock file cannot be made (a read-only env outside envctl's
    control) nothing can create there either, so the block just runs.
    """
    try:
        cm = prefix_lock(check_prefix_path(prefix), progress, shared=True)
        waited = cm.__enter__()
    except (OSError, EnvctlError):
        yield False
        return
    try:
        yield waited
    finally:
        cm.__exit__(None, None, None)


def recover_leftovers(prefix: Path) -> None:
    """Undo what a killed create left behind (we hold the prefix lock, so nobody else is working).

    Only the two-rename fallback swap can leave no prefix with the old env
    parked aside: put it back. Every staging folder is a dead, partial build.
    Only folders carrying envctl's marker for this very prefix are touched.
    """
    olds = _scratch(prefix, "old")
    if not os.path.lexists(prefix) and olds:
        os.rename(olds[-1], prefix)
        olds = olds[:-1]
    if prefix.is_dir() and not prefix.is_symlink():
        unmark(prefix)  # a kill between marking the old env and the swap
    for path in olds + _scratch(prefix, "staging"):
        shutil.rmtree(path, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False  # macOS has renamex_np, Windows nothing; both take the two-rename fallback
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # TypeError on Windows
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(staging: Path, prefix: Path) -> Path | None:
    """Make the complete, marked `staging` the env at `prefix`; return the old env's folder to delete.

    The old env is marked as scratch before it moves, so whichever name it
    has when a kill lands, the next create can prove it is envctl's.
    """
    if not os.path.lexists(prefix):
        os.rename(staging, prefix)
        unmark(prefix)
        return None
    mark_scratch(prefix, prefix)
    if _exchange(staging, prefix):
        unmark(prefix)
        return staging  # now holds the old env, marked
    # Fallback: two renames. A kill between them leaves <prefix>~old-<pid>, which recover_leftovers restores.
    old = scratch_path(prefix, "old")
    if os.path.lexists(old):  # rename() would silently replace an empty folder of that name
        raise FileExistsError(errno.EEXIST, "a folder envctl did not make has its scratch name", str(old))
    os.rename(prefix, old)
    try:
        os.rename(staging, prefix)
    except OSError:
        os.rename(old, prefix)
        unmark(prefix)
        raise
    unmark(prefix)
    return old
