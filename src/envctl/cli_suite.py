"""Certification commands: certify (one target, host, or the whole matrix)."""

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
        target: str = typer.Option(..., "--target", "-t", help="Target to certify, or 'host' for the current Python."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Certify the env at this prefix."),
        timeout: Optional[int] = typer.Option(None, "--timeout", help="Seconds before the smoke run counts as hung."),
        out: Optional[Path] = typer.Option(None, "--out", help="Certificate path (default certs/<target>.json)."),
        matrix: Path = MatrixOpt,
        json_: bool = JsonOpt,
    ) -> None:
        """Export, check, run and compare the smoke models inside the env; write a certificate."""

        def body() -> int:
            from . import certify as certify_mod
            from . import report

            cert = certify_mod.certify(matrix, target, prefix=prefix, timeout=timeout, out=out)
            if json_:
                _emit_json(cert.data)
            else:
                report.print_certificate(cert.data, cert.path)
            return 0 if cert.data["result"] in ("passed", "skipped") else 1

        _run(body)


