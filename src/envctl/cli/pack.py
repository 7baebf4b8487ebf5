"""`envctl pack`: a target's env as one file for a machine that cannot run envctl (sh bundle or OCI image)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from envctl.cli import options
from envctl.cli.command import add_commands, command


@command()
def pack(
    targets: Optional[List[str]] = options.targets("The target to pack (or --target); its lock must be fresh."),
    target: Optional[List[str]] = options.target_list("The target to pack (its lock must be fresh)."),
    out: Path = options.out("The file to write (an .sh bundle, or a .tar for --format oci).", required=True),
    platform: Optional[str] = typer.Option(None, "--platform", help="Which of the lock's platforms (default: the only one, else this machine's)."),
    format_: str = typer.Option("sh", "--format", help="sh: self-extracting installer; oci: OCI image archive."),
    base: Optional[Path] = typer.Option(None, "--base", help="With --format oci: an OCI image archive to stack the env on."),
    compress: str = typer.Option("gzip", "--compress", help="The sh bundle's env payload: gzip, or none (a bigger file that installs faster)."),
    env_path: str = typer.Option("/opt/envctl/env", "--env-path", help="With --format oci: where the env lives in the image."),
    matrix: Path = options.MATRIX,
    json_: bool = options.JSON,
) -> int:
    """Pack the target's env for its platform, from the lock, on any machine: it installs with only sh and tar."""
    from envctl.cli import printing
    from envctl.core.errors import EnvctlError
    from envctl.core.output import Progress, console

    chosen = options.one_name(targets, target, "pack")
    if chosen is None:
        raise EnvctlError("name the target to pack: envctl pack TARGET --out FILE (or --target TARGET)")
    if format_ not in ("sh", "oci"):
        raise EnvctlError(f"--format must be sh or oci, not {format_!r}")
    if base is not None and format_ != "oci":
        raise EnvctlError("--base applies to --format oci")
    with Progress() as progress:
        if format_ == "sh":
            from envctl.pack.bundle import pack_bundle

            result = pack_bundle(matrix, chosen, out, platform=platform, compress=compress, progress=progress)
        else:
            from envctl.pack.oci import pack_oci

            result = pack_oci(matrix, chosen, out, platform=platform, base=base, env_path=env_path, progress=progress)
    if json_:
        printing.emit_json(result.to_json())
        return 0
    console.print(
        f"wrote {result.path}: {result.target} for {result.platform}, {result.size_bytes / 2**20:.0f} MiB "
        f"(env {result.env_bytes / 2**20:.0f} MiB, {result.files} files, {result.packages['conda']} conda + "
        f"{result.packages['pip']} pip packages) in {result.seconds:.1f}s; certificate: {result.certificate or 'none for this lock'}",
        soft_wrap=True, markup=False)
    if result.format == "sh":
        console.print(f"install on the device: sh {result.path.name} --prefix DIR [--certify]", markup=False)
    else:
        console.print(f"load it: podman load -i {result.path.name} (or docker load; skopeo copy oci-archive:{result.path.name} ...)",
                      markup=False)
    return 0


def register(app: typer.Typer) -> None:
    add_commands(app, pack)
