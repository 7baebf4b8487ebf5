"""What every stage prints with: the consoles, styles, progress, errors, sizes.

Command-specific tables (matrix, findings, locks, certificates) live in
envctl.cli.printing; the doctor, export and suite reports use these pieces.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape as _escape_markup

from envctl.core.errors import EnvctlError
from envctl.core.text import printable, printable_lines

# Logs and pipes get wide tables instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}
RESULT_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", "warning": "yellow", "lock-only": "cyan"}


# -1 quiet (errors and warnings only), 0 normal, 1+ verbose (every progress event as its own line).
_verbosity = 0


def set_verbosity(level: int) -> None:
    global _verbosity
    _verbosity = level


def verbosity() -> int:
    return _verbosity


def escape(text: object) -> str:
    """Data made safe to put in rich markup: control characters shown as escapes, `[` of markup escaped."""
    return _escape_markup(printable(str(text)))


def escape_lines(text: object) -> str:
    """escape() for multi-line text: newlines kept."""
    return _escape_markup(printable_lines(str(text)))


def print_error(exc: EnvctlError) -> None:
    err_console.print(f"[bold red]envctl:[/] {escape_lines(str(exc))}", soft_wrap=True)


class Progress:
    """A progress callback for the pipeline: `progress(event, **info)`.

    Steps print as they finish, the running one shows a spinner; on a
    non-terminal (CI logs) it prints plain lines.
    """

    def __init__(self) -> None:
        self._status = None
        self._started = time.monotonic()

    def __enter__(self) -> "Progress":
        if err_console.is_terminal and _verbosity == 0:
            self._status = err_console.status("starting")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, event: str, **info: Any) -> None:
        if _verbosity < 0 and event != "warning":
            return
        message = info.get("message") or " ".join(f"{k}={v}" for k, v in info.items() if k != "message")
        line = f"[dim]{time.monotonic() - self._started:6.1f}s[/] [bold]{escape(event)}[/] {escape_lines(message)}"
        if self._status is not None and info.get("transient") and _verbosity < 1:
            self._status.update(line)
        else:
            err_console.print(line, soft_wrap=True)


# ---------------------------------------------------------------- sizes


def human_size(num: float) -> str:
    """Bytes as people read them: 812 B, 3.4 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"


_size = human_size  # the old name, still imported by everyday/export.py
