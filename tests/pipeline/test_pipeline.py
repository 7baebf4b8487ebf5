"""pipeline/stages.py on its own: which stage runs, in what order, and when a stage's output counts as fresh.

Real rendered files and a real lock (solved once for the module from the local
channel); nothing here builds an env or certifies (the fast tier's guard).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from envctl.core.errors import BlockedByRules, LockStale, NotRunnableHere
from envctl.core.paths import EnvPrefix, env_file
from envctl.lock.lockfile import lock_path
from envctl.matrix.project import Project
from envctl.pipeline import stages
from envctl.pipeline.stages import LockMode, StageFailed
from support.project import pip_target, write_project


def _project(root: Path, channel: Path, **targets: dict) -> Project:
    return Project.load(write_project(root, {"ok": pip_target(channel), **targets}))


@pytest.fixture(scope="module")
def locked_root(tmp_path_factory, local_channel) -> Path:
    """A project whose target `ok` is rendered and locked once (the chain's lock stage, AUTO)."""
    root = tmp_path_factory.mktemp("pipeline")
    project = _project(root, local_channel)
    events: list[str] = []
    result = stages.ensure_lock(project, project.target("ok"), progress=lambda event, **_: events.append(event)) \
        if stages.ensure_rendered(project, project.target("ok")) else None
    assert result is not None and result.path == lock_path(root, "ok") and "lock" in events
    return root


@pytest.fixture
def project(locked_root, tmp_path) -> Project:
    """A private copy of the locked project."""
    shutil.copytree(locked_root, tmp_path / "p")
    return Project.load(tmp_path / "p" / "envs" / "matrix.yaml")


def _edit_target(project: Project, **changes) -> Project:
    data = yaml.safe_load(project.matrix_path.read_text())
    data["targets"]["ok"].update(changes)
    project.matrix_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Project.load(project.matrix_path)


def test_a_fresh_render_and_lock_are_left_alone(project):
    target = project.target("ok")
    lock = lock_path(project.root, target)
    before = (env_file(project.root, target).stat().st_mtime_ns, lock.read_bytes())
    assert stages.ensure_rendered(project, target) is None
    for mode in LockMode:
        assert stages.ensure_lock(project, target, mode) is None, mode
    assert (env_file(project.root, target).stat().st_mtime_ns, lock.read_bytes()) == before


def test_a_changed_target_is_rendered_again_and_its_lock_is_stale(project):
    changed = _edit_target(project, opset=17)
    target = changed.target("ok")
    # Before rendering: the rendered file is older than the matrix, so the lock is stale too.
    with pytest.raises(LockStale, match="--locked: the lock of target 'ok' is missing or stale"):
        stages.ensure_lock(changed, target, LockMode.LOCKED)
    rendered = stages.ensure_rendered(changed, target)
    assert rendered is not None and rendered.changed
    assert stages.ensure_rendered(changed, target) is None  # fresh now
    with pytest.raises(LockStale):  # the lock still comes from the old spec
        stages.ensure_lock(changed, target, LockMode.LOCKED)
    assert stages.ensure_lock(changed, target, LockMode.FROZEN) is None  # taken as it is


def test_frozen_needs_only_the_lock_file(project):
    target = project.target("ok")
    lock_path(project.root, target).unlink()
    with pytest.raises(LockStale, match="--frozen: target 'ok' has no lock"):
        stages.ensure_lock(project, target, LockMode.FROZEN)


def test_a_matrix_edited_since_the_lock_makes_it_stale_before_anything_is_rendered(project):
    """The stale decision has one home (lock.solve.check_locks), which `lock --check`, --locked and status share."""
    from envctl.lock.solve import check_locks

    assert check_locks(project.root, [project.target("ok")]) == []
    changed = _edit_target(project, opset=17)
    [stale] = check_locks(changed.root, [changed.target("ok")])
    assert stale.kind == "stale" and "another definition" in stale.reason


def test_render_refuses_every_target_before_writing_any(tmp_path, local_channel):
    project = _project(tmp_path, local_channel,
                       blocked=pip_target(local_channel, onnxruntime="1.17.*", opset=21, exporters=["dynamo"]))
    with pytest.raises(BlockedByRules, match="blocked: ort-max-opset"):
        stages.render(project, project.select(None, True))
    assert not env_file(project.root, "ok").exists() and not env_file(project.root, "blocked").exists()
    [written] = stages.render(project, [project.target("ok")])
    assert written.changed and written.path == env_file(project.root, "ok")


def test_the_rules_run_once_per_target_and_render(tmp_path, local_channel, monkeypatch):
    import envctl.rules.api as rules

    project = _project(tmp_path, local_channel, other=pip_target(local_channel))
    checked: list[str] = []
    real = rules.check_target
    monkeypatch.setattr(rules, "check_target", lambda t: checked.append(t.name) or real(t))
    stages.render(project, project.select(None, True))
    assert sorted(checked) == ["ok", "other"]


def test_a_target_this_host_cannot_run_is_refused_before_any_stage(tmp_path, local_channel):
    project = _project(tmp_path, local_channel, arm=pip_target(local_channel, platforms=["osx-arm64"]))
    with pytest.raises(StageFailed) as failed:
        stages.run_chain(project, project.target("arm"))
    assert failed.value.stage == "render" and isinstance(failed.value.error, NotRunnableHere)
    assert not env_file(project.root, "arm").exists()  # refused before rendering, not after
    with pytest.raises(NotRunnableHere, match="not creating"):  # what `envctl create` shows: the error itself
        stages.setup(project, project.target("arm"))


def test_a_lock_only_chain_stops_after_the_lock_and_reports_it(project):
    """certify's and the whole-matrix run's chain: no env for a target this host cannot run, only its lock."""
    arm = _edit_target(project, platforms=["osx-arm64"])
    result = stages.run_chain(arm, arm.target("ok"), refuse_lock_only=False, certify=False,
                              lock_mode=LockMode.FROZEN)
    assert (result.target, result.create, result.certificate, result.certification) == ("ok", None, None, "not run")


def test_a_locked_chain_stops_at_the_stale_lock_naming_the_stage(project):
    changed = _edit_target(project, opset=17)
    with pytest.raises(StageFailed) as failed:
        stages.run_chain(changed, changed.target("ok"), lock_mode=LockMode.LOCKED, certify=False)
    assert failed.value.stage == "lock" and isinstance(failed.value.error, LockStale)
    # LOCKED never renders or relocks: both files are as they were.
    assert stages.ensure_rendered(changed, changed.target("ok")) is not None


def test_the_default_prefix_stays_guarded_however_it_is_named(tmp_path):
    """The EnvPrefix carried through the chain, not a flag: a default named explicitly is still the project's."""
    root = tmp_path / "p"
    default = EnvPrefix.of(root, "ok")
    named = EnvPrefix.of(root, "ok", root / ".envctl" / "envs" / "ok")
    elsewhere = EnvPrefix.of(root, "ok", tmp_path / "mine")
    assert default == named and default.in_project_state and not elsewhere.in_project_state
    (root / ".envctl").parent.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / ".envctl").symlink_to(tmp_path / "outside")  # a committed .envctl symlink leading out
    from envctl.core.errors import EnvctlError

    with pytest.raises(EnvctlError, match="env prefix"):
        named.checked()
    assert elsewhere.checked() == tmp_path / "mine"  # the user's own folder is theirs to choose
