"""Child processes envctl starts, on every OS: finding uv, a clean environment, and
one way to start, wait for, signal and kill a process tree.

POSIX has process groups and sessions; Windows has neither, nor SIGKILL,
SIGHUP, `os.killpg`, `preexec_fn` or `ctypes.CDLL(None)`. Every POSIX-only
name is looked up when it is used (`getattr`/`hasattr`), never at import, so
this module and everything importing it load on Windows. What a platform
lacks is detected by feature, not by `os.name`, so the simulated Windows and
macOS of the test suite (tests/support/simulated_os.py) take the same
branches the real ones do.

On Windows a tree is started with CREATE_NEW_PROCESS_GROUP and killed with
`taskkill /T /F` (the process and every descendant it still parents); a
daemon whose parent already exited is not found that way. psutil or a Job
Object would find no more of those than taskkill's parent walk without
KILL_ON_JOB_CLOSE assignment races, so envctl keeps to the standard library.

Standard library only at import time, Python 3.8 syntax: bundles ship this file as
share/envctl-bundle/process.py, and devcert.py starts and kills the smoke runner with it
on the device, where envctl is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

# Variables that would make a child python (or uv) look at the host's packages.
_HOST_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONUSERBASE")

# `envctl run` passes these on to the command (those this OS has). SIGBREAK is Windows' Ctrl-Break.
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGBREAK")
# A terminal sends these to its whole foreground process group, the command included.
_FROM_TERMINAL = ("SIGINT", "SIGQUIT", "SIGBREAK")
# Ignored in envctl (nohup, a background job), they would stay ignored in the command after exec.
_RESET_IF_IGNORED = ("SIGTSTP", "SIGTTIN", "SIGTTOU")


def uv_binary(purpose: str = "resolve or install the pip part of the lock") -> str:
    """The uv executable shipped with the `uv` wheel (an envctl dependency), else PATH's."""
    from envctl.core.errors import EnvctlError  # here: a bundle's devcert.py imports this file without envctl

    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvctlError(f"cannot {purpose}: uv is not installed",
                      hint="Install it with `pip install uv` (envctl depends on it).")


def without_host_python(environ: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without what would leak the host's Python into a child's."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in _HOST_PYTHON_VARS}


def foreign_python_env() -> dict[str, str]:
    """The environment for running another env's python: nothing of the host's Python or conda."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CONDA_", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def signal_text(number: int) -> str:
    """'SIGXFSZ (file size limit exceeded)' for a signal number."""
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    strsignal = getattr(signal, "strsignal", None)
    return f"{sig.name} ({(strsignal(sig) if strsignal else None) or 'signal'})"


def _signals(names: tuple[str, ...]) -> list[int]:
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


# ---------------------------------------------------------------- a tool envctl waits for


def run_tied(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run for a helper (uv) that must not outlive envctl.

    On Linux the child gets PR_SET_PDEATHSIG, so a create killed with SIGKILL
    does not leave uv writing into a staging folder the next create deletes.
    Elsewhere the child is ended by the interrupt handlers like any other.
    """
    preexec = _die_with_parent()
    if preexec is not None:
        kwargs["preexec_fn"] = preexec
    return subprocess.run(cmd, **kwargs)  # the preexec only calls prctl (looked up before fork)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux") or not hasattr(signal, "SIGKILL"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a preexec_fn must not import after fork
    except (OSError, AttributeError, TypeError):
        return None
    parent, sigkill, pr_set_pdeathsig = os.getpid(), int(signal.SIGKILL), 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# ---------------------------------------------------------------- a process tree (the smoke runner)


def start_tree(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start `argv` as the root of its own process tree, so kill_tree ends it with every child it starts."""
    if hasattr(os, "setsid"):
        kwargs["start_new_session"] = True  # a new session and process group
    elif hasattr(subprocess, "CREATE_NEW_PROCESS_GROUP"):
        kwargs["creationflags"] = kwargs.get("creationflags", 0) | subprocess.CREATE_NEW_PROCESS_GROUP
    return subprocess.Popen(argv, **kwargs)


def kill_tree(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Kill a tree started by start_tree and wait (up to `grace` s) until no member is left running.

    POSIX: SIGKILL to the process group, then to every process still in the
    root's group or session (a model's double-forked daemon stays in the
    group; one that called setpgid stays in the session; only one that calls
    setsid itself leaves both). Where /proc is missing (macOS), the group kill
    is all. Windows: taskkill /T /F, then the root itself.
    """
    if hasattr(os, "killpg") and hasattr(signal, "SIGKILL"):
        _kill_posix_tree(proc.pid, grace)
    else:
        _kill_windows_tree(proc, grace)
    try:
        proc.kill()
    except OSError:
        pass


def _kill_posix_tree(pgid: int, grace: float) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + grace
    while True:
        members = _session_members(pgid)
        if not members or time.monotonic() > deadline:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _kill_windows_tree(proc: subprocess.Popen, grace: float) -> None:
    taskkill = shutil.which("taskkill")
    if taskkill and proc.poll() is None:
        try:
            subprocess.run([taskkill, "/T", "/F", "/PID", str(proc.pid)], capture_output=True, timeout=grace)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _session_members(sid: int) -> list[int]:
    """Live (not zombie) processes whose process group or session is `sid` (Linux's /proc)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp session ...
        if len(fields) > 3 and fields[0] not in (b"Z", b"X") and sid in (int(fields[2]), int(fields[3])):
            found.append(int(entry))
    return found


# ---------------------------------------------------------------- a command in the foreground (envctl run)


def run_foreground(argv: list[str], env: dict[str, str]) -> int:
    """Run `argv` as envctl's foreground command; return its exit status (128+N when signal N killed it).

    The command starts with default signal dispositions (a Python handler is
    reset to the default by exec, SIG_IGN would not be) and nothing blocked.
    Signals sent to envctl are passed on; one a terminal sent to the whole
    foreground group (Ctrl-C) already reached the command and is not sent twice.
    """
    if threading.current_thread() is not threading.main_thread():  # an API caller's thread cannot own signals
        return exit_status(subprocess.Popen(argv, env=env).wait())
    started: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signum: int, _frame: object = None) -> None:
        if not started:
            pending.append(signum)
        elif started[0].poll() is None and not (signum in _signals(_FROM_TERMINAL) and _terminal_sent_it()):
            try:
                started[0].send_signal(signum)
            except OSError:
                pass

    previous = {signum: signal.signal(signum, forward) for signum in _signals(FORWARDED)}
    for signum in _signals(_RESET_IF_IGNORED):
        if signal.getsignal(signum) == signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _ignore)
    try:
        started.append(subprocess.Popen(argv, env=env))
        for signum in pending:
            forward(signum)
        while True:
            try:
                return exit_status(started[0].wait(timeout=0.5))  # a timeout, so handlers run on Windows too
            except subprocess.TimeoutExpired:
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ignore(_signum: int, _frame: object) -> None:
    """Ignores like SIG_IGN, but exec resets a handler to the default in the command."""


def _terminal_sent_it() -> bool:
    """Whether envctl is in the terminal's foreground group (then a Ctrl-C went to the command too).
    On Windows the console sends Ctrl-C and Ctrl-Break to every process attached to it."""
    if not hasattr(os, "tcgetpgrp"):
        return os.name == "nt"
    for fd in (0, 1, 2):
        try:
            return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


def exit_status(code: int) -> int:
    """A child's returncode as a shell reports it: 128+N when signal N killed it."""
    return code if code >= 0 else 128 - code
