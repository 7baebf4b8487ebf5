"""`envctl report --drift DIR`: the CI fan-in's cross-target check over gathered certificates.

The certificates carry real runs: the smoke runner exports and runs the built-in cnn in this
interpreter once; each gathered certificate is that run as one CI job would have written it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.cli import app
from envctl.smoke import RUNNER_PATH

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxruntime")),
    reason="needs torch, onnx and onnxruntime in this interpreter")
runner = CliRunner()
SPEC = {"opset": 17, "exporters": ["torchscript"], "models": ["cnn"], "tolerances": {"atol": 1e-4, "rtol": 1e-3}}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("drift-smoke")
    spec = {"spec_version": 1, "target": "drift", "workdir": str(tmp / "work"), "providers": ["CPUExecutionProvider"],
            "required_provider": "CPUExecutionProvider", "device": "cpu", "sizes": [1, 2], "seed": 0, "simplify": None,
            "model_paths": [], **SPEC}
    (tmp / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-I", str(RUNNER_PATH), str(tmp / "spec.json"), str(tmp / "result.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp / "result.json").read_text())
    assert result["runs"][0]["status"] == "passed" and result["runs"][0]["fingerprint"]["outputs"]
    return result


def certificate(smoke: dict, target: str, platform: str, nudge: float = 0.0) -> dict:
    runs = copy.deepcopy(smoke["runs"])
    if nudge:
        runs[0]["fingerprint"]["outputs"][0]["samples"][3] += nudge
    return {"target": target, "result": "passed", "certified": "run", "host": {"platform": platform},
            "created_at": "2026-12-02T10:00:00+00:00", "runs": runs, "versions": smoke.get("versions"),
            "spec": dict(SPEC), "seconds": 3.0}


def gather(root: Path, certs: list[dict]) -> Path:
    """Laid out as actions/download-artifact leaves them: one folder per certify job."""
    for cert in certs:
        folder = root / f"certify-{cert['target']}-{cert['host']['platform']}" / "certs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{cert['target']}.json").write_text(json.dumps(cert))
    return root


def drift_cli(*args: str):
    return runner.invoke(app, ["report", *args], env={"GITHUB_STEP_SUMMARY": None})


@pytest.mark.slow
def test_gathered_certificates_are_compared_per_target_and_platform(smoke_run, tmp_path):
    gathered = gather(tmp_path / "gathered", [certificate(smoke_run, "a", "linux-64"),
                                              certificate(smoke_run, "multi", "linux-64"),
                                              certificate(smoke_run, "multi", "osx-arm64", nudge=5e-6)])
    summary = tmp_path / "step-summary.md"
    result = runner.invoke(app, ["report", "--drift", str(gathered), "--markdown", str(tmp_path / "drift.md"), "--json"],
                           env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(t["target"] for t in data["targets"]) == ["a", "multi@linux-64", "multi@osx-arm64"]
    (cnn,) = data["drift"]
    assert cnn["pairs"] == 3 and cnn["above"] == []
    assert cnn["worst"]["max_abs"] == pytest.approx(5e-6, rel=1e-3)  # the nudge, measured back
    assert "Drift across targets" in (tmp_path / "drift.md").read_text() and summary.read_text()


@pytest.mark.slow
def test_drift_beyond_tolerance_fails_only_when_asked(smoke_run, tmp_path):
    gathered = gather(tmp_path / "g", [certificate(smoke_run, "a", "linux-64"),
                                       certificate(smoke_run, "b", "win-64", nudge=0.05)])
    assert drift_cli("--drift", str(gathered)).exit_code == 0  # reported, not fatal
    strict = drift_cli("--drift", str(gathered), "--fail-on-drift", "--json")
    assert strict.exit_code == 1 and json.loads(strict.stdout)["drifted"] == ["cnn"]


@pytest.mark.slow
def test_a_failed_target_does_not_fail_the_drift_check(smoke_run, tmp_path):
    failed = certificate(smoke_run, "b", "linux-64") | {"result": "failed"}
    gathered = gather(tmp_path / "g", [certificate(smoke_run, "a", "linux-64"), failed])
    result = drift_cli("--drift", str(gathered), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["failed"] == 1


def test_bad_input_is_a_clean_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = drift_cli("--drift", str(empty))
    assert result.exit_code == 2 and "no certificates" in result.output
    (empty / "junk.json").write_text("[1, 2]")
    result = drift_cli("--drift", str(empty))
    assert result.exit_code == 2 and "junk.json" in result.output and "Traceback" not in result.output
    result = drift_cli("--drift", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "nowhere" in result.output
    assert drift_cli("--markdown", str(tmp_path / "x.md")).exit_code == 2  # --markdown needs --drift
    assert drift_cli().exit_code == 2
