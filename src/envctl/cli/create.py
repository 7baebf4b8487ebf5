"""`envctl create`: render, lock (if missing or stale), build the env, certify it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def create(
    targets: Optional[List[str]] = options.targets("Targets to build (or --target)."),
    target: Optional[List[str]] = options.target_list("The target to build (repeatable)."),
    prefix: Optional[Path] = options.prefix("Where the env goes (default .envctl/envs/<target>)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the env matches its lock."),
    no_certify: bool = typer.Option(False, "--no-certify", help="Skip the smoke export-and-infer at the end."),
    timeout: Optional[int] = options.timeout("Seconds before certification counts as hung."),
    channel: Optional[List[str]] = options.channel("Channel override when a lock must be made."),
    locked: bool = options.LOCKED,
    frozen: bool = options.FROZEN,
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Everything a newcomer needs: render, lock (if missing or stale), build the env, certify it."""
    from envctl.cli import printing
    from envctl.core.errors import EnvctlError
    from envctl.core.output import Progress
    from envctl.matrix.project import Project
    from envctl.pipeline import stages as pipeline

    lock_mode = pipeline.LockMode.of(locked, frozen)  # a bad combination is refused before anything is read
    chosen = options.names(targets, target)
    if not chosen:
        raise EnvctlError("name the target to build: envctl create --target T", hint="`envctl matrix show` lists them.")
    if prefix is not None and len(chosen) > 1:
        raise EnvctlError("--prefix names one env: give one target with it.", key="--prefix")
    if no_certify and timeout is not None:
        raise EnvctlError("--timeout is for the certification, which --no-certify skips.", key="--timeout")
    if channel and lock_mode is not pipeline.LockMode.AUTO:
        raise EnvctlError("--channel overrides the channels of a lock being made; --locked and --frozen never make one.",
                          key="--channel")
    project = Project.load(matrix)
    picked = project.select(chosen)  # every name checked before anything is built
    results = []
    for one in picked:
        with Progress() as progress:
            result = pipeline.setup(project, one, prefix=prefix, force=force, channels=channel,
                                    certify=not no_certify, timeout=timeout, lock_mode=lock_mode, progress=progress)
        results.append(result)
        if not json_:
            printing.print_setup(result)
    if json_:
        printing.emit_json([printing.setup_json(r) for r in results])
    return 1 if any(r.certification == "failed" for r in results) else 0


def register(app: typer.Typer) -> None:
    add_commands(app, create)
