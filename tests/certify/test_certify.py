"""Certification end to end: real envs from the local channel, real exports.

Each target is rendered, locked, built (py-rattler + uv, no conda) and
certified through the CLI; the smoke runner runs with the env's own python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.platform import host_platform
from support import team_models
from support.project import pip_target, write_project
from support.shared import shared_targets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

TEAM_MODELS = team_models.SOURCE

runner = CliRunner()


HANG_TIMEOUT = 10  # the model sleeps an hour: any timeout ends it; a short one keeps the suite short


@pytest.fixture(scope="module")
def project(shared_project, local_channel):
    # In the session's shared project: old-runtime and aarch64-only are built and certified once there.
    root, _ = shared_project
    targets = {
        "both-exporters": pip_target(local_channel, exporters=["torchscript", "dynamo"]),
        **shared_targets(local_channel),
        "team-models": pip_target(local_channel, models=["teammodels:broken", "teammodels:branchy", "cnn"]),
        "hanging": pip_target(local_channel, models=["teammodels:hangs"], timeout=HANG_TIMEOUT),
    }
    matrix = write_project(root, targets, {"teammodels.py": TEAM_MODELS}, name="certify.yaml")
    return root, matrix


def certify(matrix: Path, target: str, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["certify", "--target", target, "--matrix", str(matrix), *extra])
    assert "Traceback" not in result.output, result.output
    cert = json.loads((matrix.parent.parent / "certs" / f"{target}.json").read_text())
    return result.exit_code, cert


def runs(cert: dict) -> dict:
    return {(r["model"], r["exporter"]): r for r in cert["runs"]}


def test_target_passes_with_both_exporters(project):
    root, matrix = project
    code, cert = certify(matrix, "both-exporters")
    assert code == 0, cert.get("failure")
    assert cert["result"] == "passed" and cert["certified"] == "run"
    assert set(runs(cert)) == {(m, e) for m in ("cnn", "transformer", "rnn") for e in ("torchscript", "dynamo")}
    for run in cert["runs"]:
        assert run["status"] == "passed"
        assert run["opset_written"] == 18
        assert run["ir_version"] == (10 if run["exporter"] == "dynamo" else 8)
        assert 0 <= run["worst"]["max_abs"] < 1e-4  # measured, within tolerance
    # versions are measured in the env and match the lock
    assert cert["versions"]["torch"].startswith("2.13.0")
    assert cert["versions_expected"]["torch"].startswith("2.13.0")
    lock = root / "locks" / "both-exporters.conda-lock.yml"
    import hashlib

    # envctl records its own digests as sha256:<hex> (core/hashing, since the lock seam)
    assert cert["lock"]["sha256"] == "sha256:" + hashlib.sha256(lock.read_bytes()).hexdigest()
    assert cert["environment"]["python"].startswith(str(root / ".envctl" / "envs"))
    assert cert["host"]["platform"] == host_platform()


def test_opset_beyond_runtime_fails_with_class(old_runtime_certified):
    code, cert = old_runtime_certified  # `certify --target old-runtime`, run once for the session
    assert code == 1
    assert cert["result"] == "failed"
    assert cert["versions"]["onnxruntime"] == "1.16.3"
    run = runs(cert)[("cnn", "torchscript")]
    assert run["failure"]["class"] == "opset_unsupported", run["failure"]
    assert run["failure"]["stage"] == "session"
    assert "opset" in run["failure"]["remedy"]


def test_team_models_raise_and_mismatch(project):
    root, matrix = project
    code, cert = certify(matrix, "team-models")
    assert code == 1
    by = runs(cert)
    assert by[("teammodels:broken", "torchscript")]["failure"]["class"] == "model_error"
    assert by[("teammodels:branchy", "torchscript")]["failure"]["class"] == "dynamic_axis_ignored"
    assert by[("teammodels:branchy", "torchscript")]["worst"]["max_abs"] > 1e-4
    assert by[("cnn", "torchscript")]["status"] == "passed"  # one bad model does not hide the rest


def test_hanging_runner_is_a_classified_timeout(project):
    root, matrix = project
    code, cert = certify(matrix, "hanging")
    assert code == 1
    assert cert["failure"]["class"] == "timeout"
    assert cert["failure"]["remedy"]
    # The target's own timeout ended it (the model sleeps an hour, the default timeout is 900 s):
    # the runner ran at least that long, and the message names it.
    assert cert["runner"]["seconds"] >= HANG_TIMEOUT
    assert f"within {HANG_TIMEOUT} s" in cert["failure"]["message"], cert["failure"]


def test_foreign_platform_target_is_lock_only(aarch64_certified):
    lock_code, code, cert = aarch64_certified  # `lock aarch64-only` + `certify --target aarch64-only`, once
    assert lock_code == 0 and code == 0
    assert cert["result"] == "skipped" and cert["certified"] == "lock-only"
    assert "linux-aarch64" in cert["reason"] and cert["lock"]["fresh"] is True
    assert cert["ran_on_target_hardware"] is False


def test_host_target_certifies_current_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["certify", "--target", "host", "--json"])
    assert result.exit_code == 0, result.output
    cert = json.loads(result.stdout)
    assert cert["result"] == "passed"
    assert cert["environment"]["python"] == sys.executable
    assert (tmp_path / "certs" / "host.json").exists()
