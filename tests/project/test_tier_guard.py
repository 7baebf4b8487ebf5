"""The fast tier's guard (tests/support/tier_guard.py) catches heavy work however it is reached.

An inner pytest session, with the guard's hooks, runs tests that each reach one heavy entry
point a different way: in a session fixture, in a child Python, in a grandchild whose parent
stripped PYTHONPATH (as envctl does for the env's python), by launching the smoke runner, and
by exporting in-process. Each entry point is called with arguments that make it fail at once,
after the guard has seen the call, so the test costs seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from envctl.smoke import RUNNER_PATH

TESTS_DIR = Path(__file__).resolve().parents[1]

INNER_CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})
from support.tier_plugin import (pytest_configure, pytest_fixture_setup, pytest_runtest_call,
                                 pytest_runtest_setup, pytest_runtest_teardown)

def pytest_configure(config, _guard=pytest_configure):
    config.addinivalue_line("markers", "slow: heavy")
    _guard(config)
"""

CHILD_INSTALL = "import rattler\ntry:\n    rattler.install(None)\nexcept Exception:\n    pass\n"

INNER_TESTS = f"""
import os, subprocess, sys
import pytest

CHILD_INSTALL = {CHILD_INSTALL!r}

def call_install():
    import rattler
    try:
        rattler.install(None)
    except Exception:
        pass

@pytest.fixture(scope="session")
def built_env():
    call_install()

def test_session_fixture_builds(built_env):
    pass

def test_child_builds():
    env = dict(os.environ, PYTHONPATH="")
    subprocess.run([sys.executable, "-c", CHILD_INSTALL], env=env, check=True, timeout=120)

def test_grandchild_builds():
    # The child strips PYTHONPATH from its own child's environment, as envctl does.
    code = ("import os, subprocess, sys\\n"
            "env = {{k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}}\\n"
            "subprocess.run([sys.executable, '-c', %r], env=env, check=True, timeout=120)\\n" % CHILD_INSTALL)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

def test_runner_launched():
    subprocess.run([sys.executable, "-I", {str(RUNNER_PATH)!r}, "no-spec.json", "no-result.json"], timeout=120)

def test_export_in_process():
    import torch
    with pytest.raises(Exception):
        torch.onnx.export(None, (), "never.onnx")

def test_light_work(tmp_path):
    subprocess.run([sys.executable, "-c", "print('fine')"], check=True, timeout=120)

@pytest.mark.slow
def test_marked_slow():
    call_install()
    subprocess.run([sys.executable, "-c", CHILD_INSTALL], check=True, timeout=120)
"""


def test_guard_fails_every_unmarked_road_to_heavy_work(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST))
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    # The inner session is this test's own subject, not heavy work of this test: opt it out of the outer guard.
    env = dict(os.environ, ENVCTL_TEST_HEAVY_LOG="")
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "test_inner.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    outcomes = dict((name, state) for state, name in re.findall(r"^(PASSED|FAILED|ERROR) test_inner\.py::(\w+)", out, re.M))
    assert outcomes == {
        "test_session_fixture_builds": "ERROR",
        "test_child_builds": "FAILED",
        "test_grandchild_builds": "FAILED",
        "test_runner_launched": "FAILED",
        "test_export_in_process": "FAILED",
        "test_light_work": "PASSED",
        "test_marked_slow": "PASSED",
    }, out
    assert "while setting up fixture 'built_env' (scope session)" in out, out
    assert "builds an env (rattler.install" in out and "runs a certification (the smoke runner)" in out, out
    assert "runs a torch export (torch.onnx.export)" in out, out
