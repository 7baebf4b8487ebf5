"""pytest hooks of the fast tier's guard (see tier_guard.py); imported by tests/conftest.py.

Every phase of a test not marked slow (its setup, fixtures of any scope included, its
call and its teardown) runs with the guard on; a phase during which an env was built,
a certification ran or a bundle was packed, in this process or in any Python child,
fails and names what happened and in which fixture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from support import tier_guard


def pytest_configure(config):
    tier_guard.install()


def _guarded(item, phase: str):
    if item.get_closest_marker("slow") is not None:
        return (yield)
    fd, name = tempfile.mkstemp(prefix="envctl-heavy-", suffix=".log")
    os.close(fd)
    log = Path(name)
    saved = {var: os.environ.get(var) for var in (tier_guard.LOG_VAR, "PYTHONPATH")}
    os.environ[tier_guard.LOG_VAR] = str(log)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tier_guard.SITE_DIR, saved["PYTHONPATH"]) if p)
    try:
        result = yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        heavy = log.read_text(encoding="utf-8", errors="replace").strip()
        log.unlink()
        if heavy:
            raise pytest.fail.Exception(
                f"{item.nodeid} is not marked slow, but its {phase} did what only slow tests may "
                f"(build an env, run a certification, pack a bundle): mark it "
                f"@pytest.mark.slow, or move the work out of the fixture it uses.\n{heavy}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _guarded(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _guarded(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _guarded(item, "teardown"))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Name the fixture whose setup did heavy work, so a shared fixture's cost is not blamed on a test body."""
    log = os.environ.get(tier_guard.LOG_VAR)
    before = Path(log).stat().st_size if log else 0
    try:
        return (yield)
    finally:
        if log and Path(log).stat().st_size > before:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"  ^ while setting up fixture {fixturedef.argname!r} (scope {fixturedef.scope})\n")
