"""The one wrapper every command goes through.

`@command()` marks a function as a command; `add_commands(app, ...)` registers
the marked functions on a Typer app. The wrapper turns what the function does
into how the process ends:

* an int it returns is the exit status (None is 0);
* EnvctlError becomes one clean paragraph on stderr and the exit status
  its class maps to in cli/exitcodes.py (2 bad input, 1 a check that
  failed), never a traceback;
* Ctrl-C becomes exit 130 with a one-line note (writes are atomic, so nothing
  half-written is left).

`run_main` is the process's last resort around the whole app (what `envctl`
and `python -m envctl` run): an exception nothing else handled (a bug in
envctl) becomes one paragraph saying what failed and where to report it,
exit status 70 (EX_SOFTWARE); the full trace only with `--debug` or
ENVCTL_DEBUG=1. Ctrl-C outside a command body (while parsing options) is the
same one line and 130. In-process callers (tests with CliRunner) still see
the exception itself.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable

import typer

from envctl.cli.exitcodes import INTERNAL_ERROR, exit_code
from envctl.core.errors import EnvctlError

INTERRUPTED = "envctl: interrupted; nothing half-written was kept.\n"
REPORT_TO = "the envctl issue tracker (where you got envctl)"

_debug = False
_interrupt_noted = False


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debug_enabled() -> bool:
    """--debug, or ENVCTL_DEBUG set to anything but '', '0', 'false', 'no'."""
    return _debug or os.environ.get("ENVCTL_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _note_interrupt() -> None:
    global _interrupt_noted
    if not _interrupt_noted:
        _interrupt_noted = True
        sys.stderr.write(INTERRUPTED)


def report_internal_error(exc: BaseException) -> None:
    """One paragraph on stderr: what failed, where, and where to report it (the trace first, with --debug)."""
    from envctl.core.text import printable, printable_lines

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" in {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
    if debug_enabled():
        sys.stderr.write(printable_lines("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    detail = printable(str(exc))[:500]
    command = printable(" ".join(["envctl", *sys.argv[1:]]))[:300]
    sys.stderr.write(
        f"envctl: internal error: {type(exc).__name__}{': ' + detail if detail else ''}{where}, while running "
        f"`{command}`. This is a bug in envctl, not a problem with your input; writes are atomic, so nothing "
        f"half-written was kept. Please report it to {REPORT_TO} with this message"
        + (" and the trace above.\n" if debug_enabled() else
           "; run the command again with --debug (or ENVCTL_DEBUG=1) for the full trace to attach.\n"))


def call(func: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run a command body and return its exit status (see the module docstring)."""
    try:
        return func(*args, **kwargs) or 0
    except EnvctlError as exc:
        from envctl.core.output import print_error  # rich only when there is an error to show

        if debug_enabled():
            traceback.print_exc(file=sys.stderr)
        print_error(exc)
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        from envctl.core.interrupts import exit_status, run_cleanups

        run_cleanups()  # children waited on by worker threads (certify -j)
        _note_interrupt()
        return exit_status(exc)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP


def run_main(app: Callable[..., Any]) -> int:
    """Run the whole app as a process does; the exit status (see the module docstring)."""
    from envctl.core.interrupts import exit_status, run_cleanups

    try:
        app()  # standalone: ends in SystemExit
        return 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 130:  # typer turns a Ctrl-C outside a command body into a silent Exit(130)
            _note_interrupt()
        return code
    except KeyboardInterrupt as exc:
        run_cleanups()
        _note_interrupt()
        return exit_status(exc)
    except Exception as exc:  # the last resort: one paragraph instead of a traceback
        try:
            report_internal_error(exc)
        except KeyboardInterrupt:
            pass
        return INTERNAL_ERROR


def command(name: str | None = None, **settings: Any) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """Mark FUNC as a command named NAME (default: the function's); SETTINGS go to `Typer.command`."""

    def decorate(func: Callable[..., int | None]) -> Callable[..., None]:
        # functools.wraps keeps the signature and annotations Typer reads the options from.
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            raise typer.Exit(call(func, *args, **kwargs))

        wrapper.cli_command = (name, settings)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def add_commands(app: typer.Typer, *funcs: Callable[..., None]) -> None:
    """Register the `@command()` functions on APP, in this order (the order `--help` lists them)."""
    for func in funcs:
        marked = getattr(func, "cli_command", None)
        if marked is None:
            raise TypeError(f"{func.__qualname__} is not marked with @command()")
        name, settings = marked
        app.command(name, **settings)(func)
