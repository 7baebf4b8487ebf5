"""Overview commands: status, report (--html, --drift)."""

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
        from envctl.cli.printing_suite import print_status

        print_status(statuses)


@command()
def report(
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML matrix report here."),
    drift: Optional[List[Path]] = typer.Option(None, "--drift", help="Compare the certificates under this folder across targets (repeatable): the fan-in of a CI run."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="With --drift: write the Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="With --drift: exit 1 when two targets' outputs differ beyond tolerance."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Render the matrix, its stages and its certificates as one page; or compare gathered certificates (--drift)."""
    from envctl.core.errors import EnvctlError
    from envctl.core.output import console

    if html is None and not drift:
        raise EnvctlError("name an output: `envctl report --html PATH`, or certificates: `envctl report --drift DIR`.")
    if (markdown or fail_on_drift) and not drift:
        raise EnvctlError("--markdown and --fail-on-drift go with --drift DIR.")
    code, data = 0, {}
    if drift:
        from envctl.cli.printing_suite import print_suite
        from envctl.suite import gathered

        suite = gathered.drift_report(list(drift), matrix=matrix, markdown=markdown, fail_on_drift=fail_on_drift)
        if json_:
            data = suite.to_json()
        else:
            print_suite(suite)
        # The certify jobs fail for their own targets; this check fails only for drift, when asked.
        code = 1 if fail_on_drift and suite.drifted else 0
    if html is not None:
        from envctl.suite import htmlreport

        path, count = htmlreport.write_report(matrix, html)
        if json_:  # with --drift, the comparison's JSON names the page too
            data = data | {"html": str(path)} if drift else {"html": str(path), "targets": count}
        else:
            console.print(f"wrote {path} ({count} target(s))")
    if json_:
        from envctl.cli.printing import emit_json

        emit_json(data)
    return code


def register(app: typer.Typer) -> None:
    add_commands(app, status, report)
