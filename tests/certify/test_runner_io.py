"""The runner protocol (envctl/smoke/envctl_smoke_protocol.py): the host reads the runner's result only through
RunnerResult, the runner reads its spec only through Spec; a wrong shape either way is a named error, never a crash."""

from __future__ import annotations

import re

import pytest

from envctl.smoke.envctl_smoke_protocol import ProtocolError, RunnerResult

GOOD = {"result_version": 1, "status": "passed", "runs": [{"model": "cnn", "exporter": "dynamo", "status": "passed", "stages": []}],
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
    with pytest.raises(ProtocolError, match=re.escape(named)):
        RunnerResult.from_json(GOOD | change)


def test_not_an_object():
    for bad in (None, [], "passed", 3):
        with pytest.raises(ProtocolError):
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

    with pytest.raises(ProtocolError, match=re.escape(named)):
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


# ---------------------------------------------------------------- the spec, the other way across

SPEC = {"spec_version": 1, "target": "t", "opset": 18, "exporters": ["torchscript"], "models": ["cnn"]}


def test_a_spec_reads_and_writes_back_the_same():
    from envctl.smoke.envctl_smoke_protocol import Spec

    spec = Spec.from_json(SPEC)
    assert (spec.target, spec.opset, spec.exporters, spec.sizes, spec.required_provider) == (
        "t", 18, ["torchscript"], [1, 2, 5], None)
    assert Spec.from_json(spec.to_json()) == spec
    assert Spec.from_json(SPEC | {"sizes": None}).sizes == [1, 2, 5]  # null: the default


@pytest.mark.parametrize("change, named", [
    ({"spec_version": None}, "spec_version"),
    ({"spec_version": 2}, "spec_version"),  # another envctl's runner: said, not guessed at
    ({"opset": "18"}, "'opset'"),
    ({"opset": True}, "'opset'"),
    ({"exporters": ["tflite"]}, "'exporters'"),
    ({"exporters": "dynamo"}, "'exporters'"),
    ({"models": ["cnn", 3]}, "'models'"),
    ({"providers": []}, "'providers'"),
    ({"sizes": [0, 2]}, "'sizes'"),
    ({"seed": -1}, "'seed'"),
    ({"device": "tpu"}, "'device'"),
    ({"simplify": "yes"}, "'simplify'"),
    ({"tolerances": {"atol": "tight"}}, "'tolerances'"),
    ({"out": "model.pt"}, "'out'"),
    ({"exact_sizes": 1}, "'exact_sizes'"),
    ({"timeout": 900}, "'timeout'"),  # not a spec field (a bundle's devcert.py takes it off first)
])
def test_every_wrong_spec_is_a_named_error_both_ways(change, named):
    from dataclasses import replace

    from envctl.smoke.envctl_smoke_protocol import Spec

    with pytest.raises(ProtocolError, match=re.escape(named)):
        Spec.from_json(SPEC | change)
    field = next(iter(change))
    if field in Spec.__dataclass_fields__:  # writing checks the same: a bad spec never reaches the runner
        with pytest.raises(ProtocolError, match=re.escape(named)):
            replace(Spec.from_json(SPEC), **change).to_json()


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_a_result_of_another_version_is_refused_naming_it(version):
    data = GOOD | {"result_version": version}
    if version is None:
        del data["result_version"]
    with pytest.raises(ProtocolError, match="result_version"):
        RunnerResult.from_json(data)


def test_the_typed_result_keeps_its_failure_typed_and_writes_back():
    failed = RunnerResult.from_json(GOOD | {"status": "failed", "failure": {
        "class": "numeric_mismatch", "stage": "inference", "message": "x", "remedy": "y", "sizes": [2]}})
    assert failed.failure is not None and (failed.failure.klass, failed.failure.details) == ("numeric_mismatch", {"sizes": [2]})
    assert failed.failure.to_json()["class"] == "numeric_mismatch" and failed.to_json() == failed.raw
    with pytest.raises(ProtocolError, match=re.escape("failure.'message'")):
        RunnerResult.from_json(GOOD | {"failure": {"class": "timeout", "message": 3}})


def test_a_certificate_of_a_newer_version_is_refused_and_an_old_one_reads():
    from envctl.certify.certificate import SCHEMA_VERSION, Certificate, CertificateError

    body = {"result": "passed", "target": "t", "runs": []}
    assert Certificate.from_json(body | {"certificate_version": 1}).certificate_version == 1
    with pytest.raises(CertificateError, match="certificate_version"):
        Certificate.from_json(body | {"certificate_version": SCHEMA_VERSION + 1})
    with pytest.raises(CertificateError, match=re.escape("failure")):
        Certificate.from_json(body | {"failure": {"stage": "export"}})


def test_host_and_device_assemble_the_same_certificate_body():
    """One function (envctl_smoke_certificate.assemble) for `envctl certify` and a bundle's devcert.py:
    the failure classes, spec and runner records come out the same; what it writes reads back."""
    from envctl.smoke.envctl_smoke_certificate import Certificate, Certification, LockRef, assemble
    from envctl.smoke.envctl_smoke_protocol import FAILURE_CLASSES, Failure, Spec

    result = RunnerResult.from_json(GOOD | {"measured_limits": {"max_opset": 23, "max_ir": 11}})
    made = [assemble(target="t", envctl_version="0", certified=how, host={"hostname": "h"}, lock=LockRef("l", "ab"),
                     environment={"prefix": "/p"}, spec=Spec.from_json(SPEC), result=result,
                     process={"exit_code": 0, "seconds": 1.0, "output_tail": ""}, seconds=2.0)
            for how in (Certification.RUN, Certification.DEVICE)]
    run, device = (Certificate.from_json(c.to_json()) for c in made)
    assert run.passed and device.passed and run.spec == device.spec and run.spec["device"] == "cpu"
    assert run.extra["measured_limits"] == {"max_opset": 23, "max_ir": 11} == device.extra["measured_limits"]
    hung = assemble(target="t", envctl_version="0", certified=Certification.DEVICE, host={}, lock=None,
                    environment={}, spec=Spec.from_json(SPEC), result=None, seconds=1.0,
                    process={"exit_code": None, "failure": Failure.of("timeout", "did not finish").to_json()})
    assert hung.failure is not None and hung.failure.remedy == FAILURE_CLASSES["timeout"]["remedy"]
    assert not Certificate.from_json(hung.to_json()).passed
