"""Commands on one real, locked and built env: --locked / --frozen (pixi's meaning), list, --json.

--locked fails when the lock is missing or stale and never relocks; --frozen
uses the lock as it is. The env is built once from the local channel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.project import pip_target, write_project

pytestmark = pytest.mark.slow


def envctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envctl", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def project(local_channel, tmp_path_factory) -> Path:
    """A project whose one target is locked and built (the same stack every env test builds)."""
    root = tmp_path_factory.mktemp("lockmodes")
    write_project(root, {"small": pip_target(local_channel, models=["cnn"])})
    done = envctl("create", "--target", "small", "--no-certify", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def _make_stale(root: Path) -> None:
    matrix = root / "envs" / "matrix.yaml"
    doc = yaml.safe_load(matrix.read_text())
    doc["targets"]["small"]["numpy"] = ">=1.26,<99"  # another definition: render and lock are now stale
    matrix.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_locked_passes_on_a_fresh_lock(project):
    done = envctl("create", "--target", "small", "--no-certify", "--locked", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "already matches its lock" in done.stdout


def test_locked_fails_on_a_stale_lock_and_leaves_it_untouched(project, tmp_path):
    lock = project / "locks" / "small.conda-lock.yml"
    env_file = project / "envs" / "small" / "environment.yml"
    before = (lock.read_bytes(), env_file.read_bytes())
    matrix = project / "envs" / "matrix.yaml"
    original = matrix.read_text()
    _make_stale(project)
    try:
        for args in (["create", "--target", "small", "--no-certify", "--locked"],
                     ["certify", "--target", "small", "--locked"],
                     ["run", "--target", "small", "--locked", "--", "python", "-c", "pass"]):
            done = envctl(*args, cwd=project)
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert "--locked" in done.stderr and "stale" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
            assert (lock.read_bytes(), env_file.read_bytes()) == before, f"{args[0]} --locked rewrote the lock"
        # --frozen takes the lock as it is: the env it was built from runs.
        done = envctl("run", "--target", "small", "--frozen", "--", "python", "-c", "import onnx", cwd=project)
        assert done.returncode == 0, done.stderr
        done = envctl("create", "--target", "small", "--no-certify", "--frozen", cwd=project)
        assert done.returncode == 0 and (lock.read_bytes(), env_file.read_bytes()) == before, done.stderr
    finally:
        matrix.write_text(original)


def test_locked_fails_on_a_missing_lock_and_writes_none(local_channel, tmp_path):
    write_project(tmp_path, {"fresh": pip_target(local_channel, models=["cnn"])})
    for args in (["create", "--target", "fresh", "--no-certify", "--locked"],
                 ["create", "--target", "fresh", "--no-certify", "--frozen"]):
        done = envctl(*args, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert "no lock" in done.stderr or "missing" in done.stderr, done.stderr
    assert not (tmp_path / "locks").exists() or not any((tmp_path / "locks").iterdir())
    assert not (tmp_path / ".envctl" / "envs" / "fresh").exists()


def test_locked_and_frozen_exclude_each_other(tmp_path):
    done = envctl("create", "--target", "x", "--locked", "--frozen", cwd=tmp_path)
    assert done.returncode == 2 and "exclude each other" in done.stderr


def test_list_names_conda_and_pip_packages_with_versions(project):
    done = envctl("list", "--target", "small", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    by_name = {p["name"].lower(): p for p in listed["packages"]}
    assert by_name["python"]["manager"] == "conda" and by_name["python"]["build"]
    assert by_name["torch"]["manager"] == "pip" and by_name["torch"]["version"].startswith("2.13.0")
    assert len({(p["name"].lower(), p["manager"]) for p in listed["packages"]}) == len(listed["packages"])
    table = envctl("list", "-t", "small", cwd=project)
    assert table.returncode == 0 and "torch" in table.stdout


def test_create_and_render_speak_json(project):
    done = envctl("create", "small", "--no-certify", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["target"] == "small" and entry["env"]["action"] == "unchanged"
    rendered = json.loads(envctl("render", "--target", "small", "--json", cwd=project).stdout)
    assert rendered[0]["target"] == "small" and rendered[0]["path"].endswith("environment.yml")


def test_shell_prints_rattlers_activation_and_runs_a_shell(project):
    script = envctl("shell", "--target", "small", "--shell", "bash", "--print-script", cwd=project)
    assert script.returncode == 0, script.stderr
    prefix = project / ".envctl" / "envs" / "small"
    assert f"CONDA_PREFIX={prefix}" in script.stdout and f"{prefix}/bin" in script.stdout
    fish = envctl("shell", "-t", "small", "--shell", "fish", "--print-script", cwd=project)
    assert fish.returncode == 0 and "set -gx" in fish.stdout, fish.stderr
    # An interactive bash in the env, fed commands on stdin. The user's own ~/.bashrc is read (its
    # variables are there) and comes first: a python it puts first on PATH (pyenv, say) does not win.
    home = project / "home"
    (home / "pyenv" / "bin").mkdir(parents=True, exist_ok=True)
    (home / "pyenv" / "bin" / "python").write_text("#!/bin/sh\necho not-the-env\n")
    (home / "pyenv" / "bin" / "python").chmod(0o755)
    (home / ".bashrc").write_text(f'export FROM_MY_BASHRC=yes\nexport PATH="{home}/pyenv/bin:$PATH"\n')
    done = subprocess.run([sys.executable, "-m", "envctl", "shell", "-t", "small", "--shell", "bash"], cwd=project,
                          input="python -c 'import sys; print(sys.prefix)'\necho rc=$FROM_MY_BASHRC\nexit 7\n",
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(home)))
    assert done.returncode == 7 and str(prefix) in done.stdout, (done.stdout, done.stderr)
    assert "rc=yes" in done.stdout and "not-the-env" not in done.stdout, (done.stdout, done.stderr)
