"""The `ci NAME` commands: write a CI configuration that certifies the matrix, one per CI system in suite/ci/."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from envctl.cli import options
from envctl.cli.command import command

if TYPE_CHECKING:
    from envctl.suite.ci import CiSystem


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
BRANCH_HELP = "The default branch: its pushes run the workflow, and its runs are never cancelled."


def ci_command(system: CiSystem) -> Callable[..., None]:
    """The `ci` subcommand of one CI system of the registry: the options every system takes, and
    --branch where the system's file names the default branch."""
    import inspect

    def generate(**given: Any) -> None:
        from envctl.suite.ci import CiOptions

        made = system.generate(given["matrix"], CiOptions(given["gpu_label"], given["install"],
                                                          given.get("branch", "main"), given["fail_on_drift"]))
        _write(made.text, given["out"], made.path, "certify job(s)", made.jobs)

    option = partial(inspect.Parameter, kind=inspect.Parameter.KEYWORD_ONLY)
    params = [
        option("out", annotation=Optional[Path], default=options.out(
            f"{system.kind} file (default {system.path} at the checkout's root; '-' for stdout).")),
        option("gpu_label", annotation=Optional[str], default=typer.Option(
            None, "--gpu-label", help=GPU_LABEL_HELP.replace("self-hosted runners", system.gpu_runners))),
        option("install", annotation=Optional[str], default=typer.Option(None, "--install", help=INSTALL_HELP)),
        *([option("branch", annotation=str, default=typer.Option("main", "--branch", help=BRANCH_HELP))]
          if system.takes_branch else []),
        option("fail_on_drift", annotation=bool, default=typer.Option(False, "--fail-on-drift", help=FAIL_ON_DRIFT_HELP)),
        option("matrix", annotation=Path, default=options.MATRIX),
    ]
    # Typer reads the options from the signature: each system's command gets its own.
    generate.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    generate.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    generate.__name__ = generate.__qualname__ = f"ci_{system.name}"
    generate.__doc__ = system.summary
    return command(system.name)(generate)


def register(app: typer.Typer) -> None:
    from envctl.cli.command import add_commands

    ci_app = typer.Typer(no_args_is_help=True, help="Generate CI configuration that certifies the matrix.")
    from envctl.suite.ci import systems  # light: the systems' modules load their heavy parts when they run

    add_commands(ci_app, *(ci_command(system) for system in systems().values()))
    app.add_typer(ci_app, name="ci")
