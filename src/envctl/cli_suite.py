"""Certification commands: certify (one target, host, a list of targets, or the whole matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MatrixOpt = typer.Option(Path("envs/matrix.yaml"), "--matrix", "-m", help="The matrix file.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def register(app: typer.Typer, _run, _emit_json) -> None:
    # ---------------------------------------------------------------- certify


    @app.command()
    def certify(
        targets: Optional[List[str]] = typer.Argument(None, help="Targets to certify as one run (or use --all)."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="One target, or 'host' for the current Python; prints its certificate in full."),
        all_: bool = typer.Option(False, "--all", help="Certify every target of the matrix."),
        jobs: int = typer.Option(1, "--jobs", "-j", help="Targets certified in parallel."),
        junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here (one test per target, model and exporter)."),
        markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)."),
        fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when two targets' outputs differ beyond tolerance."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Certify the env at this prefix (with --target)."),
        timeout: Optional[int] = typer.Option(None, "--timeout", help="Seconds before a smoke run counts as hung."),
        out: Optional[Path] = typer.Option(None, "--out", help="Certificate path (with --target; default certs/<target>.json)."),
        import_: Optional[Path] = typer.Option(None, "--import", help="File a device certificate (from a bundle's --certify) under certs/, if it is for the current lock."),
        matrix: Path = MatrixOpt,
        json_: bool = JsonOpt,
    ) -> None:
        """Export, check, run and compare the smoke models inside each env; write certificates.

        Exit 0 only when every target that can run here passed or failed as its
        `xfail` mark expects; targets for another platform or a missing GPU are
        lock-only.
        """

        def body() -> int:
            from .errors import EnvctlError

            names = ([target] if target else []) + list(targets or [])
            if import_ is not None:
                from .pack.importcert import import_certificate
                from .report import console

                if names or all_:
                    raise EnvctlError("--import takes the certificate file alone; the target is the one it names.")
                path, data = import_certificate(matrix, import_)
                console.print(f"filed {path}: {data['target']} {data['result']} on device {(data.get('host') or {}).get('hostname', '?')} "
                              f"({data.get('created_at', '?')})", markup=False, soft_wrap=True)
                return 0
            if all_ and names:
                raise EnvctlError("name targets or pass --all, not both.")
            if not all_ and not names:
                raise EnvctlError("name a target (or several), or pass --all.", hint="`envctl matrix show` lists them.")
            single = target is not None and not targets and not (junit or markdown or fail_on_drift)
            if (prefix or out) and not single:
                raise EnvctlError("--prefix and --out apply to one target given with --target.")
            if single:  # the one-target form prints the certificate in full
                from . import certify as certify_mod
                from . import report

                cert = certify_mod.certify(matrix, target, prefix=prefix, timeout=timeout, out=out)
                if json_:
                    _emit_json(cert.data)
                else:
                    report.print_certificate(cert.data, cert.path)
                return 0 if cert.data["result"] in ("passed", "skipped") else 1

            from . import suite, suite_report

            with suite_report.SuiteProgress() as progress:
                result = suite.run_suite(matrix, names, all_targets=all_, jobs=jobs, timeout=timeout,
                                         junit=junit, markdown=markdown, fail_on_drift=fail_on_drift,
                                         progress=progress)
            if json_:
                _emit_json(result.to_json())
            else:
                suite_report.print_suite(result)
            return result.exit_code

        _run(body)
