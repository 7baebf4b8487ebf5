"""Options shared by several commands, defined once so every command spells them alike.

`MATRIX` and `JSON` are the same everywhere. The others keep their flags and
defaults here and take the per-command help text, which says what the option
means for that command (e.g. `--target` "The target to build." for create).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

MATRIX = typer.Option(Path("envs/matrix.yaml"), "--matrix", "-m", help="The matrix file.")
JSON = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def targets(help: str) -> Any:
    """Target names as positional arguments (none means the command's default)."""
    return typer.Argument(None, help=help)


def all_targets(help: str) -> Any:
    return typer.Option(False, "--all", help=help)


def target(help: str, *, required: bool = False) -> Any:
    return typer.Option(... if required else None, "--target", "-t", help=help)


def target_list(help: str = "A target (repeatable; the same as naming it as an argument).") -> Any:
    """`--target/-t`, repeatable, beside positional target names: every command selects targets both ways."""
    return typer.Option(None, "--target", "-t", help=help)


def names(positional: list[str] | None, flagged: list[str] | None) -> list[str]:
    """Targets named either way, in order, each once."""
    return list(dict.fromkeys([*(flagged or []), *(positional or [])]))


def one_name(positional: list[str] | None, flagged: list[str] | None, command: str) -> str | None:
    """The one target named either way (None when none is named); naming several is bad input."""
    chosen = names(positional, flagged)
    if len(chosen) > 1:
        from envctl.core.errors import EnvctlError

        raise EnvctlError(f"envctl {command} works on one target at a time; got {', '.join(chosen)}",
                          hint=f"Run `envctl {command}` once per target.")
    return chosen[0] if chosen else None


def prefix(help: str) -> Any:
    return typer.Option(None, "--prefix", help=help)


def timeout(help: str) -> Any:
    return typer.Option(None, "--timeout", min=1, help=help)  # whole seconds, at least 1 (a bundle's devcert.py: the same rule)


def out(help: str, *, required: bool = False, short: bool = True) -> Any:
    """`--out` (and `-o`, except where a command never had it: certify)."""
    flags = ("--out", "-o") if short else ("--out",)
    return typer.Option(... if required else None, *flags, help=help)


def channel(help: str) -> Any:
    return typer.Option(None, "--channel", help=help)


def opset(help: str) -> Any:
    return typer.Option(None, "--opset", help=help)


LOCKED = typer.Option(False, "--locked", help="Fail if the lock is missing or stale; never relock (for CI).")
FROZEN = typer.Option(False, "--frozen", help="Use the lock as it is, without checking that it is fresh.")


def given(flags: dict[str, object]) -> list[str]:
    """The names among `flags` ({'--opt': value}) that were given (a true value): for refusing ignored combinations."""
    return [name for name, value in flags.items() if value]
