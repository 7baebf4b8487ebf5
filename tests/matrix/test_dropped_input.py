"""Nothing a user wrote is dropped without a word: each such value is an error (or, where harmless, a warning).

`pip:` naming a package the target does not manage, options that a given
combination would ignore, keys an environment.yml carries that the lock
stage would leave out, a `pip:` name with no version of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app

runner = CliRunner()

BASE = {
    "platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11", "torch": "2.13.0", "onnx": "*",
    "onnxruntime": "*", "protobuf": "*", "exporters": ["torchscript"], "opset": 17,
}


def project(tmp_path: Path, target: dict | None = None, defaults: dict | None = None) -> Path:
    doc = {"version": 1, **({"defaults": defaults} if defaults else {}), "targets": {"t": {**BASE, **(target or {})}}}
    (tmp_path / "envs").mkdir(exist_ok=True)
    path = tmp_path / "envs" / "matrix.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("names", [["torch", "timm"], ["torch", "onnxruntme"], ["torch>=2.1"], ["python"],
                                   ["onnxruntime-gpu"], ["numpy", "transformers==4.0"]])
def test_pip_naming_an_unmanaged_package_is_an_error(tmp_path, names):
    matrix = project(tmp_path, {"pip": names})
    result = invoke("matrix", "check", "--matrix", str(matrix))
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert f"{matrix}:" in out and "targets.t.pip" in out, out
    if names != ["python"]:
        assert "pip_extra" in out


def test_pip_in_defaults_is_checked_too_and_through_the_real_command(tmp_path):
    project(tmp_path, defaults={"pip": ["torch", "timm"]})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-m", "envctl", "render", "--all"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 2 and "timm" in done.stderr and "defaults.pip" in done.stderr, done.stderr
    assert not (tmp_path / "envs" / "t").exists()


def test_a_pip_name_without_a_version_is_taken_unpinned_not_dropped(tmp_path):
    matrix = project(tmp_path, {"pip": ["torch", "onnx", "onnxruntime", "protobuf", "numpy", "onnxscript"]})
    assert invoke("render", "t", "--matrix", str(matrix)).exit_code == 0
    rendered = yaml.safe_load((tmp_path / "envs" / "t" / "environment.yml").read_text())
    pip = next(d["pip"] for d in rendered["dependencies"] if isinstance(d, dict))
    names = {p.split("=")[0].split(">")[0].split("<")[0] for p in pip}
    assert {"numpy", "onnxscript"} <= names, pip


def test_pip_options_with_nothing_from_pip_is_a_warning(tmp_path):
    matrix = project(tmp_path, defaults={"pip_options": {"index_url": "https://example.org/simple"}})
    result = invoke("matrix", "check", "--matrix", str(matrix), "--json")
    assert "ignored-setting" in result.output and "pip_options" in result.output


@pytest.mark.parametrize("args", [
    ["create", "--target", "t", "--no-certify", "--timeout", "30"],
    ["create", "--target", "t", "--locked", "--channel", "file:///x"],
    ["create", "--target", "t", "--frozen", "--channel", "file:///x"],
    ["certify", "--import", "cert.json", "--timeout", "30"],
    ["certify", "--import", "cert.json", "--json"],
    ["certify", "--import", "cert.json", "--out", "x.json"],
    ["certify", "--target", "t", "--jobs", "4"],
])
def test_an_option_the_combination_would_ignore_is_an_error(tmp_path, args):
    matrix = project(tmp_path)
    result = invoke(*args, "--matrix", str(matrix))
    assert result.exit_code == 2, result.output
    assert "key '--" in result.output, result.output
    assert not (tmp_path / "locks").exists() and not (tmp_path / ".envctl").exists()  # refused before any work


@pytest.mark.parametrize(("extra", "key"), [
    ("variables:\n  OMP_NUM_THREADS: '1'\n", "variables"),
    ("prefix: /opt/env\n", "prefix"),
    ("envctl:\n  pip_option: {}\n", "envctl.pip_option"),
])
def test_an_environment_yml_key_the_lock_would_leave_out_is_an_error(tmp_path, extra, key):
    matrix = project(tmp_path)
    assert invoke("render", "t", "--matrix", str(matrix)).exit_code == 0
    env_file = tmp_path / "envs" / "t" / "environment.yml"
    text = env_file.read_text()
    if key.startswith("envctl."):
        text = text.replace("dependencies:", extra + "dependencies:", 1)
    else:
        text += extra
    env_file.write_text(text)
    result = invoke("lock", "t", "--matrix", str(matrix))
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "environment.yml:" in out and f"key '{key}'" in out, out
