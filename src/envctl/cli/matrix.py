"""`envctl matrix show|check`: inspect and check the compatibility matrix."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command("show")
def show(matrix: Path = options.MATRIX, json_: bool = options.JSON) -> None:
    """List the expanded targets (and the combinations excluded on purpose)."""
    from envctl.cli import printing
    from envctl.matrix.loader import load_matrix

    loaded = load_matrix(matrix)
    if json_:
        printing.emit_json(printing.matrix_json(loaded))
    else:
        printing.print_matrix(loaded)


@command("check")
def check(
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
    targets: Optional[List[str]] = options.targets("Targets to check (default: all)."),
    target: Optional[List[str]] = options.target_list(),
) -> int:
    """Check every target against the compatibility rules; exit 1 on any error."""
    from envctl.cli import printing
    from envctl.matrix.loader import load_matrix
    from envctl.rules.api import check_target

    loaded = load_matrix(matrix)
    targets = options.names(targets, target)
    chosen = loaded.select(targets) if targets else list(loaded.targets.values())
    findings = {t.name: check_target(t) for t in chosen}
    if json_:
        printing.emit_json(printing.findings_json(findings))
    else:
        printing.print_findings(findings)
    return 1 if any(f.severity == "error" for fs in findings.values() for f in fs) else 0


def register(app: typer.Typer) -> None:
    matrix_app = typer.Typer(no_args_is_help=True, help="Inspect and check the compatibility matrix.")
    add_commands(matrix_app, show, check)
    app.add_typer(matrix_app, name="matrix")
