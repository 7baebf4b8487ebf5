"""The default env prefix (.envctl/envs/<target>) is the project's own folder, on every path that builds there.

`envctl create --target T` and `envctl certify --target T` build through the
stage chain; a `.envctl` (or `.envctl/envs`) committed as a symlink to a
folder outside the project must be refused before anything is written there,
and a default create must leave `.envctl/.gitignore` so the env never shows
up in `git status`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.project import torch_matrix

from envctl.core.paths import EnvPrefix, default_prefix

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the local channel's real python is linux-64 only")

TARGET = "t"


def envctl(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-m", "envctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def locked_project(tmp_path_factory, local_channel: Path) -> Path:
    """A project whose target is rendered and locked with envctl's own CLI (so create and certify need no solve)."""
    root = tmp_path_factory.mktemp("default-prefix")
    (root / "envs").mkdir()
    (root / "envs" / "matrix.yaml").write_text(torch_matrix(local_channel, TARGET))
    done = envctl("lock", TARGET, cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def project_copy(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for part in ("envs", "locks"):
        subprocess.run(["cp", "-a", str(src / part), str(dest / part)], check=True)
    return dest


@pytest.mark.parametrize("planted", [".envctl", ".envctl/envs"])
@pytest.mark.parametrize("command", [["create", "--target", TARGET, "--no-certify"], ["certify", "--target", TARGET]])
def test_default_prefix_through_a_planted_symlink_is_refused(locked_project, tmp_path, planted, command):
    root = project_copy(locked_project, tmp_path / "project")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("a user's file")
    link = root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    done = envctl(*command, cwd=root)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "outside the project" in done.stderr, done.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]  # nothing built, no lock file, no .gitignore
    assert (outside / "keep.txt").read_text() == "a user's file"


def test_env_prefix_record_knows_the_project_state_folder(tmp_path):
    assert EnvPrefix.of(tmp_path, "t").in_project_state
    assert EnvPrefix.of(tmp_path, "t", default_prefix(tmp_path, "t")).in_project_state  # passed as a bare path too
    assert EnvPrefix.of(tmp_path, "t", tmp_path / ".envctl" / "envs" / ".." / "other").in_project_state
    assert not EnvPrefix.of(tmp_path, "t", tmp_path / "myenv").in_project_state
    assert not EnvPrefix.of(tmp_path, "t", tmp_path / ".envctl-not").in_project_state


@pytest.mark.slow  # builds an env
def test_default_create_writes_the_gitignore_and_git_sees_nothing(locked_project, tmp_path):
    root = project_copy(locked_project, tmp_path / "project")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    done = envctl("create", "--target", TARGET, "--no-certify", cwd=root)
    assert done.returncode == 0, done.stderr
    assert (root / ".envctl" / "envs" / TARGET / "bin" / "python").exists()
    assert (root / ".envctl" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    assert ".envctl" not in status, status


@pytest.mark.parametrize("command", [["run", "--target", TARGET, "--", "python", "-c", "print('ran outside')"],
                                     ["list", "--target", TARGET], ["doctor", "--target", TARGET],
                                     ["certify", "--target", TARGET, "--prefix", f".envctl/envs/{TARGET}"]])
def test_an_env_behind_a_planted_symlink_is_never_used(locked_project, tmp_path, command):
    """A committed `.envctl -> elsewhere` holding an env: commands that use the default env refuse it, run nothing."""
    root = project_copy(locked_project, tmp_path / "project")
    outside = tmp_path / "outside"
    (outside / "envs" / TARGET / "bin").mkdir(parents=True)
    marker = tmp_path / "ran"
    fake = outside / "envs" / TARGET / "bin" / "python"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    (root / ".envctl").symlink_to(outside, target_is_directory=True)
    done = envctl(*command, cwd=root)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "outside the project" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not marker.exists() and "ran outside" not in done.stdout
