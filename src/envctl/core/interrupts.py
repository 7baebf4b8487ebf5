"""SIGTERM and SIGHUP as interrupts, so cleanup code runs for them as it does for Ctrl-C.

Python's default for SIGTERM/SIGHUP is to die on the spot: no `finally`, no
`with` exit, so a smoke runner would outlive certify, the env lock would be
released by the kernel while the runner still executes from the env, and
temp folders (`envctl-smoke-*`, `envctl-pip-*`) would stay in $TMPDIR. The
CLI turns them into `Interrupted` (a KeyboardInterrupt), which unwinds like
Ctrl-C; whatever holds a child process kills it on the way out. Only SIGKILL
cannot be handled. Windows has no SIGHUP (and SIGTERM is only ever raised
from within): the names are looked up, so this module loads there too.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A SIGINT/SIGTERM/SIGHUP that ends envctl; `signum` gives the exit status 128+N."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(name)
        self.signum = signum


_cleanups: dict[int, Callable[[], None]] = {}
_guard = threading.Lock()


def on_interrupt(key: int, kill: Callable[[], None] | None) -> None:
    """Register (or with None, drop) a callback that kills a child process when envctl is interrupted.

    Needed for children waited on from worker threads (certify -j): the
    signal interrupts only the main thread, so their waits would go on.
    """
    with _guard:
        if kill is None:
            _cleanups.pop(key, None)
        else:
            _cleanups[key] = kill


def run_cleanups() -> None:
    with _guard:
        pending = list(_cleanups.values())
    for kill in pending:
        try:
            kill()
        except Exception:  # best effort while going down
            pass


def _raise(signum: int, _frame) -> None:
    run_cleanups()
    raise Interrupted(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise Interrupted in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        if signal.getsignal(signum) == signal.SIG_IGN:
            continue  # started under nohup: keep ignoring what the user asked to ignore
        signal.signal(signum, _raise)


def exit_status(exc: BaseException) -> int:
    return 128 + getattr(exc, "signum", signal.SIGINT)
