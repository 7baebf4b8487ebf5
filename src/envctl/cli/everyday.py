"""Everyday commands: run, doctor, export, and `env export` for conda users.

The bodies live in envctl.everyday (run, doctor, export, envexport).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


def _checked_env(matrix: Path, target: str | None, prefix: Path | None, locked: bool, frozen: bool):
    """The env run and shell work in, checked against its lock under --locked/--frozen (a note when stale)."""
    from envctl.cli.printing import note
    from envctl.everyday.locate import check_env_lock, locate_env
    from envctl.pipeline.stages import LockMode

    mode = LockMode.of(locked, frozen)
    found = locate_env(matrix, target, prefix, current_ok=False)
    warning = check_env_lock(matrix, found.prefix, mode.value, found.project)
    if warning:
        note(warning)
    return found


@command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def run(
    command: List[str] = typer.Argument(..., help="The command and its arguments (after --)."),
    target: Optional[str] = options.target("Run in this target's env."),
    prefix: Optional[Path] = options.prefix("Run in the env at this prefix."),
    locked: bool = options.LOCKED,
    frozen: bool = options.FROZEN,
    matrix: Path = options.MATRIX,
) -> int:
    """Run COMMAND inside the env, as if it were activated; its exit status is passed through."""
    from envctl.everyday.run import run_in_env

    where = _checked_env(matrix, target, prefix, locked, frozen).prefix
    return run_in_env(where, list(command))


@command()
def doctor(
    targets: Optional[List[str]] = options.targets("Targets whose envs to inspect (or --target)."),
    target: Optional[List[str]] = options.target_list("Inspect this target's env (and its lock); repeatable."),
    prefix: Optional[Path] = options.prefix("Inspect the env at this prefix."),
    opset: Optional[int] = options.opset("Opset to check the rules at (default: the target's, else 18)."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Inspect this machine and an env (default: the current Python); exit 1 if an export would break."""
    from envctl.cli.printing import emit_json
    from envctl.everyday import doctor as doctor_mod

    chosen: list[str | None] = [*options.names(targets, target)] or [None]
    reports = [doctor_mod.diagnose(matrix, target=name, prefix=prefix, opset=opset) for name in chosen]
    if json_:
        emit_json(reports[0] if len(reports) == 1 else reports)
    else:
        from envctl.cli.printing_everyday import print_doctor

        for found in reports:
            print_doctor(found)
    return 1 if any(found["breaks_export"] for found in reports) else 0


