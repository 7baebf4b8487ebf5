"""A crashing, hanging or lying smoke runner: each is classified (runner_crash, timeout), its
children die with it, and the next run goes ahead. The runner runs as certify runs it
(`run_smoke`), with models from support.faults.FAULT_MODELS.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from envctl.certify.certify import run_smoke
from support import procs
from support.faults import FAULT_MODELS

pytestmark = pytest.mark.slow  # runs the smoke runner


SPEC = {"spec_version": 1, "target": "faults", "opset": 18, "exporters": ["torchscript"],
        "providers": ["CPUExecutionProvider"], "required_provider": "CPUExecutionProvider", "device": "cpu",
        "expected_versions": {}, "tolerances": {"atol": 1e-4, "rtol": 1e-3}, "sizes": [1, 2], "seed": 0,
        "simplify": None}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faultmods")
    (folder / "faultmods.py").write_text(textwrap.dedent(FAULT_MODELS))
    return folder


def smoke(models_dir: Path, model: str, timeout: float = 120, python: Path | None = None):
    from envctl.smoke.envctl_smoke_protocol import Spec

    spec = Spec.from_json(dict(SPEC, models=[model], model_paths=[str(models_dir)]))
    return run_smoke(python or Path(sys.executable), spec, timeout)


@pytest.mark.parametrize("model", ["faultmods:segv", "faultmods:selfkill"])
def test_segfaulting_model_is_a_runner_crash_and_the_next_run_goes_ahead(models_dir, model):
    result, facts = smoke(models_dir, model)
    assert result is None
    assert facts["failure"]["class"] == "runner_crash"
    assert "SIGSEGV" in facts["failure"]["message"] and model in facts["failure"]["message"], facts["failure"]
    assert facts["failure"]["remedy"]
    assert "Fatal Python error" in facts["output_tail"]  # faulthandler's stack, kept for the report
    result, facts = smoke(models_dir, "cnn")
    assert result is not None and result.status == "passed", result.failure


def test_hanging_model_is_a_timeout_and_its_children_die(models_dir, tmp_path, monkeypatch):
    marker = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAULT_MARKER", str(marker))
    result, facts = smoke(models_dir, "faultmods:hang", timeout=20)
    assert result is None and facts["failure"]["class"] == "timeout"  # the timeout, not the hang's end, ended it
    assert "faultmods:hang" in facts["failure"]["message"]
    assert procs.wait_dead([int(marker.read_text())]) == []


def test_model_that_exits_0_without_a_result_is_a_runner_crash(models_dir):
    result, facts = smoke(models_dir, "faultmods:exit0")
    assert facts["exit_code"] == 0
    failure = (result or {}).get("failure") or facts.get("failure")
    assert failure["class"] == "runner_crash" and "faultmods:exit0" in failure["message"], failure
    assert (result or {}).get("status") != "passed"


def test_finished_runner_with_a_lingering_child_does_not_wait_for_the_timeout(models_dir):
    result, facts = smoke(models_dir, "faultmods:linger", timeout=90)
    # Waiting for the lingering process (it sleeps an hour) would have ended in the timeout instead.
    assert result is not None and result.status == "passed", result.failure
    assert procs.wait_dead(procs.pids_running("import time; time.sleep(3600)")) == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo 'Segmentation fault (core dumped) {\"status\": \"passed\"}'; exit 0", "exited 0 without a readable result"),
        ("printf 'not json' > \"$4\"; exit 0", "exited 0 without a readable result"),
        ("echo '[1, 2, 3]' > \"$4\"; exit 0", "exited 0 without a readable result"),
        ("exit 3", "exited 3 without a readable result"),
        ("kill -ABRT $$", "SIGABRT"),
        ("echo '{\"result_version\": 1, \"status\": \"passed\", \"stages\": [\"versions\"]}' > \"$4\"; exit 0",
         "stages[0] is not an object"),
        ("echo '{\"result_version\": 1, \"status\": \"passed\", \"measured_limits\": [17]}' > \"$4\"; exit 0",
         "'measured_limits' is list"),
        ("echo '{\"result_version\": 2, \"status\": \"passed\"}' > \"$4\"; exit 0", "'result_version' is 2"),
    ],
    ids=["garbage-stdout", "garbage-result", "result-not-an-object", "exit-3", "abort", "stages-not-objects",
         "limits-not-an-object", "another-result-version"],
)
def test_runner_output_that_is_not_a_result_is_a_runner_crash(models_dir, tmp_path, script, expected):
    # A stand-in interpreter: `python -I runner.py SPEC RESULT` -> $1 $2 $3 $4.
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    result, facts = smoke(models_dir, "cnn", timeout=30, python=fake)
    assert result is None
    assert facts["failure"]["class"] == "runner_crash" and expected in facts["failure"]["message"], facts
