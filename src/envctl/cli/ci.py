"""`envctl ci github` and `envctl ci gitlab`: write a CI configuration that certifies the matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


def _write(text: str, out: Optional[Path], default: Path, what: str, jobs: int) -> None:
    import sys

    from envctl.core.output import console
    from envctl.suite import ci_jobs

    if out is not None and str(out) == "-":
        sys.stdout.write(text)
        return
    path = out or default
    changed = ci_jobs.write_if_changed(path, text)
    console.print(f"{path}: {'written' if changed else 'unchanged'} ({jobs} {what})")


GPU_LABEL_HELP = ("Run CUDA targets without `runner_labels:` on self-hosted runners with this label "
                  "(default: lock-only, on Linux).")
INSTALL_HELP = ("Where CI installs envctl from: a path in the checkout, or 'envctl-onnx @ git+URL@COMMIT' (default: "
                "the checkout in envctl's own repo, else the git commit this envctl was installed from).")
FAIL_ON_DRIFT_HELP = "The fan-in job fails when two targets' outputs differ beyond tolerance."


@command("github")
def ci_github(
    out: Optional[Path] = options.out("Workflow file (default .github/workflows/certify.yml in the project; '-' for stdout)."),
    gpu_label: Optional[str] = typer.Option(None, "--gpu-label", help=GPU_LABEL_HELP),
    install: Optional[str] = typer.Option(None, "--install", help=INSTALL_HELP),
    branch: str = typer.Option("main", "--branch", help="The default branch: its pushes run the workflow, and its runs are never cancelled."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help=FAIL_ON_DRIFT_HELP),
    matrix: Path = options.MATRIX,
) -> None:
    """Write a GitHub Actions workflow that checks the locks and certifies every target."""
    from envctl.suite import ci_github as ci

    text = ci.github_workflow(matrix, gpu_label=gpu_label, install=install, branch=branch, fail_on_drift=fail_on_drift)
    _write(text, out, ci.default_out(matrix), "certify job(s)", ci.job_count(text))


@command("gitlab")
def ci_gitlab(
    out: Optional[Path] = options.out("Pipeline file (default .gitlab-ci.yml at the checkout's root; '-' for stdout)."),
    gpu_label: Optional[str] = typer.Option(None, "--gpu-label", help=GPU_LABEL_HELP.replace("self-hosted runners", "runners tagged")),
    install: Optional[str] = typer.Option(None, "--install", help=INSTALL_HELP),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help=FAIL_ON_DRIFT_HELP),
    matrix: Path = options.MATRIX,
) -> None:
    """Write a GitLab CI pipeline (.gitlab-ci.yml) that checks the locks and certifies every target."""
    from envctl.suite import ci_gitlab as ci

    text = ci.gitlab_pipeline(matrix, gpu_label=gpu_label, install=install, fail_on_drift=fail_on_drift)
    _write(text, out, ci.default_out(matrix), "certify job(s)", ci.job_count(text))


def register(app: typer.Typer) -> None:
    ci_app = typer.Typer(no_args_is_help=True, help="Generate CI configuration that certifies the matrix.")
    add_commands(ci_app, ci_github, ci_gitlab)
    app.add_typer(ci_app, name="ci")
