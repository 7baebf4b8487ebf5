"""Run envctl's real CLI in a CPython stripped to what Windows or macOS has.

    python tests/support/simulated_os.py windows|macos ENVCTL-ARGS...

Before anything else is imported (envctl, typer, rich, rattler), this removes
what the chosen OS's CPython lacks, so a POSIX-only (or Linux-only) name that
envctl reaches fails here as it would there: an AttributeError or
ImportError with a traceback. It then runs envctl's console-script entry
point. sys.platform and os.name stay the host's: the simulation takes away,
it does not pretend, so envctl must detect features rather than trust the OS
name to get this right.

Not simulated: paths (drive letters, backslashes), the missing /proc of
macOS, and Windows' console signals; those are covered by CI on the real
runners (.github/workflows/tests.yml).
"""

from __future__ import annotations

import ctypes
import enum
import os
import signal
import subprocess
import sys

# Windows' signal module: these names only (and SIGBREAK, CTRL_*_EVENT, which Linux lacks).
_WINDOWS_SIGNALS = {"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"}
_WINDOWS_SIGNAL_FUNCTIONS = ("alarm", "pause", "setitimer", "getitimer", "siginterrupt", "sigpending", "sigwait",
                             "sigwaitinfo", "sigtimedwait", "pthread_kill", "pthread_sigmask", "pidfd_send_signal",
                             "ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF", "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK",
                             "struct_siginfo", "Sigmasks")
# POSIX process control, terminals, and open flags Windows' os module does not have. (User ids stay:
# platformdirs, under conda-lock, picks `os.geteuid` by sys.platform, which the simulation leaves alone.)
_WINDOWS_OS = ("killpg", "setsid", "getsid", "setpgid", "getpgid", "getpgrp", "setpgrp", "fork", "forkpty", "wait3",
               "wait4", "waitid", "tcgetpgrp", "tcsetpgrp", "setuid", "seteuid", "setgid", "getresuid", "getresgid", "nice", "getpriority", "setpriority",
               "sched_getaffinity", "sched_setaffinity", "sched_yield", "pipe2", "mkfifo", "mknod", "getloadavg",
               "statvfs", "fstatvfs", "sync", "chown", "lchown", "fchown", "chroot", "ctermid",
               "sysconf", "pathconf", "fpathconf", "confstr", "posix_spawn", "posix_spawnp", "register_at_fork",
               "O_NONBLOCK", "O_CLOEXEC", "O_NOFOLLOW", "O_DIRECTORY", "O_SYNC", "O_DSYNC", "O_NDELAY", "O_NOCTTY",
               "O_ASYNC", "O_DIRECT", "O_NOATIME", "O_PATH", "O_TMPFILE")
_WINDOWS_MODULES = ("fcntl", "termios", "tty", "pty", "resource", "pwd", "grp", "syslog", "posix_shared")

# What Linux has and macOS' CPython does not.
_MACOS_SIGNAL = ("sigtimedwait", "sigwaitinfo", "SIGPOLL", "SIGPWR", "SIGRTMIN", "SIGRTMAX", "SIGSTKFLT",
                 "pidfd_send_signal")
_MACOS_OS = ("sched_getaffinity", "sched_setaffinity", "sched_getscheduler", "sched_setscheduler", "sched_getparam",
             "sched_setparam", "sched_rr_get_interval", "pipe2", "memfd_create", "eventfd", "posix_fadvise",
             "posix_fallocate", "getresuid", "getresgid", "setresuid", "setresgid", "pidfd_open", "splice",
             "copy_file_range", "getxattr", "setxattr", "listxattr", "removexattr", "O_DIRECT", "O_NOATIME",
             "O_PATH", "O_TMPFILE", "O_RSYNC", "O_LARGEFILE")
# Symbols ctypes.CDLL(None) finds in glibc and not in macOS' libSystem.
_LINUX_ONLY_LIBC = ("prctl", "renameat2", "sched_getaffinity", "signalfd", "pidfd_open")


def _delete(module, names) -> None:
    for name in names:
        if hasattr(module, name):
            delattr(module, name)


def _windows() -> None:
    for name in _WINDOWS_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # `import fcntl` raises ImportError
    _delete(signal, [n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")
                     and n not in _WINDOWS_SIGNALS])
    _delete(signal, _WINDOWS_SIGNAL_FUNCTIONS)
    signal.SIGBREAK, signal.CTRL_C_EVENT, signal.CTRL_BREAK_EVENT = 21, 0, 1
    members = {n: getattr(signal, n) for n in sorted(_WINDOWS_SIGNALS | {"SIGBREAK"})}
    signal.Signals = enum.IntEnum("Signals", members)  # signal.Signals(1) is a ValueError there
    valid = set(members.values())
    signal.valid_signals = lambda: set(valid)
    _delete(os, _WINDOWS_OS)
    real_popen_init = subprocess.Popen.__init__

    def popen_init(self, *args, preexec_fn=None, pass_fds=(), **kwargs):
        if preexec_fn is not None:
            raise ValueError("preexec_fn is not supported on Windows platforms")
        if pass_fds:
            raise ValueError("pass_fds is not supported on Windows")
        real_popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = popen_init
    # The host's POSIX Popen kills with signal.SIGKILL; Windows' calls TerminateProcess. Keep the
    # stdlib working (its own POSIX internals are not what is tested) without the name.
    subprocess.Popen.kill = lambda self: self.send_signal(9)

    class CDLL(ctypes.CDLL):
        def __init__(self, name, *args, **kwargs):
            if name is None:  # Windows' LoadLibrary needs a name
                raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = CDLL


def _macos() -> None:
    _delete(signal, _MACOS_SIGNAL)
    _delete(os, _MACOS_OS)

    class CDLL(ctypes.CDLL):
        def __getattr__(self, name):
            if name in _LINUX_ONLY_LIBC:
                raise AttributeError(f"dlsym(RTLD_DEFAULT, {name}): symbol not found")
            return super().__getattr__(name)

        def __getitem__(self, name):
            if name in _LINUX_ONLY_LIBC:
                raise AttributeError(f"dlsym(RTLD_DEFAULT, {name}): symbol not found")
            return super().__getitem__(name)

    ctypes.CDLL = CDLL


SIMULATE = {"windows": _windows, "macos": _macos}


def command(os_name: str, *args: str) -> list[str]:
    """The argv that runs `envctl ARGS` under the simulated OS (with this interpreter)."""
    assert os_name in SIMULATE, os_name
    return [sys.executable, os.path.abspath(__file__), os_name, *args]


def main() -> None:
    os_name = sys.argv[1]
    SIMULATE[os_name]()
    del sys.path[0]  # this folder: nothing here may shadow what envctl imports
    sys.argv = ["envctl", *sys.argv[2:]]
    from envctl.cli import main as envctl_main

    envctl_main()


if __name__ == "__main__":
    main()
