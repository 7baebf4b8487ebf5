"""Shared pytest fixtures for envctl's tests."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

# tests/ is not a package; make tests/support importable however pytest was started.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.local_channel import build_local_channel  # noqa: E402
# The fast tier's guard: a test not marked slow whose setup (fixtures of any scope), call or
# teardown builds an env, runs a certification or packs a bundle fails (tests/support/tier_guard.py).
from support.tier_plugin import (  # noqa: E402,F401
    pytest_configure,
    pytest_fixture_setup,
    pytest_runtest_call,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)


# Session fixtures that build, certify or pack, shared by several modules: the tests that use
# them run on one xdist worker (the group named here), so each is built once per run.
SHARED_BUILDS = {"old_runtime_certified": "shared-builds", "aarch64_certified": "shared-builds",
                 "pack_bundle": "pack-bundle", "small_pack_bundle": "pack-small-bundle",
                 "small_pack_project": "pack-small-bundle", "installed_pack_bundle": "pack-bundle"}


@pytest.hookimpl(wrapper=True)  # the groups are set before xdist's own hook reads them
def pytest_collection_modifyitems(config, items):
    """Lay the suite out for `-n 2 --dist loadgroup` (the README's test command).

    Each module is one xdist group, so its module- and session-scoped fixtures are built by
    one worker only; the tests that use one of SHARED_BUILDS form its group. Modules with slow
    tests are sent first, so the two workers do not end waiting on one long module.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            shared = [group for name, group in SHARED_BUILDS.items() if name in item.fixturenames]
            item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.module.__name__))
    heavy = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in heavy)  # stable: module order within each half
    result = yield
    if config.getoption("loadgroup", False):
        for item in items:
            _group_into_node_id(item)
    return result


def _group_into_node_id(item) -> None:
    """xdist's scheduler reads a test's group from its node id (`...::test@group`). xdist 3.8
    writes it to `item._nodeid`, which pytest 9.2 no longer reads (pytest-dev/pytest-xdist#1386):
    every test then goes out alone, and each worker builds the module and session fixtures of
    the tests it got (the corpus, the bundle, each module's env) again. Write it where pytest
    reads it, while xdist does not."""
    group = item.get_closest_marker("xdist_group").args[0]
    if item.nodeid.endswith(f"@{group}") or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than the CPUs this process may use (8 at most). Part of every
    run waits rather than computes (on subprocesses, locks, signals and timeouts): on 2 cores a
    third worker took the full suite from 784 s to 717 s (CPU use 176% -> 193%; docs/testing.md).
    PYTEST_XDIST_AUTO_NUM_WORKERS, where set, still decides (xdist's own reading of it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus + 1, 8)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Send the groups in the order collected above (slow modules first); xdist would otherwise
    reorder them by their number of tests, which says nothing of how long they take."""
    config.option.loadscopereorder = False
    # None: xdist makes its own scheduler, which reads the option


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """After a test that passed, empty its `tmp_path` but for the locks in it.

    A full run would otherwise leave ~16 GB behind (envs, bundles and their copies, extracted
    trees) that nothing reads again; the locks stay for `every_lock_reads_in_rattler_too`.
    A failed test keeps everything, to look at."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    elif report.when == "teardown" and report.passed and item.stash.get(_CALL_PASSED, False):
        tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
        if tmp_path is not None:
            _keep_only_locks(Path(tmp_path))
    return report


def _keep_only_locks(folder: Path) -> None:
    for top, dirs, files in os.walk(folder, topdown=False):  # links are removed, never followed
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            if not name.endswith(".conda-lock.yml"):
                with contextlib.suppress(OSError):  # e.g. a folder a test left read-only
                    os.unlink(os.path.join(top, name))
        for name in dirs:
            with contextlib.suppress(OSError):  # not empty: it holds a lock
                os.rmdir(os.path.join(top, name))


@pytest.fixture(scope="session")
def local_channel() -> Path:
    """A ready, indexed local conda channel (see tests/support/local_channel.py).

    Built once per machine and cached; use ``support.local_channel.channel_url``
    for the ``file://`` URL that rattler.solve and conda-lock accept.
    """
    return build_local_channel()


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory, local_channel):
    """(root, matrix) of the project holding the targets several modules share (tests/support/shared.py).

    Modules add their own matrix files beside `envs/shared.yaml` with `write_project(root, ..., name=...)`.
    """
    from support import team_models
    from support.project import write_project
    from support.shared import shared_targets

    root = tmp_path_factory.mktemp("shared-project")
    matrix = write_project(root, shared_targets(local_channel), {"teammodels.py": team_models.SOURCE}, name="shared.yaml")
    return root, matrix


