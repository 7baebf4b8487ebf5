"""The one wrapper every command goes through.

`@command()` marks a function as a command; `add_commands(app, ...)` registers
the marked functions on a Typer app. The wrapper turns what the function does
into how the process ends:

* an int it returns is the exit status (None is 0);
* EnvctlError becomes one clean paragraph on stderr and its exit code
  (2 bad input, 1 a check that failed), never a traceback;
* Ctrl-C becomes exit 130 with a one-line note (writes are atomic, so nothing
  half-written is left).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import typer

from envctl.core.errors import EnvctlError

INTERRUPTED = "envctl: interrupted; nothing half-written was kept.\n"


def call(func: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run a command body and return its exit status (see the module docstring)."""
    try:
        return func(*args, **kwargs) or 0
    except EnvctlError as exc:
        from envctl.core.output import print_error  # rich only when there is an error to show

        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from envctl.core.interrupts import exit_status, run_cleanups

        run_cleanups()  # children waited on by worker threads (certify -j)
        sys.stderr.write(INTERRUPTED)
        return exit_status(exc)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP


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
