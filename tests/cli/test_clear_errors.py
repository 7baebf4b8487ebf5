"""Inputs that used to end in a traceback, and writes that could land outside the project (issue 12 items 6, 7, 9).

Each case runs the real command (or the real function where the command
would first need a built env) and expects a clear EnvctlError or a clean
exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from envctl.core.errors import EnvctlError

SRC = str(Path(__file__).resolve().parents[2] / "src")
VALID = {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11", "torch": "2.4", "onnx": "*",
         "onnxruntime": "1.19", "protobuf": "*", "opset": 17, "exporters": ["torchscript"]}


def envctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")} | {"PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-m", "envctl", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def project(tmp_path: Path, certificate=None) -> Path:
    root = tmp_path / "proj"
    (root / "envs").mkdir(parents=True)
    (root / "envs" / "matrix.yaml").write_text(yaml.safe_dump({"version": 1, "targets": {"t": VALID}}))
    if certificate is not None:
        (root / "certs").mkdir()
        (root / "certs" / "t.json").write_text(json.dumps(certificate))
    return root / "envs" / "matrix.yaml"


GOOD = {"certificate_version": 1, "target": "t", "result": "passed", "certified": "run", "created_at": "2026-01-01",
        "host": {"hostname": "h", "platform": "linux-64"}, "lock": {"path": "locks/t.conda-lock.yml", "sha256": "ab" * 32},
        "runs": [{"model": "cnn", "exporter": "torchscript", "status": "passed",
                  "stages": [{"name": "export", "status": "passed", "message": "", "seconds": 1.0}]}],
        "spec": {"opset": 17, "exporters": ["torchscript"]}}


@pytest.mark.parametrize("broken", [
    {"lock": []}, {"lock": "x"}, {"lock": {"sha256": 5}}, {"host": ["x"]}, {"failure": "boom"}, {"runs": {"a": 1}},
    {"runs": [{"model": "cnn", "exporter": "torchscript", "stages": "x"}]},
    {"runs": [{"model": "cnn", "exporter": "torchscript", "stages": [1, 2]}]},
    {"runs": [{"model": "cnn", "exporter": "torchscript", "stages": [{"name": ["x"]}]}]},
    {"runs": ["x"]}, {"spec": {"exporters": "torchscript"}}, {"runner": {"stages": "x"}},
    {"host": {"nvidia": {"gpus": [{"name": 3}]}}}, {"result": 7},
])
def test_certificates_of_the_wrong_shape_are_shown_as_broken(tmp_path, broken):
    matrix = project(tmp_path, GOOD | broken)
    proc = envctl("status", "--matrix", str(matrix))
    assert proc.returncode in (0, 1), proc.stderr
    proc = envctl("status", "--matrix", str(matrix), "--json")
    assert "broken certificate" in proc.stdout or "not an envctl certificate" in proc.stdout, proc.stdout
    out = tmp_path / "report.html"
    proc = envctl("report", "--matrix", str(matrix), "--html", str(out))
    assert out.exists(), proc.stderr


def test_a_good_certificate_still_shows(tmp_path):
    matrix = project(tmp_path, GOOD)
    proc = envctl("status", "--matrix", str(matrix), "--json")
    assert "broken certificate" not in proc.stdout and "passed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("opset", [0, 99, 6, -1])
def test_export_refuses_unsupported_opsets_up_front(tmp_path, opset):
    from envctl.everyday.export import export_model

    with pytest.raises(EnvctlError, match="opsets 7 to"):
        export_model(tmp_path / "m.yaml", "cnn", tmp_path / "out.onnx", prefix=tmp_path / "nowhere", opset=opset)


def test_export_report_with_non_finite_numbers_prints(capsys):
    from envctl.cli.printing_everyday import print_export

    report = {"model": "m:f", "exporter": "dynamo", "opset_requested": 18, "env": "e", "versions": {}, "stages": [],
              "sizes": [{"sizes": {"batch": 2}, "passed": False, "max_abs": "nan", "max_rel": float("nan"), "error": None},
                        {"sizes": None, "passed": False, "max_abs": float("inf"), "max_rel": None, "error": ["x"]}],
              "warnings": [], "seconds": 1.0, "status": "failed", "failure": {"class": "mismatch", "stage": "compare"},
              "output_tail": ""}
    print_export(report)
    assert "nan" in capsys.readouterr().out


def test_doctor_probe_survives_non_utf8_output(tmp_path):
    from envctl.everyday.doctor import probe

    python = tmp_path / "python"
    python.write_bytes(b"#!/bin/sh\nprintf '\\377\\376 not utf-8\\n'; printf '\\377 err' >&2; exit 3\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    found = probe(python)
    assert "error" in found and "exited 3" in found["error"]


@pytest.mark.parametrize("args", [("run", "--prefix", "/", "--", "true"), ("doctor", "--prefix", "/")])
def test_root_as_a_prefix_is_a_clear_error(tmp_path, args):
    matrix = project(tmp_path)
    proc = envctl(*args, "--matrix", str(matrix))
    assert proc.returncode in (1, 2), proc.stderr


def test_ci_github_does_not_write_through_a_symlinked_github_folder(tmp_path):
    matrix = project(tmp_path)
    root = matrix.parent.parent
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / ".github").symlink_to(outside)
    proc = envctl("ci", "github", "--matrix", str(matrix), "--install", "./tools/envctl")
    assert proc.returncode == 2 and "outside" in proc.stderr, proc.stderr
    assert list(outside.rglob("*")) == []


@pytest.mark.parametrize("option", [("--install", "envctl\n  evil: true"), ("--branch", "main\n  - x"), ("--install", "x\r")])
def test_ci_github_refuses_newlines_that_would_become_yaml(tmp_path, option):
    matrix = project(tmp_path)
    proc = envctl("ci", "github", "--matrix", str(matrix), "--out", "-", *option)
    # refused either for its control characters or because it is not a branch name / install source at all
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert any(why in proc.stderr for why in ("control characters", "a branch name here is", "install")), proc.stderr
