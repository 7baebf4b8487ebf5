"""Everyday use end to end: one-command create, run, doctor, export, env export.

Real envs from the local conda channel and pip's wheels, real exports; the
commands run as a newcomer runs them (`python -m envctl ...` in a
subprocess) where exit codes and inherited output matter, and through
typer's runner where the test must watch what envctl calls.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.facts import host_facts
from envctl.host.platform import host_platform
from support.local_channel import PY_VERSION
from support.project import pip_target, write_project

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

USER_MODELS = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))


def good():
    return Small().eval(), (torch.zeros(2, 4),)


class FrozenBatch(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])  # a Python int: the trace records the export-time batch
        return x.reshape(n, -1).sum(1, keepdim=True) * torch.ones(n, 2)


def frozen():
    return {"model": FrozenBatch(), "inputs": (torch.zeros(2, 3, 4),), "input_names": ["x"], "output_names": ["y"]}


def raises():
    raise RuntimeError("weights /nowhere/ckpt.pt not found")
'''

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_channel):
    root = tmp_path_factory.mktemp("everyday")
    matrix = write_project(root, {
        "t": pip_target(local_channel, models=["cnn"]),
        # Refused before any download: neither runs on this linux-64 CPU machine.
        "arm": pip_target(local_channel, platforms=["linux-aarch64"], torch="2.9.1"),
        "gpu": pip_target(local_channel, cuda="12.4"),
    })
    return root, matrix


def envctl(*args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "envctl", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    # envctl itself never crashes; a user model's traceback may be quoted in a report
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture(scope="module")
def created(project):
    """`envctl create --target t` on a project with nothing but its matrix."""
    root, matrix = project
    assert not (root / "envs" / "t").exists() and not (root / "locks").exists()
    started = time.monotonic()
    proc = envctl("create", "--target", "t", "--matrix", str(matrix))
    return proc, time.monotonic() - started


def test_create_from_nothing_renders_locks_builds_certifies(project, created):
    root, matrix = project
    proc, seconds = created
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for event in ("render", "lock", "conda", "pip", "certify"):  # progress, step by step, on stderr
        assert f" {event} " in proc.stderr, proc.stderr
    prefix = root / ".envctl" / "envs" / "t"
    assert (root / "envs" / "t" / "environment.yml").exists()
    assert (root / "locks" / "t.conda-lock.yml").exists()
    assert (prefix / "bin" / "python").exists()
    cert = json.loads((root / "certs" / "t.json").read_text())
    assert cert["result"] == "passed" and [r["model"] for r in cert["runs"]] == ["cnn"]
    # how to use it
    assert "certified" in proc.stdout
    assert "envctl run --target t -- python" in proc.stdout
    assert f"conda activate {prefix}" in proc.stdout
    print(f"one-command create from nothing: {seconds:.1f}s")


def test_create_again_is_a_noop_already_certified(project, created):
    root, matrix = project
    cert = root / "certs" / "t.json"
    before = cert.stat().st_mtime_ns
    proc = envctl("create", "--target", "t", "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stderr
    assert "already certified" in proc.stdout and "already matches its lock" in proc.stdout
    assert cert.stat().st_mtime_ns == before  # not re-certified (how fast: scripts/bench)


def test_the_already_certified_noop_imports_no_pydantic_conda_lock_or_rattler(project, created, tmp_path):
    from support.cliprobe import HEAVY_HOST, loaded, probe

    root, matrix = project
    proc, report = probe(["create", "--target", "t", "--matrix", str(matrix)], root, tmp_path / "report.json")
    assert report["exit_code"] == 0 and "already certified" in proc.stdout, proc.stdout + proc.stderr
    assert loaded(report, HEAVY_HOST) == [] and report["processes"] == []


def test_run_uses_the_env_and_passes_exit_codes(project, created):
    root, matrix = project
    prefix = root / ".envctl" / "envs" / "t"
    proc = envctl("run", "--target", "t", "--matrix", str(matrix), "--",
                  "python", "-c", "import os, sys, torch; print(torch.__version__, sys.prefix, os.environ['CONDA_PREFIX'])")
    assert proc.returncode == 0, proc.stderr
    version, sys_prefix, conda_prefix = proc.stdout.split()
    assert version.startswith("2.13.0")
    assert sys_prefix == conda_prefix == str(prefix)
    proc = envctl("run", "--target", "t", "--matrix", str(matrix), "--", "python", "-c", "import sys; sys.exit(7)")
    assert proc.returncode == 7
    proc = envctl("run", "--target", "t", "--matrix", str(matrix), "--", "no-such-command-here")
    assert proc.returncode == 127 and "not found" in proc.stderr


def test_run_sources_activation_scripts(project, created):
    root, matrix = project
    scripts = root / ".envctl" / "envs" / "t" / "etc" / "conda" / "activate.d"
    scripts.mkdir(parents=True)
    try:
        (scripts / "envctl-test.sh").write_text('export ENVCTL_TEST_VAR="set by $CONDA_PREFIX"\n')
        proc = envctl("run", "--target", "t", "--matrix", str(matrix), "--", "sh", "-c", 'echo "$ENVCTL_TEST_VAR"; exit 3')
        assert proc.returncode == 3
        assert proc.stdout.strip() == f"set by {root / '.envctl' / 'envs' / 't'}"
    finally:
        import shutil

        shutil.rmtree(scripts.parent.parent)


def test_run_activation_exit_cannot_skip_the_command(project, created):
    """An `exit 0` in activate.d once ended the wrapper shell: the command never ran and run returned 0."""
    root, matrix = project
    scripts = root / ".envctl" / "envs" / "t" / "etc" / "conda" / "activate.d"
    scripts.mkdir(parents=True)
    try:
        (scripts / "early-exit.sh").write_text("export ENVCTL_TEST_VAR=set\nexit 0\n")
        proc = envctl("run", "--target", "t", "--matrix", str(matrix), "--", "python", "-c",
                      "import os, sys; print(os.environ['ENVCTL_TEST_VAR']); sys.exit(4)")
        assert proc.returncode == 4 and proc.stdout.strip() == "set", proc.stderr
        assert "early-exit.sh" in proc.stderr
    finally:
        import shutil

        shutil.rmtree(scripts.parent.parent)


def test_certify_shows_each_smoke_stage_with_its_time(project, created):
    root, matrix = project
    proc = envctl("certify", "--target", "t", "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any("cnn / torchscript: export started" in line for line in lines), proc.stderr
    finished = [line for line in lines if "cnn / torchscript: inference (sizes" in line and " passed in " in line]
    assert finished and re.search(r"passed in \d+\.\ds", finished[0])
    quiet = envctl("-q", "certify", "--target", "t", "--matrix", str(matrix))
    assert quiet.returncode == 0 and "started" not in quiet.stderr
    assert quiet.stdout.strip() == f"t: passed -> {root / 'certs' / 't.json'}"


def test_quiet_create_prints_one_line(project, created):
    root, matrix = project
    proc = envctl("-q", "create", "--target", "t", "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().count("\n") == 0 and proc.stdout.startswith("t: ")
    assert proc.stderr == ""


def test_run_without_env_says_how_to_get_one(project):
    root, matrix = project
    proc = envctl("run", "--target", "arm", "--matrix", str(matrix), "--", "python")
    assert proc.returncode == 2
    assert "no env at" in proc.stderr and "envctl lock arm" in proc.stderr


def test_doctor_on_the_created_env(project, created):
    root, matrix = project
    result = invoke("doctor", "--target", "t", "--matrix", str(matrix), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["packages"]["torch"]["version"].startswith("2.13.0")
    assert report["packages"]["torch"]["build"] == "cpu"
    assert "CPUExecutionProvider" in report["packages"]["onnxruntime"]["providers"]
    assert report["host"]["platform"] == "linux-64" and report["host"]["libc"].startswith("glibc")
    assert report["drift"]["checked"] and report["drift"]["packages"] == []
    assert not [f for f in report["findings"] if f["severity"] == "error"]
    runnable = {t["target"]: t["runnable"] for t in report["targets"]}
    assert runnable["t"] is True and runnable["arm"] is False
    assert report["breaks_export"] is False


def test_doctor_reports_drift_after_create(project, created, tmp_path):
    root, matrix = project
    prefix = tmp_path / "drifting"
    proc = envctl("create", "--target", "t", "--prefix", str(prefix), "--no-certify", "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stderr
    from envctl.core.process import uv_binary

    def uv_install(*reqs: str) -> None:
        done = subprocess.run([uv_binary(), "pip", "install", "--python", str(prefix / "bin" / "python"), *reqs],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr

    uv_install("six")  # an extra package: reported, but exports are unaffected
    result = invoke("doctor", "--prefix", str(prefix), "--matrix", str(matrix), "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert [(p["kind"], p["name"], p["managed"]) for p in report["drift"]["packages"]] == [("added", "six", False)]
    assert report["env"]["target"] == "t"  # judged as the target it was made for

    uv_install("protobuf<7")  # a managed package changed under the lock
    result = invoke("doctor", "--prefix", str(prefix), "--matrix", str(matrix), "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1, result.output
    changed = [p for p in report["drift"]["packages"] if p["kind"] == "changed"]
    assert [(p["name"], p["managed"]) for p in changed] == [("protobuf", True)]
    assert any("protobuf" in p and "--force" in p for p in report["problems"])
    text = invoke("doctor", "--prefix", str(prefix), "--matrix", str(matrix))
    assert "changed pip protobuf" in text.stdout and "breaks an export" in text.stdout


def _user_module(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "mymodels.py").write_text(USER_MODELS)
    return folder


def test_export_user_model_in_the_target_env(project, created, tmp_path):
    root, matrix = project
    folder = _user_module(tmp_path)
    out = tmp_path / "dist" / "small.onnx"
    proc = envctl("export", "mymodels:good", "--out", str(out), "--target", "t", "--matrix", str(matrix),
                  "--path", str(folder), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "passed" and report["exporter"] == "torchscript"
    assert report["opset_written"] == 18 and report["ir_version"] == 8
    assert [c["sizes"] for c in report["sizes"]][:3] == [{"batch": 1}, {"batch": 2}, {"batch": 5}]
    assert all(c["passed"] for c in report["sizes"])
    assert report["files"] == [{"path": str(out), "bytes": out.stat().st_size}]
    import onnx

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_frozen_batch_fails_with_its_class(tmp_path, monkeypatch):
    folder = _user_module(tmp_path)
    monkeypatch.chdir(folder)  # MODULE is found in the current folder; no target: the current interpreter
    out = tmp_path / "frozen.onnx"
    result = invoke("export", "mymodels:frozen", "--out", str(out), "--exporter", "torchscript")
    assert result.exit_code == 1, result.output
    assert "dynamic_axis_ignored" in result.stdout and "remedy" in result.stdout
    assert "nothing was written" in result.stdout and not out.exists()
    result = invoke("export", "mymodels:raises", "--out", str(out), "--exporter", "torchscript", "--json")
    assert result.exit_code == 1
    failure = json.loads(result.stdout)["failure"]
    assert failure["class"] == "model_error" and "ckpt.pt" in failure["message"]
    result = invoke("export", "mymodels:raises", "--out", str(out), "--exporter", "torchscript")
    assert "model_error" in result.stdout and "mymodels.py" in result.stdout  # where it raised, for the user


def test_env_export_both_kinds(project, created, tmp_path):
    root, matrix = project
    result = invoke("env", "export", "--target", "t", "--matrix", str(matrix))
    assert result.exit_code == 0, result.output
    env = yaml.safe_load(result.stdout)
    assert env["name"] == "t" and env["channels"][0].startswith("file://")
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith(f"python={PY_VERSION}=") and d.count("=") == 2 for d in conda)  # name=version=build
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("--find-links ") for line in pip)
    assert any(line.replace(" ", "").startswith("torch==2.13.0") and "--hash=sha256:" in line for line in pip)

    out = tmp_path / "t.explicit.txt"
    result = invoke("env", "export", "--target", "t", "--kind", "explicit", "--out", str(out), "--matrix", str(matrix))
    assert result.exit_code == 0, result.output
    lines = [l for l in out.read_text().splitlines() if l and not l.startswith("#")]
    assert lines[0] == "@EXPLICIT"
    assert lines[1:] and all("#" in l and len(l.rsplit("#", 1)[1]) in (32, 64) for l in lines[1:])


def test_create_refuses_foreign_platform_before_downloading(project, monkeypatch):
    root, matrix = project

    def forbidden(*args, **kwargs):
        raise AssertionError("rendered or locked a target this host cannot run")

    monkeypatch.setattr("envctl.lock.solve.lock_target", forbidden)
    monkeypatch.setattr("envctl.lock.render.render_target", forbidden)
    result = invoke("create", "--target", "arm", "--matrix", str(matrix))
    assert result.exit_code == 1
    assert "linux-aarch64" in result.output and "envctl lock arm" in result.output
    assert not (root / "envs" / "arm").exists() and not (root / "locks" / "arm.conda-lock.yml").exists()
    assert not (root / ".envctl" / "envs" / "arm").exists()


@pytest.mark.skipif(host_facts()["has_nvidia_gpu"], reason="this host has an NVIDIA GPU")
def test_create_refuses_cuda_target_without_gpu(project, monkeypatch):
    root, matrix = project
    monkeypatch.setattr("envctl.lock.solve.lock_target", lambda *a, **k: pytest.fail("locked"))
    result = invoke("create", "--target", "gpu", "--matrix", str(matrix))
    assert result.exit_code == 1
    assert "NVIDIA driver for CUDA 12.4" in result.output and "envctl lock gpu" in result.output
