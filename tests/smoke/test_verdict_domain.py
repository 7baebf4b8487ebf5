"""Verdicts on the model's own domain (issue 18, items 1 and 5).

A size the model itself refuses is skipped and reported, never a failure: a ConvNeXt
(`transformers` config, random weights, stride 32: height/width >= 32) and a HuBERT audio
encoder (its conv front end needs 400 samples) pass under both exporters through
`envctl certify --target host`, with the refused sizes as caveats in the certificate.
`envctl export --sizes` feeds exactly the user's sizes. A value-dependent branch outside
the example's span (`if x.max() > 1: x = x / 255`, traced from 0..1 images) fails as
value_dependent_branch naming its line; a branch no input can flip passes with a caveat.
The in-process tests load the smoke runner's modules by path, as the runner does.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.smoke_modules import load_smoke_module

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxruntime", "onnxscript", "transformers")),
    reason="needs torch, onnx, onnxruntime, onnxscript and transformers in this interpreter")

SUPPORT = Path(__file__).parents[1] / "support"
MODELS = ["convnext", "hubert", "scale_if_bytes", "always_true", "swin", "resnet_varargs"]


def _env():
    import os

    return dict(os.environ, COLUMNS="200", NO_COLOR="1")


def _envctl(cwd, *args, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "envctl", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=_env())
    assert "Traceback (most recent call last)" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from support.project import write_project

    root = tmp_path_factory.mktemp("domain")
    source = (SUPPORT / "domain_models.py").read_text()
    matrix = write_project(root, {"t": {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11",
                                        "torch": "2.13.0", "onnx": "*", "onnxruntime": "*", "protobuf": "*",
                                        "opset": 18, "exporters": ["torchscript", "dynamo"],
                                        "models": [f"domain_models:{m}" for m in MODELS]}},
                           files={"domain_models.py": source})
    return root, matrix


@pytest.fixture(scope="module")
def host_cert(project):
    """One `envctl certify --target host` over the models, both exporters."""
    root, matrix = project
    proc = _envctl(root, "certify", "--target", "host", "--matrix", str(matrix), "--json")
    cert = json.loads(proc.stdout)
    runs = {(r["model"].split(":")[1], r["exporter"]): r for r in cert["runs"]}
    return cert, runs, proc


@pytest.mark.slow
def test_probing_small_sizes_leaves_a_self_changing_model_as_it_was(host_cert):
    """Swin shrinks a layer's window to a small input and keeps it: after the domain probes at
    height 1, PyTorch would refuse every size it accepted before (and the export would fail)
    unless each probe leaves the model as it found it. Sizes above the export size are
    accepted by eager Swin and must not be reported as refused."""
    cert, runs, _ = host_cert
    run = runs[("swin", "torchscript")]
    export = next(s for s in run["stages"] if s["name"] == "export")
    assert export["status"] in ("passed", "warning"), export  # warning: the tracer warned (it does)
    failure = run.get("failure") or {}
    assert "broadcast shape" not in failure.get("message", ""), failure
    above = [c for c in cert.get("caveats", []) if c["model"].endswith(":swin") and "above" in c["message"]]
    assert above == [], above


@pytest.mark.slow
def test_a_forward_taking_star_inputs_exports_under_dynamo(host_cert):
    """`forward(self, *inputs)`: torch.export binds every input to one parameter, so the
    dynamic shapes must be nested the same way, or a healthy model fails to export."""
    _, runs, _ = host_cert
    for exporter in ("torchscript", "dynamo"):
        assert runs[("resnet_varargs", exporter)]["status"] == "passed", runs[("resnet_varargs", exporter)].get("failure")


def _cases(run):
    return next(s for s in run["stages"] if s["name"] == "inference")["details"]["cases"]


@pytest.mark.slow
@pytest.mark.parametrize("model, dim, low", [("convnext", "height", 32), ("convnext", "width", 32),
                                             ("hubert", "samples", 400)])
def test_sizes_the_model_refuses_are_skipped_and_reported_under_both_exporters(host_cert, model, dim, low):
    cert, runs, _ = host_cert
    for exporter in ("torchscript", "dynamo"):
        run = runs[(model, exporter)]
        assert run["status"] == "passed", (exporter, run["failure"])
        compared = [c for c in _cases(run) if not c.get("skipped")]
        assert all(c["sizes"][dim] >= low for c in compared), compared
        assert min(c["sizes"][dim] for c in compared) == low  # as low as the model goes
        assert run["fingerprint"]["sizes"][dim] == low  # the fingerprint case is inside the domain too
        pre = next(s for s in run["stages"] if s["name"] == "pre_export")["details"]
        assert pre["size_domain"][dim]["low"] == low
        if exporter == "dynamo":  # torch.export's own range constraints say the same
            export = next(s for s in run["stages"] if s["name"] == "export")["details"]
            assert export["range_constraints"][dim][0] == low
        noted = [c for c in cert["caveats"] if (c["model"], c["exporter"]) == (f"domain_models:{model}", exporter)]
        assert any(c["kind"] == "outside_domain" and f"sizes below {dim}={low} are not accepted by the model"
                   in c["message"] for c in noted), noted
    assert "return (model, example_inputs_tuple)" not in json.dumps(runs[(model, "torchscript")])


@pytest.mark.slow
def test_a_branch_beyond_the_examples_span_fails_naming_its_line(host_cert):
    cert, runs, proc = host_cert
    line = next(i for i, text in enumerate((SUPPORT / "domain_models.py").read_text().splitlines(), 1)
                if "if x.max() > 1:" in text)
    failure = runs[("scale_if_bytes", "torchscript")]["failure"]
    assert failure["class"] == "value_dependent_branch", failure
    assert f"domain_models.py:{line}" in failure["message"] and "scaled_255" in failure["message"]
    assert cert["result"] == "failed" and proc.returncode == 1
    # the branch no input can flip: a pass, with a caveat naming its line
    run = runs[("always_true", "torchscript")]
    assert run["status"] == "passed", run["failure"]
    line = next(i for i, text in enumerate((SUPPORT / "domain_models.py").read_text().splitlines(), 1)
                if "if bool((x.abs() >= 0).all()):" in text)
    assert {"kind": "branch_not_exercised", "where": f"domain_models.py:{line}",
            "model": "domain_models:always_true", "exporter": "torchscript"}.items() <= next(
        c for c in cert["caveats"] if c["kind"] == "branch_not_exercised" and "always_true" in c["model"]).items()
    groups = {c["group"] for c in _cases(run)}
    assert {"scaled_255", "negated", "scaled_1e3", "dtype_low", "dtype_high"} <= groups


@pytest.mark.slow
@pytest.mark.parametrize("model, sizes, exporter, dim", [("convnext", "32,64", "torchscript", "height"),
                                                         ("hubert", "400,1600", "dynamo", "samples")])
def test_sizes_given_replace_the_sweep(project, tmp_path, model, sizes, exporter, dim):
    root, matrix = project
    proc = _envctl(root, "export", f"domain_models:{model}", "--out", str(tmp_path / "m.onnx"), "--path", str(root),
                   "--exporter", exporter, "--sizes", sizes, "--matrix", str(matrix), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["status"] == "passed", report["failure"]
    given = {int(s) for s in sizes.split(",")}
    swept = [c for c in report["sizes"] if c["group"] == "random"]
    assert swept and all(set(c["sizes"].values()) <= given for c in swept), swept
    assert {c["sizes"][dim] for c in swept} == given
    assert not [c for c in report["caveats"] if c["where"] == dim]  # nothing refused, nothing skipped


# --- in process: the domain search, the sweep inside it, the branch inputs, the certificate ---

@pytest.fixture(scope="module")
def smoke():
    for name in ("envctl_smoke_builtins", "envctl_smoke_inputs", "envctl_smoke_models"):
        load_smoke_module(name)
    return load_smoke_module("envctl_smoke_models"), load_smoke_module("envctl_smoke_domain")


def _stride32(models):
    """A hand-written convnet with 5 stride-2 convs (no padding): 32 pixels at least."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 4, 4, 2, stride=2) for i in range(5)]).eval()
    case = {"model": net, "inputs": (torch.rand(1, 3, 64, 48),), "input_names": ["x"], "output_names": None,
            "dynamic_axes": {"x": {0: "batch", 2: "h", 3: "w"}}, "samples": []}
    case["domains"], case["limits"] = sys.modules["envctl_smoke_inputs"].analyse(case, [])
    return case


