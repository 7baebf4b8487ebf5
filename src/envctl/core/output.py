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
        self._status: Any = None  # rich's Status while a terminal shows it
        self._started = time.monotonic()
        self._line: Any = ""
        self._transfers: Transfers | None = None

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
        if event == "download":  # bytes of one file: `key`, `name`, `done`, `total` (or None), `finished`
            self._download(**info)
            return
        message = info.get("message") or " ".join(f"{k}={v}" for k, v in info.items()
                                                   if k not in ("message", "transient"))
        text = f"[bold]{escape(event)}[/] {escape_lines(message)}"
        if self._status is not None and info.get("transient") and _verbosity < 1:
            self._line = _Running(text)  # the spinner's clock runs: how long this step has taken
            self._redraw()
        else:
            err_console.print(f"[dim]{time.monotonic() - self._started:6.1f}s[/] {text}", soft_wrap=True)


    def _download(self, key: Any = None, name: str = "", done: int = 0, total: int | None = None,
                  finished: bool = False, **_: Any) -> None:
        if self._transfers is None:
            self._transfers = Transfers(err_console)
        line = self._transfers.update(key, name, done, total, finished)
        if self._status is not None:
            self._redraw()
        elif line:  # a log, not a terminal: one line per finished download
            err_console.print(f"[dim]{time.monotonic() - self._started:6.1f}s[/] [bold]download[/] {escape(line)}",
                              soft_wrap=True)

    def _redraw(self) -> None:
        from rich.console import Group

        if self._status is not None:
            shown = self._transfers.renderable() if self._transfers else None
            self._status.update(Group(self._line, shown) if shown is not None else self._line)


class Transfers:
    """Downloads in flight as rich's progress display (bytes, total, rate); finished ones leave it."""

    def __init__(self, console: Console) -> None:
        from rich import progress as rp

        self._progress = rp.Progress(rp.TextColumn("  {task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                                     rp.TransferSpeedColumn(), console=console, auto_refresh=False)
        self._tasks: dict[Any, Any] = {}
        self._started: dict[Any, float] = {}

    def update(self, key: Any, name: str, done: int, total: int | None, finished: bool) -> str | None:
        """Record progress; for a finished download, its one-line account ('torch: 1.2 GiB in 30.1 s, 41 MiB/s')."""
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(name or str(key), total=total)
            self._started[key] = time.monotonic()
        task = self._tasks[key]
        self._progress.update(task, completed=done, total=total)
        if not finished:
            return None
        seconds = max(time.monotonic() - self._started.pop(key), 1e-3)
        self._progress.remove_task(self._tasks.pop(key))
        return f"{name or key}: {human_size(done)} in {seconds:.1f}s, {human_size(done / seconds)}/s"

    def renderable(self):
        return self._progress if self._tasks else None


class _Running:
    """A spinner's text with the time the step has been running, redrawn at every refresh."""

    def __init__(self, markup: str) -> None:
        self._markup, self._since = markup, time.monotonic()

    def __rich__(self) -> str:
        return f"[dim]{time.monotonic() - self._since:6.1f}s[/] {self._markup}"


# ---------------------------------------------------------------- sizes


def human_size(num: float) -> str:
    """Bytes as people read them: 812 B, 3.4 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"


_size = human_size  # the old name, still imported by everyday/export.py
