"""Overview commands: status, report --html, ci github."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def status(
    targets: Optional[List[str]] = options.targets("Targets to show (default: all)."),
    target: Optional[List[str]] = options.target_list(),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> None:
    """Each target's pipeline stages (rendered, locked, env, certified: present and fresh) and what to run next."""
    from envctl.cli.printing import emit_json
    from envctl.suite import status as status_mod

    statuses = status_mod.project_status(matrix, options.names(targets, target) or None)
    if json_:
        emit_json(status_mod.status_json(matrix, statuses))
    else:
        status_mod.print_status(statuses)


@command()
def report(
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML matrix report here."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> None:
    """Render the matrix, its stages and its certificates as one page."""
    from envctl.core.errors import EnvctlError
    from envctl.core.output import console
    from envctl.suite import htmlreport

    if html is None:
        raise EnvctlError("name an output: `envctl report --html PATH`.")
    path, count = htmlreport.write_report(matrix, html)
    if json_:
        from envctl.cli.printing import emit_json

        emit_json({"html": str(path), "targets": count})
    else:
        console.print(f"wrote {path} ({count} target(s))")


@command("github")
def ci_github(
    out: Optional[Path] = options.out("Workflow file (default .github/workflows/certify.yml in the project; '-' for stdout)."),
    gpu_label: Optional[str] = typer.Option(None, "--gpu-label", help="Run CUDA targets on self-hosted runners with this label (default: hosted runners, lock-only)."),
    install: Optional[str] = typer.Option(None, "--install", help="pip requirement that installs envctl in CI (default: '.' in envctl's own repo, else envctl==<this version>)."),
    branch: str = typer.Option("main", "--branch", help="Branch whose pushes run the workflow."),
    matrix: Path = options.MATRIX,
) -> None:
    """Write a GitHub Actions workflow that checks the locks and certifies every target."""
    import sys

    from envctl.core.output import console
    from envctl.suite import ci_github as ci

    text = ci.github_workflow(matrix, gpu_label=gpu_label, install=install, branch=branch)
    if out is not None and str(out) == "-":
        sys.stdout.write(text)
        return
    path = out or ci.default_out(matrix)
    changed = ci.write_workflow(path, text)
    console.print(f"{path}: {'written' if changed else 'unchanged'} ({ci.job_count(text)} certify job(s))")


def register(app: typer.Typer) -> None:
    add_commands(app, status, report)
    ci_app = typer.Typer(no_args_is_help=True, help="Generate CI configuration that certifies the matrix.")
    add_commands(ci_app, ci_github)
    app.add_typer(ci_app, name="ci")
