"""The host reads the runner's result only through RunnerResult: a wrong shape is a named error, never a crash."""

from __future__ import annotations

import re

import pytest

from envctl.certify.runner_io import RunnerResult, RunnerResultError

GOOD = {"status": "passed", "runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": []}],
        "stages": [{"name": "versions"}], "failure": None, "versions": {"torch": "2.13.0"},
        "providers_available": ["CPUExecutionProvider"],
        "placement": {"device": "cpu", "providers": ["CPUExecutionProvider"], "required_provider": "CPUExecutionProvider"}}


def test_a_good_result_reads():
    result = RunnerResult.from_json(GOOD)
    assert result.status == "passed" and result.runs[0]["model"] == "cnn" and result.versions == {"torch": "2.13.0"}
    assert result.placement is not None and result.placement.device == "cpu"
    assert result.placement.as_spec() == GOOD["placement"]
    # A runner that stopped before torch was imported reports no placement; that is not a shape error.
    assert RunnerResult.from_json({k: v for k, v in GOOD.items() if k != "placement"}).placement is None


@pytest.mark.parametrize("change, named", [
    ({"status": None}, "status"),
    ({"status": "ok"}, "status"),
    ({"runs": {"cnn": 1}}, "runs"),
    ({"runs": [["cnn"]]}, "runs[0]"),
    ({"runs": [{"exporter": "dynamo", "status": "passed"}]}, "model"),
    ({"runs": [{"model": "cnn", "exporter": 3, "status": "passed"}]}, "exporter"),
    ({"runs": [{"model": "cnn", "exporter": "dynamo", "status": "fine"}]}, "status"),
    ({"runs": [{"model": "cnn", "exporter": "dynamo", "status": "failed", "failure": "boom"}]}, "failure"),
    ({"stages": "versions"}, "stages"),
    ({"failure": "boom"}, "failure"),
    ({"failure": {"message": "no class"}}, "class"),
    ({"versions": ["2.13"]}, "versions"),
    ({"providers_available": "CPU"}, "providers_available"),
    ({"placement": "cpu"}, "placement"),
    ({"placement": {"device": "auto", "providers": ["CPUExecutionProvider"], "required_provider": "CPUExecutionProvider"}},
     "placement.device"),  # "auto" is the runner's to settle, never an answer
    ({"placement": {"device": "cuda", "providers": [], "required_provider": "CUDAExecutionProvider"}}, "placement.providers"),
    ({"placement": {"device": "cuda", "providers": ["CUDAExecutionProvider"]}}, "required_provider"),
])
def test_every_wrong_shape_is_a_named_error(change, named):
    with pytest.raises(RunnerResultError, match=re.escape(named)):
        RunnerResult.from_json(GOOD | change)


def test_not_an_object():
    for bad in (None, [], "passed", 3):
        with pytest.raises(RunnerResultError):
            RunnerResult.from_json(bad)
