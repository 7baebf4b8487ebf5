"""`envctl render` and `envctl lock`: the matrix's targets as environment.yml files and lockfiles."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def render(
    targets: Optional[List[str]] = options.targets("Targets to render."),
    target: Optional[List[str]] = options.target_list(),
    all_: bool = options.all_targets("Render every target."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> None:
    """Write envs/<target>/environment.yml for each target."""
    from envctl.cli import printing
    from envctl.matrix.project import Project
    from envctl.pipeline import stages as pipeline

    project = Project.load(matrix)
    results = pipeline.render(project, project.select(options.names(targets, target), all_))
    if json_:
        printing.emit_json([{"target": r.target, "path": str(r.path), "changed": r.changed, "spec_hash": r.spec_hash}
                            for r in results])
    else:
        printing.print_render(results)


@command()
def lock(
    targets: Optional[List[str]] = options.targets("Targets to lock."),
    target: Optional[List[str]] = options.target_list(),
    all_: bool = options.all_targets("Lock every target."),
    check: bool = typer.Option(False, "--check", help="Only check: exit 1 naming missing or stale locks."),
    channel: Optional[List[str]] = options.channel("Use this channel instead of the target's (repeatable)."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Solve each target for all its platforms and write locks/<target>.conda-lock.yml."""
    from envctl.cli import printing
    from envctl.core.output import Progress
    from envctl.matrix.project import Project
    from envctl.pipeline import stages as pipeline

    project = Project.load(matrix)
    targets = options.names(targets, target)
    if check:
        from envctl.lock.solve import check_locks

        stale = check_locks(project.root, project.select(targets, all_ or not targets))
        if json_:
            printing.emit_json([s.__dict__ for s in stale])
        else:
            printing.print_stale(stale)
        return 1 if stale else 0
    with Progress() as progress:
        results = pipeline.lock(project, project.select(targets, all_), channels=channel, progress=progress)
    printing.print_locks(results)
    return 0


def register(app: typer.Typer) -> None:
    add_commands(app, render, lock)
