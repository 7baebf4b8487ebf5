"""The CLI's own plumbing: the one command wrapper, explicit registration, every --help."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from envctl.cli import app
from envctl.cli.command import add_commands, command
from envctl.core.errors import EnvctlError

SRC = Path(__file__).resolve().parents[2] / "src" / "envctl"


def _tiny_app(body) -> typer.Typer:
    tiny = typer.Typer()
    add_commands(tiny, command("go")(body), command("other")(lambda: None))  # two commands: subcommand form
    return tiny


def test_int_return_is_the_exit_status_and_none_is_zero():
    runner = CliRunner()
    assert runner.invoke(_tiny_app(lambda: 3), ["go"]).exit_code == 3
    assert runner.invoke(_tiny_app(lambda: None), ["go"]).exit_code == 0


def test_envctl_error_is_one_clean_message_and_its_exit_code():
    def body():
        raise EnvctlError("the matrix has no target 'x'")

    result = CliRunner().invoke(_tiny_app(body), ["go"])
    assert result.exit_code == 2
    assert "envctl: the matrix has no target 'x'" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped EnvctlError


def test_interrupt_is_exit_130_with_its_note():
    def body():
        raise KeyboardInterrupt

    result = CliRunner().invoke(_tiny_app(body), ["go"])
    assert result.exit_code == 130
    assert "interrupted; nothing half-written was kept" in result.output


def test_other_exceptions_are_not_swallowed():
    def body():
        raise ValueError("a bug")

    result = CliRunner().invoke(_tiny_app(body), ["go"])
    assert isinstance(result.exception, ValueError)


def test_unmarked_function_is_refused_at_registration():
    with pytest.raises(TypeError, match="not marked"):
        add_commands(typer.Typer(), lambda: None)


def _commands(group, path=()):
    for name, sub in group.commands.items():
        yield path + (name,)
        if hasattr(sub, "commands"):
            yield from _commands(sub, path + (name,))


EXPECTED = {
    ("render",), ("lock",), ("certify",), ("create",), ("run",), ("doctor",), ("export",), ("status",),
    ("report",), ("matrix",), ("matrix", "show"), ("matrix", "check"), ("env",), ("env", "export"),
    ("ci",), ("ci", "github"), ("pack",), ("list",), ("shell",), ("ci", "gitlab"),
}


def test_every_command_is_registered_and_has_help():
    root = typer.main.get_command(app)
    found = set(_commands(root))
    assert found == EXPECTED
    runner = CliRunner()
    for path in sorted(found):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_no_module_outside_cli_imports_the_cli():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n == "envctl.cli" or n.startswith("envctl.cli.") for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders
