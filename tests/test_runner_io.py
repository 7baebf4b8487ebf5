"""The host reads the runner's result only through RunnerResult: a wrong shape is a named error, never a crash."""

from __future__ import annotations

import re

import pytest

from envctl.certify.runner_io import RunnerResult, RunnerResultError

GOOD = {"status": "passed", "runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": []}],
        "stages": [{"name": "versions"}], "failure": None, "versions": {"torch": "2.13.0"},
        "providers_available": ["CPUExecutionProvider"]}


def test_a_good_result_reads():
    result = RunnerResult.from_json(GOOD | {"measured_limits": {"max_opset": 23, "max_ir": 11}})
    assert result.status == "passed" and result.runs[0]["model"] == "cnn" and result.versions == {"torch": "2.13.0"}
    assert result.stages == [{"name": "versions"}] and result.measured_limits == {"max_opset": 23, "max_ir": 11}


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
    ({"stages": {"name": "versions"}}, "stages"),
    ({"stages": 5}, "stages"),
    ({"stages": ["versions"]}, "stages"),
    ({"stages": [{"status": "passed"}]}, "stages"),
    ({"stages": [{"name": 3}]}, "stages"),
    ({"runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": "export"}]}, "runs[0].'stages'"),
    ({"runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": ["export"]}]}, "runs[0].stages"),
    ({"runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": [{"status": "ok"}]}]},
     "runs[0].stages"),
    ({"measured_limits": [17, 10]}, "measured_limits"),
    ({"measured_limits": "opset 17"}, "measured_limits"),
    ({"failure": "boom"}, "failure"),
    ({"failure": {"message": "no class"}}, "class"),
    ({"versions": ["2.13"]}, "versions"),
    ({"providers_available": "CPU"}, "providers_available"),
])
def test_every_wrong_shape_is_a_named_error(change, named):
    with pytest.raises(RunnerResultError, match=re.escape(named)):
        RunnerResult.from_json(GOOD | change)


def test_not_an_object():
    for bad in (None, [], "passed", 3):
        with pytest.raises(RunnerResultError):
            RunnerResult.from_json(bad)
