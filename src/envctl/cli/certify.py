"""`envctl certify`: one target (or 'host'), a list of targets, or the whole matrix."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def certify(
    targets: Optional[List[str]] = options.targets("Targets to certify as one run (or use --all)."),
    target: Optional[List[str]] = options.target_list("A target, or 'host' for the current Python (repeatable); one alone prints its certificate in full."),
    all_: bool = options.all_targets("Certify every target of the matrix."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Targets certified in parallel."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here (one test per target, model and exporter)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when two targets' outputs differ beyond tolerance."),
    fail_on_lock_only: bool = typer.Option(False, "--fail-on-lock-only", help="Exit 1 when a target ended lock-only (nothing ran): for CI jobs meant to run it."),
    prefix: Optional[Path] = options.prefix("Certify the env at this prefix (with --target)."),
    timeout: Optional[int] = options.timeout("Seconds before a smoke run counts as hung."),
    out: Optional[Path] = options.out("Certificate path (with --target; default certs/<target>.json).", short=False),
    inputs: Optional[List[Path]] = typer.Option(None, "--inputs", help="Real inputs for the user models (.npz/.pt, repeatable; with one --target)."),
    locked: bool = options.LOCKED,
    frozen: bool = options.FROZEN,
    import_: Optional[Path] = typer.Option(None, "--import", help="File a device certificate (a bundle's --certify) under certs/, if it is for the current lock."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Export, check, run and compare the smoke models inside each env; write certificates.

    Exit 0 only when every target that can run here passed or failed as its
    `xfail` mark expects; targets for another platform or a missing GPU are
    lock-only (a failure with --fail-on-lock-only).
    """
    from envctl.cli import printing
    from envctl.core.errors import EnvctlError
    from envctl.pipeline.stages import LockMode

    lock_mode = LockMode.of(locked, frozen)

    names = options.names(targets, target)
    if import_ is not None:
        if names or all_:
            raise EnvctlError("--import takes the certificate file alone; the target is the one it names.")
        ignored = options.given({"--jobs": jobs != 1, "--junit": junit, "--markdown": markdown,
                                 "--fail-on-drift": fail_on_drift, "--fail-on-lock-only": fail_on_lock_only,
                                 "--prefix": prefix, "--timeout": timeout, "--out": out, "--inputs": inputs,
                                 "--locked": locked, "--frozen": frozen, "--json": json_})
        if ignored:
            raise EnvctlError(f"--import files a certificate made on a device; {', '.join(ignored)} would do nothing "
                              "with it.", key=ignored[0], hint="Run the import alone: envctl certify --import FILE.")
        from envctl.core.output import console
        from envctl.pack.importcert import import_certificate, summary

        path, data = import_certificate(matrix, import_)
        console.print(summary(path, data), markup=False, soft_wrap=True, highlight=False)
        return 0
    if all_ and names:
        raise EnvctlError("name targets or pass --all, not both.")
    if not all_ and not names:
        raise EnvctlError("name a target (or several), or pass --all.", hint="`envctl matrix show` lists them.")
    single = len(target or []) == 1 and not targets and not (junit or markdown or fail_on_drift or fail_on_lock_only)
    if (prefix or out or inputs) and not single:
        raise EnvctlError("--prefix, --out and --inputs apply to one target given with --target.")
    if single and jobs != 1:
        raise EnvctlError("--jobs runs several targets at once; one target given with --target runs alone.",
                          key="--jobs")
    if single:  # the one-target form prints the certificate in full
        assert target is not None  # single: exactly one --target (mypy cannot follow the bool)
        from envctl.core.output import Progress
        from envctl.pipeline import stages

        with Progress() as progress:  # each smoke stage as it starts and ends, on stderr (silent under -q)
            cert = stages.certify_one(matrix, target[0], prefix=prefix, timeout=timeout, out=out, lock_mode=lock_mode,
                                      inputs=tuple(inputs or ()), progress=progress)
        if json_:
            printing.emit_json(cert.to_json())
        else:
            printing.print_certificate(cert.to_json(), cert.path)
        return 0 if cert.result.value in ("passed", "skipped") else 1

    from envctl.cli.exitcodes import CHECK_FAILED, SUCCESS
    from envctl.cli.printing_suite import SuiteProgress, print_suite
    from envctl.suite import certify_all as suite

    with SuiteProgress() as progress:
        result = suite.run_suite(matrix, names, all_targets=all_, jobs=jobs, timeout=timeout,
                                 junit=junit, markdown=markdown, fail_on_drift=fail_on_drift,
                                 fail_on_lock_only=fail_on_lock_only, lock_mode=lock_mode, progress=progress)
    code = SUCCESS if result.ok else CHECK_FAILED
    if json_:
        printing.emit_json(result.to_json() | {"exit_code": code})
    else:
        print_suite(result)
    return code


def register(app: typer.Typer) -> None:
    add_commands(app, certify)
