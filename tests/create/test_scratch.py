"""create's scratch folders: recovery touches only what envctl made and can prove it made.

Regression tests for issue 12 item 1 (data loss beside envs) and item 7's
flock-file cases: user folders that look like leftovers, a missing prefix,
targets whose names used to be another target's scratch names, glob
characters in a prefix, and lock files made before the prefix was checked.
All on real envs built from a small conda-only lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envctl.core.errors import EnvctlError
from envctl.create.build import create_env, env_state
from envctl.create.prefixswap import SCRATCH_MARKER
from envctl.host.platform import host_platform
from envctl.matrix.loader import load_matrix
from support import lockfactory as lf

pytestmark = [
    pytest.mark.slow,  # builds real envs
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]


def _lock(root: Path, channel: Path, name: str) -> None:
    lf.write_lock(root / "locks" / f"{name}.conda-lock.yml", target=name, channel=channel, platforms=["linux-64"],
                  packages=lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_channel):
    root = tmp_path_factory.mktemp("scratch")
    for name in ("small", "base", "base.old-1", "base.staging-1"):
        _lock(root, local_channel, name)
    return root


def _user_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "notes.txt").write_text(f"mine: {path.name}\n")
    return path


def _intact(path: Path) -> bool:
    return (path / "sub" / "notes.txt").read_text() == f"mine: {path.name}\n"


def _marked(path: Path, prefix: Path, pid: int) -> Path:
    path.mkdir(parents=True)
    (path / SCRATCH_MARKER).write_text(json.dumps({"pid": pid, "prefix": str(prefix)}))
    return path


def test_user_folders_beside_an_env_survive_creates(project, tmp_path):
    prefix = tmp_path / "myenv"
    create_env(project, "small", prefix=prefix)
    mine = [_user_folder(tmp_path / n) for n in (
        "myenv.old-backup", "myenv.staging-notes", "myenv.old-1", "myenv.staging-2",
        "myenv~old-3", "myenv~staging-4",  # envctl's names, but no marker: not provably envctl's
        "myenv~staging-05",  # not the exact form envctl writes
    )]
    # A marker for another prefix, or for another pid than the name says, proves nothing.
    other = _marked(tmp_path / "myenv~staging-424242", tmp_path / "other", 424242)
    wrong_pid = _marked(tmp_path / "myenv~old-424243", prefix, 1)
    assert create_env(project, "small", prefix=prefix).action == "unchanged"
    assert create_env(project, "small", prefix=prefix, force=True).action == "rebuilt"
    assert all(_intact(p) for p in mine)
    assert other.is_dir() and wrong_pid.is_dir()


def test_missing_prefix_does_not_adopt_a_user_folder(project, tmp_path):
    prefix = tmp_path / "newenv"
    mine = [_user_folder(tmp_path / n) for n in ("newenv.old-2023", "newenv~old-7")]
    result = create_env(project, "small", prefix=prefix)
    assert result.action == "created" and env_state(prefix)["target"] == "small"
    assert all(_intact(p) for p in mine)
    assert not (prefix / "sub").exists()


def test_a_marked_leftover_is_recovered(project, tmp_path):
    """The positive case: a parked old env and a dead staging folder, both marked, are put right."""
    prefix = tmp_path / "env"
    create_env(project, "small", prefix=prefix)
    before = env_state(prefix)
    (prefix / SCRATCH_MARKER).write_text(json.dumps({"pid": 424244, "prefix": str(prefix)}))
    os.rename(prefix, tmp_path / "env~old-424244")
    _marked(tmp_path / "env~staging-424245", prefix, 424245)
    assert create_env(project, "small", prefix=prefix).action == "unchanged"
    assert env_state(prefix) == before and not (prefix / SCRATCH_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "env~lock"]


def test_targets_named_like_scratch_folders_keep_their_envs(project):
    prefixes = {n: create_env(project, n).prefix for n in ("base.old-1", "base.staging-1")}
    states = {n: env_state(p) for n, p in prefixes.items()}
    create_env(project, "base")
    create_env(project, "base", force=True)
    assert create_env(project, "base").action == "unchanged"
    for name, prefix in prefixes.items():
        assert env_state(prefix) == states[name], name
        assert create_env(project, name).action == "unchanged"


@pytest.mark.parametrize("name", ["base~old-1", "base~lock", "a\n", "a\r", "a\tb", "x\x00", "é"])
def test_names_in_envctls_scratch_namespace_or_with_control_characters_are_refused(tmp_path, name):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(json.dumps({"targets": {name: {}}}))
    with pytest.raises(EnvctlError, match="not allowed"):
        load_matrix(matrix)
    with pytest.raises(EnvctlError, match="not allowed"):
        create_env(tmp_path, name)


@pytest.mark.parametrize("glob", ["e[ab]", "e*", "e?", "e[!x]"])
def test_glob_characters_in_a_prefix_match_nothing_else(project, tmp_path, glob):
    neighbours = {"ea": tmp_path / "ea"}
    create_env(project, "small", prefix=neighbours["ea"])
    before = env_state(neighbours["ea"])
    # ea's own (marked) leftover: only a create of ea itself may remove it.
    theirs = _marked(tmp_path / "ea~staging-424246", neighbours["ea"], 424246)
    mine = [_user_folder(tmp_path / n) for n in ("eb", "ea.old-1", "eb~old-2")]
    # Glob characters are refused up front (core/prefixrule): nothing beside them is touched either way.
    for force in (False, True):
        with pytest.raises(EnvctlError, match="refusing the env prefix"):
            create_env(project, "small", prefix=tmp_path / glob, force=force)
    assert env_state(neighbours["ea"]) == before and theirs.is_dir()
    assert all(_intact(p) for p in mine)
    create_env(project, "small", prefix=neighbours["ea"])
    assert not theirs.exists()


def test_a_symlinked_scratch_name_is_not_followed(project, tmp_path):
    prefix = tmp_path / "env"
    create_env(project, "small", prefix=prefix)
    outside = _marked(tmp_path / "elsewhere", prefix, 424247)
    (tmp_path / "env~staging-424247").symlink_to(outside)
    create_env(project, "small", prefix=prefix, force=True)
    assert outside.is_dir() and (outside / SCRATCH_MARKER).exists()


def test_a_symlinked_old_env_name_is_not_adopted(project, tmp_path):
    """No prefix, and `env~old-PID` is a symlink to a marked folder elsewhere: recovery must not
    rename the link into place (the env would live outside its prefix), and must leave it alone."""
    prefix = tmp_path / "env"
    outside = _marked(tmp_path / "elsewhere", prefix, 424248)
    (tmp_path / "env~old-424248").symlink_to(outside)
    create_env(project, "small", prefix=prefix)
    assert prefix.is_dir() and not prefix.is_symlink() and (prefix / "conda-meta").is_dir()
    assert (tmp_path / "env~old-424248").is_symlink() and os.listdir(outside) == [SCRATCH_MARKER]


@pytest.mark.parametrize("prefix", ["/", "//"])
def test_root_as_prefix_is_a_clear_error(project, prefix):
    with pytest.raises(EnvctlError, match="filesystem root"):
        create_env(project, "small", prefix=Path(prefix))


def test_a_foreign_folder_is_refused_before_any_file_is_made_beside_it(project, tmp_path):
    home = _user_folder(tmp_path / "home")
    with pytest.raises(EnvctlError, match="not made by envctl"):
        create_env(project, "small", prefix=home)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no home~lock (or home.lock)
    assert _intact(home)


def test_a_symlinked_lock_file_is_not_followed(project, tmp_path):
    outside = tmp_path / "outside" / "victim"
    outside.parent.mkdir()
    envs = project / ".envctl" / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    link = envs / "small~lock"
    link.symlink_to(outside)
    try:
        with pytest.raises(EnvctlError, match="symlink"):
            create_env(project, "small")
        assert not outside.exists()
    finally:
        link.unlink()


def test_a_foreign_folder_at_this_creates_own_scratch_name_is_not_deleted(project, tmp_path):
    """The exact name this process would build in, held by someone else's folder: refused, not rmtree'd."""
    prefix = tmp_path / "env"
    mine = _user_folder(tmp_path / f"env~staging-{os.getpid()}")
    with pytest.raises(EnvctlError, match="refusing to touch it"):
        create_env(project, "small", prefix=prefix)
    assert _intact(mine) and not prefix.exists()
