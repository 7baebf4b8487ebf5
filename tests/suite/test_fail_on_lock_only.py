"""`envctl certify --fail-on-lock-only` end to end: a target this host can only lock fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.platform import host_platform
from support.project import pip_target, write_project

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]
runner = CliRunner()
XSD = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[1] / "data" / "jenkins-junit-10.xsd")))


def test_a_lock_only_target_fails_only_with_the_flag(tmp_path, local_channel):
    # Locked, never run here: PyPI's torch 2.9 for aarch64 is a CPU build; locking reads only its metadata.
    matrix = write_project(tmp_path, {"arm.v8": pip_target(local_channel, platforms=["linux-aarch64"], torch="2.9.1")})
    assert runner.invoke(app, ["lock", "arm.v8", "--matrix", str(matrix)]).exit_code == 0
    junit = tmp_path / "reports" / "arm.xml"
    base = ["certify", "arm.v8", "--locked", "--junit", str(junit), "--matrix", str(matrix)]
    plain = runner.invoke(app, base, env={"GITHUB_STEP_SUMMARY": None})
    assert plain.exit_code == 0, plain.output
    strict = runner.invoke(app, [*base, "--fail-on-lock-only"], env={"GITHUB_STEP_SUMMARY": None})
    assert strict.exit_code == 1 and "--fail-on-lock-only" in " ".join(strict.output.split())
    XSD.assertValid(etree.parse(str(junit)))
    ids = {(c.get("classname"), c.get("name")) for c in etree.parse(str(junit)).iter("testcase")}
    assert ids == {("arm_v8.linux-aarch64", f"{m}[torchscript]") for m in ("cnn", "transformer", "rnn")}
