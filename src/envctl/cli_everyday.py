"""Everyday commands: create, run, doctor, export, env export.

Thin: parse, call one function, print. The bodies live in pipeline.py,
run.py, doctor.py, export.py and envexport.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MatrixOpt = typer.Option(Path("envs/matrix.yaml"), "--matrix", "-m", help="The matrix file.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def _print_setup(result) -> None:
    from rich.markup import escape

    from .report import _size, console

    created = result.create
    if created.action == "unchanged":
        console.print(f"{created.target}: env at {created.prefix} already matches its lock.")
    else:
        console.print(f"[green]{created.action}[/] {created.target} at {created.prefix}: "
                      f"{created.packages.get('conda', 0)} conda + {created.packages.get('pip', 0)} pip packages, "
                      f"{_size(created.size_bytes)}, {created.seconds:.1f}s")
    cert, path = result.certificate or {}, result.certificate_path
    if result.certification == "already certified":
        console.print(f"[green]already certified[/]: {path} passed for this lock ({created.lock_sha256[:12]}).")
    elif result.certification == "passed":
        console.print(f"[green]certified[/]: smoke export-and-infer passed -> {path}")
    elif result.certification == "failed":
        failure = cert.get("failure") or {}
        console.print(f"[bold red]certification failed[/] -> {path}: {escape(str(failure.get('class', '?')))}: "
                      f"{escape(str(failure.get('message', ''))[:300])}")
        if failure.get("remedy"):
            console.print(f"  remedy: {escape(failure['remedy'])}")
        runs = cert.get("runs") or []
        bad = [f"{r['model']}/{r['exporter']} ({(r.get('failure') or {}).get('class', r['status'])})"
               for r in runs if r["status"] == "failed"]
        if bad:
            console.print(f"  {len(bad)} of {len(runs)} smoke runs failed: {escape(', '.join(bad))}")
        if cert.get("xfail"):
            console.print(f"  (expected: the target is marked xfail: {escape(cert['xfail'])})")
        console.print(f"  The env is built; `envctl certify --target {created.target}` shows every run.")
    else:
        console.print(f"not certified (--no-certify): `envctl certify --target {created.target}` checks it.")
    console.print(
        "\nUse it:\n"
        f"  envctl run --target {created.target} -- python your_script.py   # runs inside the activated env\n"
        f"  envctl run --target {created.target} -- bash                    # a shell inside it\n"
        f"  envctl export my_module:make_model --target {created.target} --out model.onnx\n"
        f"  conda activate {created.prefix}   # if you have conda/mamba: the env's activate path\n"
        f"  {created.python}   # its python, directly",
        soft_wrap=True, markup=False,
    )


def register(app: typer.Typer, _run, _emit_json) -> None:
    env_app = typer.Typer(no_args_is_help=True, help="Hand an env to people who use conda directly.")
    app.add_typer(env_app, name="env")

    # ---------------------------------------------------------------- create

    @app.command()
    def create(
        target: str = typer.Option(..., "--target", "-t", help="The target to build."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Where the env goes (default .envctl/envs/<target>)."),
        force: bool = typer.Option(False, "--force", help="Rebuild even if the env matches its lock."),
        no_certify: bool = typer.Option(False, "--no-certify", help="Skip the smoke export-and-infer at the end."),
        timeout: Optional[int] = typer.Option(None, "--timeout", help="Seconds before certification counts as hung."),
        channel: Optional[List[str]] = typer.Option(None, "--channel", help="Channel override when a lock must be made."),
        matrix: Path = MatrixOpt,
    ) -> None:
        """Everything a newcomer needs: render, lock (if missing or stale), build the env, certify it."""

        def body() -> int:
            from . import pipeline, report

            with report.Progress() as progress:
                result = pipeline.setup(matrix, target, prefix=prefix, force=force, channels=channel,
                                        certify=not no_certify, timeout=timeout, progress=progress)
            _print_setup(result)
            return 1 if result.certification == "failed" else 0

        _run(body)

    # ---------------------------------------------------------------- run

    @app.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
    def run(
        command: List[str] = typer.Argument(..., help="The command and its arguments (after --)."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="Run in this target's env."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Run in the env at this prefix."),
        matrix: Path = MatrixOpt,
    ) -> None:
        """Run COMMAND inside the env, as if it were activated; its exit status is passed through."""

        def body() -> int:
            import sys

            from .run import resolve_prefix, run_in_env, stale_warning

            where, _ = resolve_prefix(matrix, target, prefix)
            note = stale_warning(matrix, where)
            if note:
                sys.stderr.write(f"envctl: {note}\n")
            return run_in_env(where, list(command))

        _run(body)

    # ---------------------------------------------------------------- doctor

    @app.command()
    def doctor(
        target: Optional[str] = typer.Option(None, "--target", "-t", help="Inspect this target's env (and its lock)."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Inspect the env at this prefix."),
        opset: Optional[int] = typer.Option(None, "--opset", help="Opset to check the rules at (default: the target's, else 18)."),
        matrix: Path = MatrixOpt,
        json_: bool = JsonOpt,
    ) -> None:
        """Inspect this machine and an env (default: the current Python); exit 1 if an export would break."""

        def body() -> int:
            from . import doctor as doctor_mod

            found = doctor_mod.diagnose(matrix, target=target, prefix=prefix, opset=opset)
            if json_:
                _emit_json(found)
            else:
                doctor_mod.print_report(found)
            return 1 if found["breaks_export"] else 0

        _run(body)

    # ---------------------------------------------------------------- export

    @app.command("export")
    def export_cmd(
        model: str = typer.Argument(..., help="MODULE:CALLABLE returning (model, example_inputs) or a dict."),
        out: Path = typer.Option(..., "--out", "-o", help="Where the verified .onnx goes."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="Export in this target's env (default: the current Python)."),
        prefix: Optional[Path] = typer.Option(None, "--prefix", help="Export in the env at this prefix."),
        opset: Optional[int] = typer.Option(None, "--opset", help="ai.onnx opset (default: the target's, else 18)."),
        dynamic: Optional[List[str]] = typer.Option(None, "--dynamic", help="NAME:AXIS[:DIM] dynamic axis (repeatable); replaces the callable's."),
        exporter: Optional[str] = typer.Option(None, "--exporter", help="torchscript or dynamo (default: the target's first, else dynamo)."),
        simplify: Optional[str] = typer.Option(None, "--simplify", help="auto (skipped, saying why, without a simplifier), required (fails without one), onnxslim or onnxsim: simplify and re-verify."),
        sizes: Optional[str] = typer.Option(None, "--sizes", help="Sizes tried on every dynamic axis, e.g. 1,2,5."),
        path: Optional[Path] = typer.Option(None, "--path", help="Folder MODULE is imported from (default: the current one)."),
        timeout: Optional[int] = typer.Option(None, "--timeout", help="Seconds before the export counts as hung."),
        matrix: Path = MatrixOpt,
        json_: bool = JsonOpt,
    ) -> None:
        """Export your model, check it, run it in ONNX Runtime at several sizes against PyTorch; write --out."""

        def body() -> int:
            from . import export as export_mod

            result = export_mod.export_model(
                matrix, model, out, target=target, prefix=prefix, opset=opset, dynamic=dynamic or [],
                exporter=exporter, simplify=simplify, sizes=sizes, path=path, timeout=timeout)
            if json_:
                _emit_json(result)
            else:
                export_mod.print_report(result)
            return 0 if result["status"] == "passed" else 1

        _run(body)

    # ---------------------------------------------------------------- env export

    @env_app.command("export")
    def env_export(
        target: str = typer.Option(..., "--target", "-t", help="The target whose lock to render."),
        kind: str = typer.Option("env", "--kind", help="env (a pinned environment.yml) or explicit (@EXPLICIT URLs)."),
        platform: Optional[str] = typer.Option(None, "--platform", help="Which of the lock's platforms (default: this machine's)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
        matrix: Path = MatrixOpt,
    ) -> None:
        """The lock as a fully pinned environment.yml or an @EXPLICIT file, for conda/mamba users."""

        def body() -> None:
            import sys

            from .envexport import export_env

            text, notes = export_env(matrix, target, kind=kind, platform=platform)
            for note in notes:
                sys.stderr.write(f"envctl: {note}\n")
            if out is None:
                sys.stdout.write(text)
            else:
                from .atomic import write_text_atomic

                write_text_atomic(out, text)
                sys.stderr.write(f"envctl: wrote {out}\n")

        _run(body)
