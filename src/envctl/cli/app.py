"""The `envctl` command line: parse, call one function, print.

Every command takes `--matrix`; read-only ones take `--json`. Options are
defined once in cli/options.py; every command goes through cli/command.py,
which turns EnvctlError into one paragraph on stderr with exit status 2 (bad
input) or 1 (a check that failed), never a traceback. What commands print
lives in cli/printing.py.
"""

from __future__ import annotations

import os

import typer

# One module per command group, imported and registered explicitly: a missing
# module is an ImportError here, never a silently absent command.
from envctl.cli import certify, coercion, create, everyday, lock, matrix, pack, status

coercion.install()  # str/int/bool/Path options without importing pydantic (see cli/coercion.py)

app = typer.Typer(
    no_args_is_help=True,
    help="Checked, reproducible environments for exporting PyTorch models to ONNX.",
)


def _print_version(value: bool) -> None:
    if value:
        from envctl import __version__

        typer.echo(f"envctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print envctl's version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and warnings; no progress or notes."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Every progress step on its own line."),
) -> None:
    """Checked, reproducible environments for exporting PyTorch models to ONNX."""
    from envctl.core.output import set_verbosity

    set_verbosity(-1 if quiet else verbose)

# In this order `envctl --help` lists the commands (sub-groups follow them).
for _group in (matrix, lock, certify, create, everyday, status, pack):
    _group.register(app)


def main() -> None:
    # Subprocess children (smoke runner) must not inherit a broken pipe state;
    # and rich must not wrap JSON.
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    from envctl.core.interrupts import install

    install()  # SIGTERM/SIGHUP unwind like Ctrl-C, so children are killed and temp files removed
    app()


if __name__ == "__main__":
    main()