@command("export")
def export_cmd(
    model: str = typer.Argument(..., help="MODULE:CALLABLE returning (model, example_inputs) or a dict."),
    out: Path = options.out("Where the verified .onnx goes.", required=True),
    target: Optional[str] = options.target("Export in this target's env (default: the current Python)."),
    prefix: Optional[Path] = options.prefix("Export in the env at this prefix."),
    opset: Optional[int] = options.opset("ai.onnx opset (default: the target's, else 18)."),
    dynamic: Optional[List[str]] = typer.Option(None, "--dynamic", help="NAME:AXIS[:DIM] dynamic axis (repeatable); replaces the callable's."),
    exporter: Optional[str] = typer.Option(None, "--exporter", help="torchscript or dynamo (default: the target's first, else dynamo)."),
    simplify: Optional[str] = typer.Option(None, "--simplify", help="auto (skipped, saying why, without a simplifier), required (fails without one), onnxslim or onnxsim: simplify and re-verify."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Sizes tried on every dynamic axis, e.g. 1,2,5."),
    path: Optional[Path] = typer.Option(None, "--path", help="Folder MODULE is imported from (default: the current one)."),
    timeout: Optional[int] = options.timeout("Seconds before the export counts as hung."),
    inputs: Optional[List[Path]] = typer.Option(None, "--inputs", help="Real inputs (.npz keyed by input name, or .pt), compared first (repeatable)."),
    locked: bool = options.LOCKED,
    frozen: bool = options.FROZEN,
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Export your model, check it, run it in ONNX Runtime at several sizes against PyTorch; write --out."""
    from envctl.cli.printing import emit_json
    from envctl.everyday import export as export_mod
    from envctl.pipeline.stages import LockMode

    result = export_mod.export_model(
        matrix, model, out, target=target, prefix=prefix, opset=opset, dynamic=dynamic or [],
        exporter=exporter, simplify=simplify, sizes=sizes, path=path, timeout=timeout,
        lock_mode=LockMode.of(locked, frozen).value, inputs=inputs or [])
    if json_:
        emit_json(result)
    else:
        from envctl.cli.printing_everyday import print_export

        print_export(result)
    return 0 if result["status"] == "passed" else 1


@command()
def shell(
    targets: Optional[List[str]] = options.targets("The target whose env to open a shell in (or --target)."),
    target: Optional[List[str]] = options.target_list("Open a shell in this target's env."),
    prefix: Optional[Path] = options.prefix("Open a shell in the env at this prefix."),
    shell_name: Optional[str] = typer.Option(None, "--shell", help="bash, zsh, fish, xonsh, powershell or cmd_exe (default: yours)."),
    print_script: bool = typer.Option(False, "--print-script", help="Print the activation script instead, e.g. for eval \"$(envctl shell -t T --print-script)\"."),
    locked: bool = options.LOCKED,
    frozen: bool = options.FROZEN,
    matrix: Path = options.MATRIX,
) -> int:
    """An interactive shell inside the env (or, with --print-script, its activation for your own shell)."""
    import sys

    from envctl.everyday import shell as shell_mod

    found = _checked_env(matrix, options.one_name(targets, target, "shell"), prefix, locked, frozen)
    name = shell_name or shell_mod.default_shell()
    if print_script:
        sys.stdout.write(shell_mod.activation_script(found.prefix, name))
        return 0
    return shell_mod.open_shell(found.prefix, name)


@command("list")
def list_cmd(
    targets: Optional[List[str]] = options.targets("The target whose env to list (or --target)."),
    target: Optional[List[str]] = options.target_list("List this target's env."),
    prefix: Optional[Path] = options.prefix("List the env at this prefix."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> None:
    """The packages installed in an env: conda or pip, version, build."""
    from envctl.cli import printing
    from envctl.everyday.listing import installed_packages
    from envctl.everyday.locate import locate_env

    where = locate_env(matrix, options.one_name(targets, target, "list"), prefix, current_ok=False)
    packages = installed_packages(where.prefix, warn=printing.warning)
    if json_:
        printing.emit_json({"prefix": str(where.prefix), "packages": [p.to_json() for p in packages]})
    else:
        printing.print_packages(where.prefix, packages)


@command("export")
def env_export(
    targets: Optional[List[str]] = options.targets("The target whose lock to render (or --target)."),
    target: Optional[List[str]] = options.target_list("The target whose lock to render."),
    kind: str = typer.Option("env", "--kind", help="env (a pinned environment.yml) or explicit (@EXPLICIT URLs)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Which of the lock's platforms (default: this machine's)."),
    out: Optional[Path] = options.out("Write here instead of stdout."),
    matrix: Path = options.MATRIX,
) -> None:
    """The lock as a fully pinned environment.yml or an @EXPLICIT file, for conda/mamba users."""
    import sys

    from envctl.cli.printing import note
    from envctl.everyday.envexport import export_env

    from envctl.core.errors import EnvctlError

    chosen = options.names(targets, target)
    if len(chosen) != 1:
        raise EnvctlError("name exactly one target: envctl env export --target T (one file per target).")
    text, notes = export_env(matrix, chosen[0], kind=kind, platform=platform)
    for line in notes:
        note(line)
    if out is None:
        sys.stdout.write(text)
    else:
        from envctl.core.atomic import write_text_atomic

        write_text_atomic(out, text)
        note(f"wrote {out}")


def register(app: typer.Typer) -> None:
    add_commands(app, run, shell, doctor, export_cmd, list_cmd)
    env_app = typer.Typer(no_args_is_help=True, help="Hand an env to people who use conda directly.")
    add_commands(env_app, env_export)
    app.add_typer(env_app, name="env")
