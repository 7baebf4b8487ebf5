"""`envctl create`: render, lock (if missing or stale), build the env, certify it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def create(
    target: str = options.target("The target to build.", required=True),
    prefix: Optional[Path] = options.prefix("Where the env goes (default .envctl/envs/<target>)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the env matches its lock."),
    no_certify: bool = typer.Option(False, "--no-certify", help="Skip the smoke export-and-infer at the end."),
    timeout: Optional[int] = options.timeout("Seconds before certification counts as hung."),
    channel: Optional[List[str]] = options.channel("Channel override when a lock must be made."),
    matrix: Path = options.MATRIX,
) -> int:
    """Everything a newcomer needs: render, lock (if missing or stale), build the env, certify it."""
    from envctl.cli import printing
    from envctl.core.output import Progress
    from envctl.matrix.project import Project
    from envctl.pipeline import stages as pipeline

    with Progress() as progress:
        project = Project.load(matrix)
        result = pipeline.setup(project, project.target(target), prefix=prefix, force=force, channels=channel,
                                certify=not no_certify, timeout=timeout, progress=progress)
    printing.print_setup(result)
    return 1 if result.certification == "failed" else 0


def register(app: typer.Typer) -> None:
    add_commands(app, create)