def test_bisection_finds_the_smallest_accepted_size_and_the_sweep_stays_inside(smoke):
    models, domain = smoke
    case = _stride32(models)
    details = {}
    domain.learn(details, case, [1, 2, 5], False, 0, "cpu", models)
    found = case["size_domain"]
    assert (found["h"]["low"], found["w"]["low"], found["batch"]["low"]) == (32, 32, 1)
    assert found["h"]["probes"] <= 1 + domain.BISECT_STEPS
    assert any("sizes below h=32 are not accepted by the model (h=1, 2, 5" in c["message"] for c in details["caveats"])
    bounds = domain.limit(found, {})
    sweep = models.sweep(case, [1, 2, 5], case["limits"], bounds)
    assert sweep and all(c["h"] >= 32 and c["w"] >= 32 for c in sweep)
    assert min(c["h"] for c in sweep) == 32 and max(c["h"] for c in sweep) == 256  # 4x the export height
    assert models.fingerprint_sizes(case, [1, 2, 5], bounds) == {"batch": 2, "h": 32, "w": 32}
    assert models.inside({"batch": 2, "h": 32}, bounds) and not models.inside({"h": 16}, bounds)
    # torch.export's range constraints narrow the sweep further, and say so
    narrowed = domain.limit(found, {"h": [40, 128]})
    assert all(40 <= c["h"] <= 128 for c in models.sweep(case, [1, 2, 5], case["limits"], narrowed))
    assert "torch.export certified h in [40, 128] only" in domain.range_caveats(case, {"h": [40, 128]})[0]["message"]
    # its 0/1 specialization (dynamic dims >= 2) is no restriction of the model's: batch 1 stays
    assert domain.limit(found, {"batch": [2, None]})["batch"][0] == 1 and not domain.range_caveats(
        case, {"batch": [2, None]})


