"""Exit statuses come from one table (cli/exitcodes.py): the docs and README print it, commands exit by it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from envctl.cli import exitcodes
from envctl.cli.command import add_commands, command
from envctl.core import errors

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- exit-codes[^>]*-->\n(.*?)<!-- /exit-codes -->", re.S)


def _marked_table(path: Path) -> str:
    found = MARKED.search(path.read_text(encoding="utf-8"))
    assert found, f"{path} has no <!-- exit-codes --> block"
    return found.group(1)


def test_the_reference_page_is_the_table():
    assert _marked_table(ROOT / "docs/reference/exit-codes.md") == exitcodes.markdown_table(), (
        "docs/reference/exit-codes.md drifted from src/envctl/cli/exitcodes.py: paste markdown_table() into it")


def test_the_readme_lists_the_table():
    assert _marked_table(ROOT / "README.md") == exitcodes.markdown_table(classes=False)


def test_every_error_class_has_its_row():
    defined = {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
               if issubclass(cls, errors.EnvctlError) and cls.__module__ == errors.__name__}
    listed = {cls for row in exitcodes.TABLE for cls in row.classes}
    assert defined - listed == set(), "an error class with no row: add it to cli/exitcodes.TABLE"


def test_no_stage_picks_an_exit_status():
    """Only cli/ maps errors to statuses: no raise site passes one (the old `exit_code=` keyword is gone)."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "src/envctl").rglob("*.py")
                 if path.parts[-2] != "smoke"  # the runner is its own process with its own statuses
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if "exit_code=" in line]
    assert offenders == []


def _raising(error: BaseException) -> typer.Typer:
    def body():
        raise error

    app = typer.Typer()
    add_commands(app, command("go")(body), command("other")(lambda: None))
    return app


def test_each_class_exits_with_its_row():
    runner = CliRunner()
    for row in exitcodes.TABLE:
        for cls in row.classes:
            if row.code is None or not issubclass(cls, errors.EnvctlError):
                continue  # interrupts and internal errors: tests/cli/test_last_resort.py
            result = runner.invoke(_raising(cls("went wrong", file="f.yaml", line=3)), ["go"])
            assert result.exit_code == row.code, (cls.__name__, result.output)
            assert "f.yaml:3: went wrong" in " ".join(result.output.split())


def test_an_unlisted_subclass_exits_as_its_nearest_listed_class():
    class Stranger(errors.LockStale):
        pass

    assert exitcodes.exit_code(Stranger("x")) == exitcodes.CHECK_FAILED
    assert exitcodes.exit_code(errors.EnvctlError("x")) == exitcodes.BAD_INPUT
