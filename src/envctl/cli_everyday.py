"""Everyday commands: create (and later run, doctor, export, env export)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MatrixOpt = typer.Option(Path("envs/matrix.yaml"), "--matrix", "-m", help="The matrix file.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def register(app: typer.Typer, _run, _emit_json) -> None:
    # ---------------------------------------------------------------- create


    @app.command()
    def create(
        target: str = typer.Option(..., "--target", "-t", help="The target to build."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Where the env goes (default .envctl/envs/<target>)."),
        force: bool = typer.Option(False, "--force", help="Rebuild even if the env matches its lock."),
        channel: Optional[List[str]] = typer.Option(None, "--channel", help="Channel override when a lock must be made."),
        matrix: Path = MatrixOpt,
    ) -> None:
        """Build the target's environment from its lock (rendering and locking first if stale)."""

        def body() -> None:
            from . import pipeline, report

            with report.Progress() as progress:
                result = pipeline.create(matrix, target, prefix=prefix, force=force, channels=channel, progress=progress)
            report.print_create(result)

        _run(body)