def test_an_eager_probe_leaves_attributes_and_buffers_as_they_were(smoke):
    """A forward that keeps state (a clamped window, a call counter, a buffer accumulated in
    place, a buffer replaced) is run by the probes as often as they like: the model the
    export and the reference see afterwards is the one the user built."""
    import torch
    from torch import nn

    _, domain = smoke

    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.window, self.calls = 4, 0
            self.register_buffer("total", torch.zeros(2))
            self.register_buffer("last", torch.zeros(2))

        def forward(self, x):
            self.window = min(self.window, x.shape[-1])
            self.calls += 1
            self.total += x.sum()
            self.last = x[0, :2].clone()
            return x[..., :self.window] * 2 + self.total.sum()

    model = Stateful().eval()
    inner = nn.Sequential(model)
    out = domain.eager(inner, [torch.ones(1, 1)])
    assert out.shape == (1, 1)
    assert (model.window, model.calls) == (4, 0) and model.total.tolist() == [0.0, 0.0]
    assert model.last.tolist() == [0.0, 0.0] and not hasattr(model, "_probe")
    assert domain.eager(inner, [torch.ones(1, 8)]).shape == (1, 4)  # the window the user built
    assert model.total.tolist() == [0.0, 0.0]


def test_exact_sizes_are_fed_as_given_and_refused_ones_reported_not_replaced(smoke):
    models, domain = smoke
    case = _stride32(models)
    details = {}
    domain.learn(details, case, [16, 32, 64], True, 0, "cpu", models)
    bounds = domain.limit(case["size_domain"], {})
    sweep = models.sweep(case, [16, 32, 64], case["limits"], bounds, exact=True)
    assert {c["h"] for c in sweep} == {32, 64} and {c["batch"] for c in sweep} <= {16, 32, 64}
    assert models.fingerprint_sizes(case, [16, 32, 64], bounds, exact=True) == {"batch": 16, "h": 32, "w": 32}
    assert any("(h=16:" in c["message"] for c in details["caveats"])
    details = {}
    domain.learn(details, case, [4, 8], True, 0, "cpu", models)  # none accepted: nothing to sweep, said so
    bounds = domain.limit(case["size_domain"], {})
    assert models.sweep(case, [4, 8], case["limits"], bounds, exact=True) == []
    assert models.fingerprint_sizes(case, [4, 8], bounds, exact=True) is None
    assert any("(h=4, 8:" in c["message"] for c in details["caveats"])


def test_branch_inputs_go_beyond_the_example_within_declared_ranges(smoke):
    import torch

    _, domain = smoke
    inputs = sys.modules["envctl_smoke_inputs"]
    x, ids = torch.rand(2, 3), torch.randint(1, 300, (2, 5))

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(300, 4)

        def forward(self, x, ids):
            return self.emb(ids).sum(1) + x.sum(1, keepdim=True)
    case = {"model": Two(), "inputs": (x, ids), "input_names": ["x", "ids"], "output_names": None,
            "dynamic_axes": {"x": {0: "batch"}, "ids": {0: "batch"}}, "ranges": {}}
    case["domains"], _ = inputs.analyse(case, [])
    got = {g: domain.branch_inputs(case, g) for g in inputs.BRANCH}
    assert torch.allclose(got["scaled_255"][0], x * 255) and float(got["negated"][0].max()) <= 0
    assert float(got["dtype_high"][0].max()) == torch.finfo(torch.float32).max
    assert (int(got["dtype_low"][1].min()), int(got["dtype_high"][1].max())) == (0, 299)  # the vocabulary's edges
    case["ranges"] = {"x": [0.0, 10.0]}
    assert float(domain.branch_inputs(case, "scaled_1e3")[0].max()) == 10.0  # clipped to what was declared
    assert float(domain.branch_inputs(case, "negated")[0].min()) == 0.0


