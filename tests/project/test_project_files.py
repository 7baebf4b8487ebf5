"""Files envctl writes are ordinary project files: readable as the umask says, envs never committed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.core.atomic import write_bytes_atomic
from envctl.cli import app
from envctl.core.statedir import ensure_state_dir
from envctl.matrix.versions import Spec
from support.project import pip_target, write_project
from support import broken_locks

runner = CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def umask():
    """Set the process umask for a test, and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    path = broken_locks.declare(tmp_path / "locks" / "t.conda-lock.yml")  # only its mode matters here
    write_bytes_atomic(path, b"x: 1\n")
    assert mode(path) == expected and path.read_bytes() == b"x: 1\n"


def test_rewriting_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "certs" / "t.json"
    write_bytes_atomic(path, b"{}")
    path.chmod(0o640)  # someone chose this
    write_bytes_atomic(path, b'{"a": 1}')
    assert mode(path) == 0o640 and path.read_bytes() == b'{"a": 1}'


def test_umask_is_read_without_disturbing_other_threads(tmp_path, umask):
    # envctl writes from worker threads (certify -j N): reading the umask must not change it under them.
    umask(0o027)
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(Path("/proc/self/status").read_text().split("Umask:")[1].split()[0])

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        for i in range(200):
            write_bytes_atomic(tmp_path / f"f{i}", b"x")
    finally:
        stop.set()
        thread.join()
    assert set(seen) == {"0027"} and {mode(tmp_path / f"f{i}") for i in range(200)} == {0o640}


def test_commands_write_files_the_team_can_read(tmp_path, umask):
    """Through the CLI: the rendered spec and the workflow, with a umask of 022, are 0644."""
    umask(0o022)
    matrix = write_project(tmp_path, {"t": pip_target(tmp_path, models=["cnn"])})
    assert runner.invoke(app, ["render", "t", "--matrix", str(matrix)]).exit_code == 0
    for path in (tmp_path / "envs" / "t").iterdir():
        assert mode(path) == 0o644, path
    out = tmp_path / "wf.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--out", str(out), "--install", "./x"])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o644


def test_state_folder_is_git_ignored_in_any_project(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    folder = ensure_state_dir(tmp_path)
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    (folder / "envs" / "t" / "bin").mkdir(parents=True)
    (folder / "envs" / "t" / "bin" / "python").write_text("")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status  # nothing under .envctl shows up, not even the .gitignore itself
    # Kept as it is once there (a team may have edited it).
    (folder / ".gitignore").write_text("*\n!keep\n")
    ensure_state_dir(tmp_path)
    assert (folder / ".gitignore").read_text() == "*\n!keep\n"


@pytest.mark.slow  # builds an env (a tiny one)
@pytest.mark.skipif(sys.platform != "linux", reason="the local channel's real python is linux-64 only")
def test_create_writes_the_gitignore(tmp_path, local_channel):
    """create makes .envctl/ with its .gitignore; a create refused (no lock) makes nothing."""
    from envctl.core.errors import EnvctlError
    from envctl.create.build import create_env
    from support import lockfactory as lf

    entries = lf.channel_entries(local_channel, "linux-64", ["python_abi"])
    lf.write_lock(tmp_path / "locks" / "abi.conda-lock.yml", target="abi", channel=local_channel,
                  platforms=["linux-64"], packages=entries)
    result = create_env(tmp_path, "abi")
    assert result.action == "created"
    assert (tmp_path / ".envctl" / ".gitignore").read_text().splitlines()[-1] == "*"
    with pytest.raises(EnvctlError):
        create_env(tmp_path / "nowhere", "abi")
    assert not (tmp_path / "nowhere").exists()


def test_local_labels():
    """As the matrix schema page says: a spec without a label admits every build of the version; with one, that build only."""
    assert Spec.parse("2.13.0").contains("2.13.0+cpu") and Spec.parse("2.13.0").contains("2.13.0+cu118")
    assert Spec.parse("2.13").contains("2.13.1+cu126") and Spec.parse(">=2.12").contains("2.13.0+cpu")
    assert Spec.parse("2.13.0+cu118").contains("2.13.0+cu118")
    assert not Spec.parse("2.13.0+cu118").contains("2.13.0+cpu")  # another build: not what the matrix asked for
    assert not Spec.parse("2.13.0+cu118").contains("2.13.0")
    schema = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "matrix-schema.md").read_text()
    assert "never decide a match" not in schema
    assert '(`"2.13.0+cu118"` does not admit `2.13.0+cpu`)' in schema
