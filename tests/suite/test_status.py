"""`envctl status`: each stage's freshness and the one command to run next.

A real project walks the pipeline through the CLI (lock, then certify, which
builds the env, for a one-model target from the local channel), and status is
asked after every step; then the lock changes under the certificate and status must call the
certificate stale and name the next command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.platform import host_platform
from support.project import pip_target, write_project
from support import broken_locks

runner = CliRunner()
linux64 = pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only")


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def status(matrix: Path) -> dict[str, dict]:
    code, out = invoke("status", "--json", "--matrix", str(matrix))
    assert code == 0, out
    return {t["target"]: t for t in json.loads(out)["targets"]}


def states(entry: dict) -> dict[str, str]:
    return {name: stage["state"] for name, stage in entry["stages"].items()}


@pytest.mark.slow
@linux64
def test_walk_the_pipeline_then_the_certificate_goes_stale(tmp_path, local_channel):
    matrix = write_project(tmp_path, {
        "small": pip_target(local_channel, models=["cnn"]),
        # Another platform: its env stage is n/a here, and it never blocks the others.
        "arm": pip_target(local_channel, platforms=["linux-aarch64"], models=["cnn"]),
    })

    s = status(matrix)
    assert s["small"]["next"] == "envctl lock small"
    assert set(states(s["small"]).values()) == {"missing"}
    assert s["arm"]["stages"]["env"]["state"] == "n/a" and s["arm"]["runs_here"] is False
    assert "linux-aarch64" in s["arm"]["not_here_reason"]
    assert s["arm"]["next"] == "envctl lock arm"

    assert invoke("lock", "small", "--matrix", str(matrix))[0] == 0
    s = status(matrix)["small"]
    assert states(s) == {"rendered": "ok", "render_fresh": "ok", "locked": "ok", "lock_fresh": "ok",
                       "env": "missing", "certified": "missing", "cert_fresh": "missing"}
    assert s["next"] == "envctl create --target small"

    code, out = invoke("certify", "--target", "small", "--matrix", str(matrix))
    assert code == 0, out
    s = status(matrix)["small"]
    assert set(states(s).values()) == {"ok"}
    assert s["next"] is None and s["summary"] == "certified"
    cert = json.loads((tmp_path / "certs" / "small.json").read_text())
    assert s["certificate"]["created_at"] == cert["created_at"]
    assert s["certificate"]["hostname"] == cert["host"]["hostname"]
    assert s["certificate"]["lock_sha256"] == s["lock_sha256"]

    # An env that matches its lock but has no certificate: certify is next.
    cert_file = tmp_path / "certs" / "small.json"
    saved = cert_file.read_bytes()
    cert_file.unlink()
    s = status(matrix)["small"]
    assert s["stages"]["env"]["state"] == "ok" and s["stages"]["certified"]["state"] == "missing"
    assert s["next"] == "envctl certify --target small"
    cert_file.write_bytes(saved)

    # The matrix changes: the rendered file, and with it the lock, are stale;
    # the certificate still matches the lock it was made from.
    doc = yaml.safe_load(matrix.read_text())
    doc["targets"]["small"]["atol"] = 2e-4
    matrix.write_text(yaml.safe_dump(doc, sort_keys=False))
    s = status(matrix)["small"]
    assert s["stages"]["render_fresh"]["state"] == "stale"
    assert s["stages"]["cert_fresh"]["state"] == "ok"
    assert s["next"] == "envctl lock small" and s["summary"] == "stale"

    # Relocking gives a new lock: env and certificate are now stale against it.
    old_sha = s["lock_sha256"]
    assert invoke("lock", "small", "--matrix", str(matrix))[0] == 0
    s = status(matrix)["small"]
    assert s["lock_sha256"] != old_sha
    assert s["stages"]["lock_fresh"]["state"] == "ok"
    assert s["stages"]["env"]["state"] == "stale"
    assert s["stages"]["cert_fresh"]["state"] == "stale"
    assert old_sha[:12] in s["stages"]["cert_fresh"]["detail"]
    assert s["stages"]["certified"]["state"] == "ok"  # it passed, for the old lock
    assert s["next"] == "envctl create --target small"

    # The table says the same for people.
    code, out = invoke("status", "--matrix", str(matrix))
    assert code == 0
    assert "stale" in out and "envctl create --target small" in out and "envctl lock arm" in out

    # `certify` rebuilds the env from the new lock and certifies it: up to date again.
    assert invoke("certify", "--target", "small", "--matrix", str(matrix))[0] == 0
    s = status(matrix)["small"]
    assert s["next"] is None and s["certificate"]["lock_sha256"] == s["lock_sha256"] != old_sha


def test_unknown_target_and_missing_matrix_are_clean_errors(tmp_path):
    matrix = write_project(tmp_path, {"only": pip_target(tmp_path, models=["cnn"])})
    code, out = invoke("status", "nope", "--matrix", str(matrix))
    assert code == 2 and "unknown target 'nope'" in out
    code, out = invoke("status", "--matrix", str(tmp_path / "absent.yaml"))
    assert code == 2


def test_corrupt_certificate_and_lock_are_reported_not_raised(tmp_path):
    matrix = write_project(tmp_path, {"only": pip_target(tmp_path, models=["cnn"])})
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "only.json").write_text("{not json")
    (tmp_path / "locks").mkdir()
    broken_locks.write(tmp_path / "locks" / "only.conda-lock.yml", ": [ unclosed")
    s = status(matrix)["only"]
    assert s["stages"]["certified"]["state"] == "missing"
    assert "unreadable certificate" in s["stages"]["certified"]["detail"]
    assert s["stages"]["locked"]["state"] == "stale"
    assert s["next"] == "envctl lock only"


def test_status_imports_no_solver(tmp_path):
    # How long it takes is measured by scripts/bench, not asserted here.
    target = pip_target(tmp_path, models=["cnn"])  # (reading pip's configuration once is the slow part here)
    matrix = write_project(tmp_path, {f"t{i}": target for i in range(20)})
    code = (
        "import sys\n"
        "from envctl.suite import status\n"
        f"rows = status.project_status({str(matrix)!r})\n"
        "print(len(rows), sorted(m for m in sys.modules if m.split('.')[0] in ('conda_lock', 'rattler')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.split(" ", 1)
    count, heavy = int(out[0]), out[1].strip()
    assert count == 20 and heavy == "[]"
