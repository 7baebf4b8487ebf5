"""Rendering environment.yml: content, determinism, staleness, refusal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml
from typer.testing import CliRunner

from envctl.cli import app
from envctl.matrix.loader import load_matrix
from envctl.lock.render import is_fresh, recorded_target_hash, render_target

MATRIX = """\
defaults:
  channels: [conda-forge]
  python: "3.11"
  exporters: [torchscript]
targets:
  pip-cpu:
    platforms: [linux-64, linux-aarch64]
    channels: ["file:///some/local/channel"]
    torch: "2.13.0"
    onnx: "*"
    onnxruntime: ">=1.20"
    protobuf: "*"
    opset: 17
    exporters: [torchscript, dynamo]
    pip: [torch, onnx, onnxruntime, protobuf]
    pip_options:
      index_url: https://download.pytorch.org/whl/cpu
      extra_index_urls: [https://pypi.org/simple]
      find_links: [/srv/wheels]
  conda-gpu:
    platforms: [linux-64]
    torch: "2.13"
    cuda: "12.9"
    onnx: "1.21.*"
    onnxruntime: "1.26.*"
    protobuf: "*"
    opset: 18
"""

runner = CliRunner()


def project(tmp_path: Path, text: str = MATRIX) -> Path:
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_render_pip_target(tmp_path):
    path = project(tmp_path)
    target = load_matrix(path).targets["pip-cpu"]
    result = render_target(tmp_path, target, Path("envs/matrix.yaml"))
    text = result.path.read_text()
    doc = yaml.safe_load(text)
    assert doc["name"] == "pip-cpu"
    assert doc["channels"] == ["file:///some/local/channel"]
    assert doc["platforms"] == ["linux-64", "linux-aarch64"]
    assert doc["dependencies"][:2] == ["python=3.11", "pip"]
    pip = doc["dependencies"][-1]["pip"]
    assert "torch==2.13.0" in pip and "onnxruntime>=1.20" in pip
    assert any(p.startswith("onnxscript>=") for p in pip)  # the dynamo exporter needs it
    assert doc["pip-repositories"] == ["https://download.pytorch.org/whl/cpu", "https://pypi.org/simple"]
    assert doc["envctl"]["pip_options"]["find_links"] == ["/srv/wheels"]
    assert recorded_target_hash(result.path) == target.definition_hash()
    vp = yaml.safe_load((result.path.parent / "virtual-packages.yml").read_text())
    assert "__cuda" not in vp["subdirs"]["linux-64"]["packages"]  # no implicit CUDA


def test_render_conda_gpu_target(tmp_path):
    path = project(tmp_path)
    target = load_matrix(path).targets["conda-gpu"]
    doc = yaml.safe_load(render_target(tmp_path, target, path).path.read_text())
    deps = doc["dependencies"]
    assert "pytorch=2.13[build=cuda*]" in deps
    assert "onnxruntime=1.26[build=*cuda*]" in deps
    assert "cuda-version=12.9" in deps
    assert "pip" not in deps  # nothing from pip
    vp = yaml.safe_load((tmp_path / "envs" / "conda-gpu" / "virtual-packages.yml").read_text())
    assert vp["subdirs"]["linux-64"]["packages"]["__cuda"] == "12.9"


def test_render_is_deterministic_byte_for_byte(tmp_path):
    path = project(tmp_path)
    first = runner.invoke(app, ["render", "--all", "--matrix", str(path)])
    assert first.exit_code == 0, first.output
    files = sorted((tmp_path / "envs").rglob("*.yml"))
    snapshot = {p: p.read_bytes() for p in files}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    second = runner.invoke(app, ["render", "--all", "--matrix", str(path)])
    assert second.exit_code == 0 and "unchanged" in second.stdout
    assert {p: p.read_bytes() for p in files} == snapshot
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes  # not even rewritten
    # A fresh project rendering the same matrix gets identical bytes.
    other = tmp_path / "other"
    other_path = project(other)
    assert runner.invoke(app, ["render", "--all", "--matrix", str(other_path)]).exit_code == 0
    for p, data in snapshot.items():
        twin = other / p.relative_to(tmp_path)
        assert twin.read_bytes().replace(str(other).encode(), b"") == data.replace(str(tmp_path).encode(), b"")


def test_changed_target_makes_render_stale(tmp_path):
    path = project(tmp_path)
    target = load_matrix(path).targets["pip-cpu"]
    render_target(tmp_path, target, path)
    assert is_fresh(tmp_path, target)
    path.write_text(path.read_text().replace("opset: 17", "opset: 18"))
    assert not is_fresh(tmp_path, load_matrix(path).targets["pip-cpu"])


def test_the_rules_run_once_per_target_per_render(tmp_path):
    """`envctl render` asks the rules for blocking findings (before and while rendering) and for the
    implied packages: one judgement per target serves them all."""
    from envctl.rules.api import _judged

    path = project(tmp_path)
    _judged.cache_clear()
    result = runner.invoke(app, ["render", "--all", "--matrix", str(path)])
    assert result.exit_code == 0, result.output
    info = _judged.cache_info()
    assert info.misses == 2 and info.hits >= 2, info  # two targets, each judged once and asked again
