"""The `envctl` command line: parse, call one function, print.

Every command takes `--matrix`; read-only ones take `--json`. User errors
arrive as EnvctlError and leave as one paragraph on stderr with exit status 2
(bad input) or 1 (a check that failed); never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from .errors import EnvctlError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Checked, reproducible environments for exporting PyTorch models to ONNX.",
)
matrix_app = typer.Typer(no_args_is_help=True, help="Inspect and check the compatibility matrix.")
app.add_typer(matrix_app, name="matrix")

MatrixOpt = typer.Option(Path("envs/matrix.yaml"), "--matrix", "-m", help="The matrix file.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def _run(func: Callable[[], int | None]) -> None:
    """Run a command body; turn EnvctlError into a clean message and exit code."""
    try:
        code = func() or 0
    except EnvctlError as exc:
        from . import report

        report.print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("envctl: interrupted; nothing half-written was kept.\n")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


def _emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# ---------------------------------------------------------------- matrix


@matrix_app.command("show")
def matrix_show(matrix: Path = MatrixOpt, json_: bool = JsonOpt) -> None:
    """List the expanded targets (and the combinations excluded on purpose)."""

    def body() -> None:
        from . import report
        from .matrix import load_matrix

        loaded = load_matrix(matrix)
        if json_:
            _emit_json(report.matrix_json(loaded))
        else:
            report.print_matrix(loaded)

    _run(body)


@matrix_app.command("check")
def matrix_check(
    matrix: Path = MatrixOpt,
    json_: bool = JsonOpt,
    targets: Optional[List[str]] = typer.Argument(None, help="Targets to check (default: all)."),
) -> None:
    """Check every target against the compatibility rules; exit 1 on any error."""

    def body() -> int:
        from . import report
        from .matrix import load_matrix
        from .rules import check_target

        loaded = load_matrix(matrix)
        chosen = loaded.select(targets) if targets else list(loaded.targets.values())
        findings = {t.name: check_target(t) for t in chosen}
        if json_:
            _emit_json(report.findings_json(findings))
        else:
            report.print_findings(findings)
        return 1 if any(f.severity == "error" for fs in findings.values() for f in fs) else 0

    _run(body)


# ---------------------------------------------------------------- render


@app.command()
def render(
    targets: Optional[List[str]] = typer.Argument(None, help="Targets to render."),
    all_: bool = typer.Option(False, "--all", help="Render every target."),
    matrix: Path = MatrixOpt,
) -> None:
    """Write envs/<target>/environment.yml for each target."""

    def body() -> None:
        from . import pipeline, report

        results = pipeline.render(matrix, targets, all_)
        report.print_render(results)

    _run(body)


# ---------------------------------------------------------------- lock


@app.command()
def lock(
    targets: Optional[List[str]] = typer.Argument(None, help="Targets to lock."),
    all_: bool = typer.Option(False, "--all", help="Lock every target."),
    check: bool = typer.Option(False, "--check", help="Only check: exit 1 naming missing or stale locks."),
    channel: Optional[List[str]] = typer.Option(None, "--channel", help="Use this channel instead of the target's (repeatable)."),
    matrix: Path = MatrixOpt,
    json_: bool = JsonOpt,
) -> None:
    """Solve each target for all its platforms and write locks/<target>.conda-lock.yml."""

    def body() -> int:
        from . import pipeline, report

        if check:
            stale = pipeline.check_locks(matrix, targets, all_ or not targets)
            if json_:
                _emit_json([s.__dict__ for s in stale] if stale else [])
            else:
                report.print_stale(stale)
            return 1 if stale else 0
        with report.Progress() as progress:
            results = pipeline.lock(matrix, targets, all_, channels=channel, progress=progress)
        report.print_locks(results)
        return 0

    _run(body)


# Command groups that live in their own modules register themselves here.
def _register_extensions() -> None:
    import importlib

    for name in ("cli_suite", "cli_everyday", "cli_status", "cli_pack"):
        try:
            module = importlib.import_module(f"envctl.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"envctl.{name}":
                raise
            continue
        module.register(app, _run, _emit_json)


_register_extensions()


def main() -> None:
    # Subprocess children (smoke runner) must not inherit a broken pipe state;
    # and rich must not wrap JSON.
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":
    main()
