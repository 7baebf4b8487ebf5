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
    result = RunnerResult.from_json(GOOD | {"measured_limits": {"max_opset": 23, "max_ir": 11}})
    assert result.status == "passed" and result.runs[0]["model"] == "cnn" and result.versions == {"torch": "2.13.0"}
    assert result.placement is not None and result.placement.device == "cpu"
    assert result.placement.as_spec() == GOOD["placement"]
    # A runner that stopped before torch was imported reports no placement; that is not a shape error.
    assert RunnerResult.from_json({k: v for k, v in GOOD.items() if k != "placement"}).placement is None
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


PRECISION = {"precision_limited": True, "onnx_vs_torch32": 0.375, "torch32_vs_torch64": 0.25,
             "onnx_vs_torch64": 0.125, "factor": 2.0, "output": "variance"}


def _run(**fields):
    return {"model": "m:f", "exporter": "dynamo", "status": "passed", "stages": [], **fields}


@pytest.mark.parametrize("fields, named", [
    ({"precision": "limited"}, "runs[0].precision"),
    ({"precision": PRECISION | {"precision_limited": "yes"}}, "runs[0].precision.precision_limited"),
    ({"precision": {k: v for k, v in PRECISION.items() if k != "torch32_vs_torch64"}},
     "runs[0].precision.torch32_vs_torch64"),
    ({"precision": PRECISION | {"onnx_vs_torch64": "0.1"}}, "runs[0].precision.onnx_vs_torch64"),
    ({"precision": PRECISION | {"factor": True}}, "runs[0].precision.factor"),
    ({"pad_notes": "pads differ"}, "runs[0].pad_notes"),
    ({"pad_notes": [3]}, "runs[0].pad_notes"),
])
def test_verdict_fields_are_checked_by_the_runner_reader_and_the_certificate(fields, named):
    """runs[].precision (the three numbers of a float64-judged comparison) and pad_notes:
    typed on the host, in the runner's result and in a certificate (format 2)."""
    from envctl.certify.certificate import Certificate, CertificateError

    with pytest.raises(RunnerResultError, match=re.escape(named)):
        RunnerResult.from_json(GOOD | {"runs": [_run(**fields)]})
    with pytest.raises(CertificateError, match=re.escape(named)):
        Certificate.from_json({"result": "passed", "target": "t", "runs": [_run(**fields)]})


def test_verdict_fields_read_typed():
    from envctl.certify.certificate import SCHEMA_VERSION, Certificate

    good = {"result": "passed", "target": "t", "runs": [_run(precision=PRECISION, pad_notes=["pads differ by 0.3"])]}
    RunnerResult.from_json(GOOD | {"runs": good["runs"]})
    cert = Certificate.from_json(good)
    [(model, exporter, p)] = cert.precision
    assert (model, exporter, p.precision_limited, p.onnx_vs_torch32, p.torch32_vs_torch64, p.onnx_vs_torch64) == (
        "m:f", "dynamo", True, 0.375, 0.25, 0.125)
    assert SCHEMA_VERSION == 2 and Certificate.from_json(cert.to_json()).precision == cert.precision
    assert Certificate.from_json({"result": "passed", "target": "t", "runs": [_run()]}).precision == []  # format 1
