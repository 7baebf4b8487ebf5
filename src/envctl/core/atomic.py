"""Atomic file writes, and the guard that keeps envctl's writes inside the project.

A reader sees the old file or the new one, never half: the new bytes go to a
temp file beside the target (`.<name>.<pid>.<random>.tmp`) and are renamed
over it. A write that fails (a full disk, a read-only folder) removes its
temp file and raises EnvctlError naming the path and the reason; a writer
killed with SIGKILL cannot clean up, so the next write of the same file
removes temp files whose writer process is gone.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
from pathlib import Path

from envctl.core.errors import EnvctlError, WriteFailed

# A target name becomes a folder under envs/ and a file under locks/, certs/ and .envctl/envs/:
# a plain file name, never a path.
SAFE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")  # use fullmatch; \Z, not $, which matches before a final newline


def ensure_inside(root: Path, path: Path, what: str = "path", action: str = "write") -> Path:
    """`path`, checked to stay inside `root` once symlinks are followed; EnvctlError if not.

    A project's own files (envs/<t>/, locks/, certs/, .envctl/) must never
    land outside it: a `..` in a name, an absolute name, or a symlink
    committed into the project that points elsewhere (`locks -> /etc`) is
    refused before anything is written. Components that do not exist yet are
    taken as written; the ones that exist are resolved.
    """
    root_real = Path(os.path.realpath(root))
    resolved = Path(os.path.realpath(path))
    if resolved != root_real and root_real not in resolved.parents:
        raise EnvctlError(
            f"refusing to {action} the {what} {path}: it resolves to {resolved}, outside the project {root_real}",
            hint="A target name or a symlink in the project points elsewhere; remove the symlink "
                 "(envctl writes only under envs/, locks/, certs/ and .envctl/ of the project).",
        )
    return path


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def remove_stale_temps(path: Path) -> None:
    """Delete `.<name>.<pid>.*.tmp` siblings of `path` left by writers that no longer run."""
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _write_error(path: Path, exc: OSError) -> EnvctlError:
    reason = exc.strerror or str(exc)
    hint = None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "Free some disk space and run the command again; the previous file is unchanged."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "Make the folder writable (or run from a writable checkout); the previous file is unchanged."
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return WriteFailed(f"cannot write {path}: {reason}{where}", hint=hint)


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask alone must set one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore, serialized against envctl's own threads
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """What an editor gives the file: the existing file's mode, else 0666 less the umask.

    mkstemp makes its temp file 0600 (private while it is being written); left so, every
    lock, environment.yml, certificate and report would be unreadable to the rest of a team.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            else:  # Windows: only the read-only bit exists
                os.chmod(tmp, mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
