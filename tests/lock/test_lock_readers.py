"""Every lock envctl writes is read by both conda-lock's parser and py-rattler's (pixi's library)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.project import pip_target, write_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def locked(local_channel, tmp_path_factory) -> Path:
    from envctl.matrix.project import Project
    from envctl.pipeline import stages

    root = tmp_path_factory.mktemp("readers")
    matrix = write_project(root, {
        "both": pip_target(local_channel, models=["cnn"]),
    })
    project = Project.load(matrix)
    results = stages.lock(project, project.select(None, True))
    return root, results


def test_conda_lock_and_rattler_both_read_every_lock(locked):
    import rattler
    from conda_lock.lockfile import parse_conda_lock_file

    root, results = locked
    for result in results:
        parsed = parse_conda_lock_file(result.path)
        lock = rattler.LockFile.from_path(result.path)
        env = lock.default_environment()
        by_rattler = sum(len(env.packages(p)) for p in env.platforms())
        assert by_rattler == len(parsed.package) > 0, result.path
        assert {p.name for p in env.platforms()} == set(parsed.metadata.platforms)


def test_pip_dependencies_are_pep440_pins(locked):
    from conda_lock.lockfile import parse_conda_lock_file

    _, results = locked
    pip = [p for r in results for p in parse_conda_lock_file(r.path).package if p.manager == "pip"]
    assert pip, "the test needs a lock with a pip part"
    specs = {spec for p in pip for spec in p.dependencies.values()}
    assert "*" not in specs and all(s.startswith(("==", ">=")) for s in specs), specs


def test_the_header_names_envctls_own_commands(locked):
    _, results = locked
    head = results[0].path.read_text().split("\nversion:", 1)[0]
    assert f"envctl lock {results[0].target}" in head and "--update" not in head


def test_a_lock_of_local_files_warns_that_it_is_not_portable(locked):
    _, results = locked
    # The tests' channel and wheels are file:// folders of this machine.
    assert all(any("not portable" in w for w in r.warnings) for r in results)
