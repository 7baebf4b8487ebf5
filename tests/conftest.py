"""Shared pytest fixtures for envctl's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/ is not a package; make tests/support importable however pytest was started.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.local_channel import build_local_channel  # noqa: E402


@pytest.fixture(scope="session")
def local_channel() -> Path:
    """A ready, indexed local conda channel (see tests/support/local_channel.py).

    Built once per machine and cached; use ``support.local_channel.channel_url``
    for the ``file://`` URL that rattler.solve and conda-lock accept.
    """
    return build_local_channel()


@pytest.fixture(scope="session", autouse=True)
def every_lock_reads_in_rattler_too(tmp_path_factory):
    """After the session: every lock the tests produced that conda-lock's parser reads, py-rattler
    (the library under pixi) reads too, with the same packages. Deliberately broken locks (fault
    and hostile-input tests) are the ones conda-lock refuses, and are skipped."""
    yield
    import rattler
    from conda_lock.lockfile import parse_conda_lock_file

    problems = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("*.conda-lock.yml")):
        try:
            parsed = parse_conda_lock_file(path)
        except Exception:
            continue
        try:
            env = rattler.LockFile.from_path(path).default_environment()
            count = sum(len(env.packages(p)) for p in env.platforms())
        except Exception as exc:
            problems.append(f"{path}: {exc}")
            continue
        if count != len(parsed.package):
            problems.append(f"{path}: rattler sees {count} packages, conda-lock {len(parsed.package)}")
    assert not problems, "locks py-rattler cannot read:\n" + "\n".join(problems)
