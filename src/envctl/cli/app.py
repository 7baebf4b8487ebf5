"""The `envctl` command line: parse, call one function, print.

Every command takes `--matrix`; read-only ones take `--json`. Options are
defined once in cli/options.py; every command goes through cli/command.py,
which turns EnvctlError into one paragraph on stderr with the exit status its
class maps to (cli/exitcodes.py), never a traceback. What commands print
lives in cli/printing.py.
"""

from __future__ import annotations

import os
import sys

import typer

# One module per command group, imported and registered explicitly: a missing
# module is an ImportError here, never a silently absent command.
from envctl.cli import certify, ci, coercion, create, everyday, lock, matrix, pack, status

coercion.install()  # str/int/bool/Path options without importing pydantic (see cli/coercion.py)


def _flags_as_flags() -> None:
    """--help lists a flag as `--quiet`, not `--quiet <bool>`, and a count flag (-v) without `<int>`.

    Typer (0.2x) labels every option with its Python type; a flag takes no value,
    so the label tells the reader to type one. Typer has no setting for this.
    """
    from typer.core import TyperOption

    labelled = TyperOption.display_type_rich
    if getattr(labelled, "envctl_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag or self.count else labelled(self, ctx)

    display_type_rich.envctl_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_flags()

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
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False,
                                help="Every progress step on its own line."),
    debug: bool = typer.Option(False, "--debug", help="On an error, print the full Python trace too (also ENVCTL_DEBUG=1)."),
) -> None:
    """Checked, reproducible environments for exporting PyTorch models to ONNX."""
    from envctl.cli.command import set_debug
    from envctl.core.output import set_verbosity

    set_verbosity(-1 if quiet else verbose)
    set_debug(debug)

# In this order `envctl --help` lists the commands (sub-groups follow them).
for _group in (matrix, lock, certify, create, everyday, status, ci, pack):
    _group.register(app)


def main() -> None:
    # Subprocess children (smoke runner) must not inherit a broken pipe state;
    # and rich must not wrap JSON.
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    from envctl.cli.command import run_main
    from envctl.core.interrupts import install

    install()  # SIGTERM/SIGHUP unwind like Ctrl-C, so children are killed and temp files removed
    sys.exit(run_main(app))


if __name__ == "__main__":
    main()