def _certify(matrix: Path, target: str) -> tuple[int, dict]:
    import json

    from typer.testing import CliRunner

    from envctl.cli import app

    result = CliRunner().invoke(app, ["certify", "--target", target, "--matrix", str(matrix)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads((matrix.parent.parent / "certs" / f"{target}.json").read_text())


@pytest.fixture(scope="session")
def old_runtime_certified(shared_project):
    """`envctl certify --target old-runtime`, run once: (exit code, certificate). Builds its env."""
    return _certify(shared_project[1], "old-runtime")


@pytest.fixture(scope="session")
def aarch64_certified(shared_project):
    """`envctl lock aarch64-only`, then `envctl certify --target aarch64-only`, once: (lock exit, certify exit, cert)."""
    from typer.testing import CliRunner

    from envctl.cli import app

    lock = CliRunner().invoke(app, ["lock", "aarch64-only", "--matrix", str(shared_project[1])])
    code, cert = _certify(shared_project[1], "aarch64-only")
    return lock.exit_code, code, cert


@pytest.fixture(scope="session", autouse=True)
def every_lock_reads_in_rattler_too(tmp_path_factory):
    """After the session: every lock the tests left behind reads in conda-lock and in py-rattler
    (the library under pixi), with the same packages. A lock conda-lock cannot parse fails the
    session, unless the test that broke it on purpose declared it (support/broken_locks.py)."""
    yield
    import rattler
    from conda_lock.lockfile import parse_conda_lock_file

    from support import broken_locks

    problems = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("*.conda-lock.yml")):
        if broken_locks.declared(path) and not path.is_file():
            continue  # a FIFO or a device a test put there on purpose: reading it would hang or never end
        try:
            parsed = parse_conda_lock_file(path)
        except Exception as exc:
            if not broken_locks.declared(path):
                problems.append(f"{path}: conda-lock cannot parse it, and no test declared it broken on purpose "
                                f"(support.broken_locks): {str(exc)[:300]}")
            continue
        try:
            env = rattler.LockFile.from_path(path).default_environment()
            count = sum(len(env.packages(p)) for p in env.platforms())
        except Exception as exc:
            problems.append(f"{path}: {exc}")
            continue
        if count != len(parsed.package):
            problems.append(f"{path}: rattler sees {count} packages, conda-lock {len(parsed.package)}")
    assert not problems, "locks that do not read in both conda-lock and py-rattler:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def pack_project(tmp_path_factory, local_channel) -> Path:
    """A project with one locked target (support.packing.PACK_TARGET) to pack; locking only, no env."""
    from support.packing import make_pack_project

    return make_pack_project(tmp_path_factory.mktemp("packproj"), local_channel)


@pytest.fixture(scope="session")
def pack_bundle(pack_project, tmp_path_factory) -> Path:
    """The bundle of pack_project, packed once per session (slow: the whole torch env)."""
    from support.packing import PACK_TARGET, make_bundle

    # --compress none: half the time to pack and install; the small bundle keeps gzip's payload tested
    return make_bundle(pack_project, tmp_path_factory.mktemp("bundle") / f"{PACK_TARGET}.sh", compress="none")


@pytest.fixture(scope="session")
def installed_pack_bundle(pack_bundle, local_channel, tmp_path_factory):
    """pack_bundle installed once, offline where the machine allows (support.packing.install_offline)."""
    from support.packing import install_offline

    return install_offline(pack_bundle, tmp_path_factory.mktemp("device") / "edge box", local_channel)


@pytest.fixture(scope="session")
def small_pack_project(tmp_path_factory, local_channel) -> Path:
    """A project with one locked target without torch (support.packing.SMALL_TARGET); locking only."""
    from support.packing import make_small_pack_project

    return make_small_pack_project(tmp_path_factory.mktemp("smallpackproj"), local_channel)


@pytest.fixture(scope="session")
def small_pack_bundle(small_pack_project, tmp_path_factory) -> Path:
    """The bundle of small_pack_project, packed once per session (python, pip and numpy: the bundle
    the tests of the header's and the installer's mechanics install, damage and interrupt)."""
    from support.packing import SMALL_TARGET, make_bundle

    return make_bundle(small_pack_project, tmp_path_factory.mktemp("smallbundle") / f"{SMALL_TARGET}.sh", SMALL_TARGET)