CAVEAT = {"model": "m:make", "exporter": "torchscript", "kind": "branch_not_exercised",
          "message": "branch at m.py:7 not exercised: no input tried made ONNX differ", "where": "m.py:7"}


def test_caveats_are_typed_in_the_certificate_and_shown_by_status_html_and_junit(tmp_path):
    from support.project import write_project
    from typer.testing import CliRunner

    from envctl.certify.certificate import SCHEMA_VERSION, Certificate, CertificateError
    from envctl.cli import app
    from envctl.suite.certify_all import SuiteResult, TargetResult
    from envctl.suite.junit import junit_xml

    data = {"certificate_version": SCHEMA_VERSION, "target": "t", "result": "passed", "certified": "run",
            "created_at": "2026-12-06T04:00:00+00:00", "runs": [
                {"model": "m:make", "exporter": "torchscript", "status": "passed", "stages": [], "caveats": [
                    {k: CAVEAT[k] for k in ("kind", "message", "where")}]}], "caveats": [CAVEAT]}
    cert = Certificate.from_json(data)
    assert SCHEMA_VERSION == 2 and cert.caveats[0].where == "m.py:7" and cert.to_json()["caveats"] == [CAVEAT]
    for bad, why in (("x", "'caveats' is str"), ([dict(CAVEAT, kind="meh")], "'kind' is 'meh'"),
                     ([{k: v for k, v in CAVEAT.items() if k != "message"}], "caveats[0].'message'")):
        with pytest.raises(CertificateError, match=why.replace("(", r"\(").replace("[", r"\[")):
            Certificate.from_json(dict(data, caveats=bad))
    matrix = write_project(tmp_path, {"t": {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11",
                                            "torch": "2.13.0", "onnx": "*", "onnxruntime": "*", "protobuf": "*",
                                            "opset": 18, "exporters": ["torchscript"], "models": ["m:make"]}})
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "t.json").write_text(json.dumps(data))
    runner = CliRunner()
    shown = runner.invoke(app, ["status", "--matrix", str(matrix)], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert shown.exit_code == 0 and "(1 caveat)" in shown.output, shown.output
    assert "caveat t: m:make [torchscript]: branch at m.py:7 not exercised" in " ".join(shown.output.split())
    as_json = json.loads(runner.invoke(app, ["status", "--matrix", str(matrix), "--json"]).stdout)
    assert as_json["targets"][0]["certificate"]["caveats"] == ["m:make [torchscript]: " + CAVEAT["message"]]
    page = tmp_path / "r.html"
    assert runner.invoke(app, ["report", "--html", str(page), "--matrix", str(matrix)]).exit_code == 0
    assert "<h3>Caveats</h3>" in page.read_text() and "branch at m.py:7 not exercised" in page.read_text()
    xml = junit_xml(SuiteResult(matrix, [TargetResult("t", "passed", 1.0, certificate=cert, platform="linux-64",
                                                      models=("m:make",), exporters=("torchscript",))], [], 1.0))
    assert "caveat (branch_not_exercised): branch at m.py:7 not exercised" in xml
    from lxml import etree

    xsd = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "data" / "jenkins-junit-10.xsd")))
    xsd.assertValid(etree.fromstring(xml.encode()))  # Jenkins' schema takes a testcase's system-out


def test_a_runner_result_with_a_malformed_caveat_is_refused_naming_the_field():
    from envctl.smoke.envctl_smoke_protocol import ProtocolError as RunnerResultError, RunnerResult

    run = {"model": "m:make", "exporter": "dynamo", "status": "passed", "stages": []}
    good = RunnerResult.from_json({"result_version": 1, "status": "passed", "runs": [dict(run, caveats=[
        {"kind": "outside_domain", "message": "sizes below h=32 ...: skipped", "where": "h"}])]})
    assert [(c.model, c.exporter, c.kind, c.where) for c in good.caveats] == [("m:make", "dynamo", "outside_domain", "h")]
    for caveats, field in (([{"kind": "guess", "message": "x"}], "runs[0].caveats[0].'kind'"),
                           ([{"kind": "outside_domain"}], "runs[0].caveats[0].'message'"),
                           ("none", "runs[0].'caveats'")):
        with pytest.raises(RunnerResultError) as err:
            RunnerResult.from_json({"result_version": 1, "status": "passed", "runs": [dict(run, caveats=caveats)]})
        assert field in str(err.value), str(err.value)
