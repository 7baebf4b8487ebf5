"""CLI conventions: --version, completion, -q/-v, one way to select targets, hints that name real commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click  # typer's commands are click commands
import pytest
import typer.main
from typer.testing import CliRunner

from envctl import __version__
from envctl.cli import app

SRC = Path(__file__).resolve().parents[2] / "src" / "envctl"
runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


@pytest.mark.parametrize("flag", ["-q", "--quiet", "-v", "--verbose"])
def test_global_verbosity_flags_are_accepted(flag, tmp_path):
    (tmp_path / "envs").mkdir()
    shipped = Path(__file__).resolve().parents[2] / "envs" / "matrix.yaml"
    (tmp_path / "envs" / "matrix.yaml").write_text(shipped.read_text())
    done = subprocess.run([sys.executable, "-m", "envctl", flag, "matrix", "show"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_quiet_silences_progress_but_not_warnings(monkeypatch):
    import io

    from rich.console import Console

    from envctl.core import output

    for level, expected in ((-1, ["warning"]), (0, ["step", "warning"]), (1, ["step", "warning"])):
        buffer = io.StringIO()
        monkeypatch.setattr(output, "err_console", Console(file=buffer, width=200))
        output.set_verbosity(level)
        try:
            with output.Progress() as progress:
                progress("step", message="one step")
                progress("warning", message="the lock is not portable")
        finally:
            output.set_verbosity(0)
        shown = [word for word in ("step", "warning") if f" {word} " in buffer.getvalue()]
        assert shown == expected, (level, buffer.getvalue())


def _command(tokens: list[str]):
    """The click command a token list names, and the rest of the tokens."""
    cmd = typer.main.get_command(app)
    rest = list(tokens)
    while rest and hasattr(cmd, "get_command") and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        if sub is None:
            break
        cmd, rest = sub, rest[1:]
    return cmd, rest


def test_every_command_selects_targets_both_ways():
    """Positional names and a repeatable --target/-t, wherever a command takes targets by name."""
    root = typer.main.get_command(app)
    for path in (["render"], ["lock"], ["status"], ["certify"], ["create"], ["doctor"], ["matrix", "check"],
                 ["env", "export"], ["list"], ["shell"], ["pack"]):
        cmd, _ = _command(path)
        params = {p.name: p for p in cmd.params}
        assert "targets" in params and params["targets"].param_type_name == "argument", path
        option = next((p for p in cmd.params if "--target" in getattr(p, "opts", [])), None)
        assert option is not None and "-t" in option.opts and option.multiple, path
    # run and export take the command / the model positionally: --target only (documented).
    for path in (["run"], ["export"]):
        cmd, _ = _command(path)
        assert any("--target" in getattr(p, "opts", []) for p in cmd.params), path
    assert root is not None


@pytest.mark.parametrize("command", [["list"], ["shell", "--print-script"], ["pack", "--out", "x.sh"]])
def test_one_target_commands_take_it_either_way_and_refuse_two(command, tmp_path):
    """list, shell and pack: `CMD T` and `CMD -t T` name the same target; two targets are bad input."""
    (tmp_path / "envs").mkdir()
    shipped = Path(__file__).resolve().parents[2] / "envs" / "matrix.yaml"
    (tmp_path / "envs" / "matrix.yaml").write_text(shipped.read_text())

    def envctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "envctl", *command, *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    positional, flagged = envctl("linux-cpu"), envctl("--target", "linux-cpu")
    assert positional.returncode == flagged.returncode != 0  # no env, or no lock, here: the same refusal
    assert positional.stderr == flagged.stderr and "linux-cpu" in positional.stderr
    assert "one target at a time" not in positional.stderr
    two = envctl("linux-cpu", "-t", "linux-cuda11.8")
    assert two.returncode == 2 and "one target at a time" in two.stderr, two.stderr


def test_every_hint_names_a_command_and_options_that_exist():
    """Every `envctl ...` the code suggests to a user parses as a real command with real options."""
    hints = set()
    for path in SRC.rglob("*.py"):
        hints.update(re.findall(r"`(envctl [a-z][^`]*)`", path.read_text(encoding="utf-8")))
    assert len(hints) > 10
    for hint in sorted(hints):
        for variant in hint.split("|"):
            tokens = variant.replace("envctl ", "", 1).split() if variant.startswith("envctl") else \
                ["matrix", variant]  # `envctl matrix show|check`
            tokens = [re.sub(r"\{[^}]*\}", "x", t) for t in tokens]
            cmd, rest = _command(tokens)
            assert not hasattr(cmd, "get_command") or not rest or rest[0].startswith("-"), (hint, rest)
            known = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            for token in rest:
                if token.startswith("-"):
                    assert token.split("=")[0] in known, f"{hint!r}: {cmd.name} has no {token}"
