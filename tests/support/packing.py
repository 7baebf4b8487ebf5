"""The one packed bundle the pack tests share (session fixtures `pack_project` and `pack_bundle`, see conftest).

Packing is the expensive part (the whole torch env from the local channel):
test_pack.py and test_pack_hardening.py install, damage and interrupt copies
of the same file.
"""

from __future__ import annotations

from pathlib import Path

PACK_TARGET = "edge"


def make_pack_project(root: Path, local_channel: Path) -> Path:
    from typer.testing import CliRunner

    from envctl.cli import app
    from support.project import pip_target, write_project

    matrix = write_project(root, {PACK_TARGET: pip_target(local_channel, models=["cnn"])})
    result = CliRunner().invoke(app, ["lock", PACK_TARGET, "--matrix", str(matrix)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root


def make_bundle(project: Path, out: Path) -> Path:
    from typer.testing import CliRunner

    from envctl.cli import app

    result = CliRunner().invoke(app, ["pack", "--target", PACK_TARGET, "--out", str(out), "--matrix",
                                      str(project / "envs" / "matrix.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".envctl-pack-")], "the pack work folder was left behind"
    return out
