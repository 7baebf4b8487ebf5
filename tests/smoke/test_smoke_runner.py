"""The smoke runner, run as the host runs it: `python -I runner.py SPEC RESULT` in a subprocess.

Uses this interpreter's torch 2.13 CPU, onnx, onnxruntime and onnxscript. Exports take
seconds, so the specs are few and shared through module-scoped fixtures.
"""
import ast
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from envctl.smoke import BUILTIN_MODELS, RUNNER_PATH
from support import team_models
from support.smoke_modules import load_smoke_module

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxruntime", "onnxscript")),
    reason="needs torch, onnx, onnxruntime and onnxscript in this interpreter")

BUILTINS = list(BUILTIN_MODELS)

USER_MODULE = team_models.SOURCE


def _bare(version):
    return version.split("+")[0]


def run_runner(tmp_path, spec):
    spec = dict({"spec_version": 1, "target": "test", "workdir": str(tmp_path / "work")}, **spec)
    spec_file, result_file = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-I", str(RUNNER_PATH), str(spec_file), str(result_file)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result_file.read_text())


def runs_by(result):
    return {(r["model"], r["exporter"]): r for r in result["runs"]}


def stage(run, name):
    return next(s for s in run["stages"] if s["name"] == name)


@pytest.fixture(scope="module")
def main_result(tmp_path_factory):
    """Built-ins + user models (raising, traced branch, frozen batch), both exporters, opset 17."""
    tmp = tmp_path_factory.mktemp("smoke_main")
    (tmp / "models").mkdir()
    (tmp / "models" / "smoke_user_models.py").write_text(USER_MODULE)
    # the raising model comes first: everything after it must still run
    models = ["smoke_user_models:broken"] + BUILTINS + ["smoke_user_models:branchy", "smoke_user_models:frozen"]
    return run_runner(tmp, {
        "opset": 17, "exporters": ["torchscript", "dynamo"], "providers": ["CPUExecutionProvider"],
        "required_provider": "CPUExecutionProvider", "device": "cpu",
        # installed versions without their local label: "2.13.0" must match "2.13.0+cpu"
        "expected_versions": {"torch": _bare(metadata.version("torch")), "onnx": metadata.version("onnx")},
        "models": models, "model_paths": [str(tmp / "models")],
        "tolerances": {"atol": 1e-4, "rtol": 1e-3}, "sizes": [1, 2, 5], "seed": 0, "simplify": None})


@pytest.mark.slow
def test_versions_recorded_and_matching(main_result):
    versions = main_result["stages"][0]
    assert versions["name"] == "versions" and versions["status"] in ("passed", "warning")
    v = main_result["versions"]
    assert v["torch"] == metadata.version("torch") and v["onnxruntime"] == metadata.version("onnxruntime")
    for key in ("python", "onnx", "protobuf", "numpy", "onnxscript", "cuda_available"):
        assert key in v
    assert "CPUExecutionProvider" in main_result["providers_available"]
    assert main_result["complete"] is True and main_result["in_progress"] is None


@pytest.mark.slow
@pytest.mark.parametrize("model", BUILTINS)
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_builtins_pass_with_numbers(main_result, model, exporter):
    run = runs_by(main_result)[(model, exporter)]
    assert run["status"] == "passed", run["failure"]
    assert [s["name"] for s in run["stages"]] == ["pre_export", "export", "checker", "session",
                                                  "inference", "simplify"]
    assert stage(run, "simplify")["status"] == "skipped"
    assert run["ir_version"] >= 8 and run["opset_written"] in (17, 18)
    if run["opset_written"] != 17:  # dynamo builds at 18; a failed down-conversion must be visible
        assert stage(run, "export")["status"] == "warning"
    assert all(Path(f).is_file() for f in run["files"]) and run["files"][0].endswith("model.onnx")
    export = stage(run, "export")["details"]
    if exporter == "dynamo":  # external_data=False: one self-contained file
        assert export["external_data_kwarg"] is False and export["sidecar_written"] is False
        assert len(run["files"]) == 1
    assert stage(run, "session")["details"]["providers"][0] == "CPUExecutionProvider"
    inference = stage(run, "inference")["details"]
    batches = sorted({c["sizes"]["batch"] for c in inference["cases"]})
    assert batches == [1, 2, 5]
    for case in inference["cases"]:
        assert case["passed"]
        for out in case["outputs"]:
            assert out["shape"] == out["ort_shape"] and out["shape"][0] == case["sizes"]["batch"]
            assert 0 <= out["max_abs"] <= 1e-4 and out["max_rel"] >= 0
    if model != "cnn":  # sequence is dynamic too, and differs from batch in the sweep
        assert {c["sizes"]["seq"] for c in inference["cases"]} >= {1, 2, 5}
        assert any(c["sizes"]["seq"] != c["sizes"]["batch"] for c in inference["cases"])
    fp = run["fingerprint"]
    assert fp["sizes"] and all(v == 2 for v in fp["sizes"].values())
    assert len(fp["outputs"][0]["samples"]) == 16 and fp["outputs"][0]["l2"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", fp["input_sha256"])


@pytest.mark.slow
def test_builtins_pass_at_opset_18(tmp_path):
    """18 is the dynamo exporter's native opset: no down-conversion, so exactly 18 is written."""
    result = run_runner(tmp_path, {"opset": 18, "models": BUILTINS})
    assert result["status"] == "passed", result["failure"]
    assert len(result["runs"]) == 6
    for run in result["runs"]:
        assert run["status"] == "passed" and run["opset_written"] == 18
        assert stage(run, "export")["details"]["opset_imports"]["ai.onnx"] == 18
        assert all(c["passed"] for c in stage(run, "inference")["details"]["cases"])


@pytest.mark.slow
def test_fingerprints_agree_across_exporters(main_result):
    """Same seed => same inputs and weights, so both exporters' ORT numbers must agree."""
    runs = runs_by(main_result)
    for model in BUILTINS:
        a, b = runs[(model, "torchscript")]["fingerprint"], runs[(model, "dynamo")]["fingerprint"]
        assert a["input_sha256"] == b["input_sha256"]
        for oa, ob in zip(a["outputs"], b["outputs"]):
            assert oa["shape"] == ob["shape"]
            assert oa["samples"] == pytest.approx(ob["samples"], abs=1e-4, rel=1e-3)


@pytest.mark.slow
def test_raising_callable_is_model_error_and_others_continue(main_result):
    runs = runs_by(main_result)
    for exporter in ("torchscript", "dynamo"):
        run = runs[("smoke_user_models:broken", exporter)]
        assert run["status"] == "failed"
        assert run["failure"]["class"] == "model_error" and run["failure"]["stage"] == "pre_export"
        assert "checkpoint /nowhere/model.pt not found" in run["failure"]["message"]
        assert "RuntimeError" in stage(run, "pre_export")["message"]  # traceback tail kept
        assert run["failure"]["remedy"]
        assert [s["status"] for s in run["stages"][1:]] == ["skipped"] * 5
    # the models listed after the broken one still ran, and passed
    assert [runs[(m, e)]["status"] for m in BUILTINS for e in ("torchscript", "dynamo")] == ["passed"] * 6
    assert main_result["status"] == "failed"
    assert main_result["failure"]["class"] == "model_error"  # the first failure in spec order


@pytest.mark.slow
def test_traced_shape_branch_is_dynamic_axis_ignored_naming_the_line(main_result):
    """`if x.shape[0] > 1` traced at batch 2: only other batch sizes differ, and the tracer's
    warning names the line: a frozen axis there, not an unexplained numeric mismatch."""
    run = runs_by(main_result)[("smoke_user_models:branchy", "torchscript")]
    assert run["status"] == "failed"
    assert run["failure"]["class"] == "dynamic_axis_ignored" and run["failure"]["stage"] == "inference"
    line = next(i for i, text in enumerate(USER_MODULE.splitlines(), 1) if "if x.shape[0] > 1" in text)
    assert f"smoke_user_models.py:{line}" in run["failure"]["message"], run["failure"]
    assert "torch.cond" in run["failure"]["remedy"]
    assert "TracerWarning" in stage(run, "export")["message"]  # the trace said so at export
    cases = {c["sizes"]["batch"]: c for c in stage(run, "inference")["details"]["cases"] if c["group"] == "random"}
    assert cases[2]["passed"] and not cases[1]["passed"]  # exported at batch 2: only batch 1 differs
    assert cases[1]["outputs"][0]["max_abs"] > 1e-4
    # dynamo either refuses the shape guard or exports the wrong branch; it must not pass
    assert runs_by(main_result)[("smoke_user_models:branchy", "dynamo")]["status"] == "failed"


@pytest.mark.slow
def test_frozen_batch_is_dynamic_axis_ignored(main_result):
    run = runs_by(main_result)[("smoke_user_models:frozen", "torchscript")]
    assert run["failure"]["class"] == "dynamic_axis_ignored", run["failure"]
    assert run["failure"]["remedy"]
    cases = {c["sizes"]["batch"]: c for c in stage(run, "inference")["details"]["cases"]}
    assert cases[1]["outputs"][0]["ort_shape"] == [2, 3] and cases[1]["outputs"][0]["shape"] == [1, 3]
    assert runs_by(main_result)[("smoke_user_models:frozen", "dynamo")]["status"] == "failed"


@pytest.mark.slow
def test_required_cuda_provider_on_cpu_onnxruntime_is_ep_fallback(tmp_path):
    result = run_runner(tmp_path, {
        "exporters": ["torchscript"], "models": ["cnn"], "simplify": "onnxslim",
        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "required_provider": "CUDAExecutionProvider"})
    run = result["runs"][0]
    assert result["status"] == "failed" and run["status"] == "failed"
    assert run["failure"]["class"] == "ep_fallback" and run["failure"]["stage"] == "session"
    assert "onnxruntime-gpu" in run["failure"]["remedy"]
    assert stage(run, "session")["details"]["providers"] == ["CPUExecutionProvider"]
    # the stages after the fallback still ran, on CPU, so the report keeps the numbers
    assert stage(run, "inference")["status"] == "passed"
    simplify = stage(run, "simplify")  # onnxslim is a test requirement: it ran, and its session fell back too
    assert simplify["details"]["tool"] == "onnxslim" and simplify["status"] == "failed", simplify
    assert simplify["details"]["session"]["providers"] == ["CPUExecutionProvider"]


# A simplifier that changes what the model computes (and, like onnxsim, vouches for itself).
BREAKING_SIMPLIFIER = """
import numpy as np
import onnx
from onnx import numpy_helper

__version__ = "0-breaking"

def simplify(model):
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2.0, init.name))
    return model, True
"""
BLOCKED = "raise ImportError('blocked for this test')\n"


def simplify_run(tmp_path, mode, modules=None):
    folder = tmp_path / "mods"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (modules or {}).items():  # model_paths come first on the runner's sys.path
        (folder / f"{name}.py").write_text(text)
    result = run_runner(tmp_path, {"exporters": ["torchscript"], "models": ["cnn"], "simplify": mode,
                                   "model_paths": [str(folder)]})
    return result, result["runs"][0], stage(result["runs"][0], "simplify")


@pytest.mark.slow
def test_simplify_with_a_real_simplifier_is_verified_again_against_pytorch(tmp_path):
    result, run, simplify = simplify_run(tmp_path, "onnxslim")
    assert result["status"] == "passed" and simplify["status"] == "passed", simplify
    details = simplify["details"]
    assert details["tool"] == "onnxslim" and details["version"] == metadata.version("onnxslim")
    assert Path(details["path"]).is_file() and details["nodes_after"] <= details["nodes_before"]
    # the simplified model went through the checker, a session and inference at every size again
    assert details["checker"] and details["session"]["providers"] == ["CPUExecutionProvider"]
    cases = details["inference"]["cases"]
    assert [c["sizes"] for c in cases] == [c["sizes"] for c in stage(run, "inference")["details"]["cases"]]
    assert all(c["passed"] and c["outputs"][0]["max_abs"] < 1e-4 for c in cases)


@pytest.mark.slow
def test_a_simplifier_that_breaks_the_model_fails_against_pytorch(tmp_path):
    # Its own check says fine; only comparing the simplified model with PyTorch again catches it.
    result, run, simplify = simplify_run(tmp_path, "onnxsim", {"onnxsim": BREAKING_SIMPLIFIER})
    assert stage(run, "inference")["status"] == "passed"  # the plain export was right
    assert simplify["status"] == "failed" and run["failure"]["stage"] == "simplify"
    assert run["failure"]["class"] == "numeric_mismatch" and "after onnxsim 0-breaking" in run["failure"]["message"]
    assert "simplifier broke" in run["failure"]["remedy"] and result["status"] == "failed"


@pytest.mark.slow
def test_simplify_auto_without_a_simplifier_says_why_and_required_fails(tmp_path):
    blocked = {"onnxslim": BLOCKED, "onnxsim": BLOCKED}
    result, run, simplify = simplify_run(tmp_path / "auto", "auto", blocked)
    assert result["status"] == "passed" and simplify["status"] == "skipped"
    assert "no simplifier in this env" in simplify["message"] and "blocked for this test" in simplify["message"]
    assert "required" in simplify["message"]  # how to make it a failure
    for mode in ("required", "onnxslim"):
        result, run, simplify = simplify_run(tmp_path / mode, mode, blocked)
        assert result["status"] == "failed" and simplify["status"] == "failed", (mode, simplify)
        assert run["failure"]["class"] == "simplifier_missing" and "pip_extra" in run["failure"]["remedy"]


@pytest.mark.slow
def test_wrong_torch_version_is_env_mismatch(tmp_path):
    result = run_runner(tmp_path, {"models": [], "expected_versions": {
        "torch": "2.12.0", "numpy": metadata.version("numpy"), "onnxruntime": metadata.version("onnxruntime")}})
    assert result["status"] == "failed"
    assert result["failure"]["class"] == "env_mismatch" and result["failure"]["stage"] == "versions"
    message = result["failure"]["message"]
    assert "torch: expected 2.12.0, installed " + metadata.version("torch") in message
    assert "numpy" not in message and "onnxruntime" not in message  # matching pins are not reported
    assert result["stages"][0]["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("content", [
    "this is not json {",
    json.dumps(["spec_version", 1]),
    json.dumps({"models": ["cnn"]}),  # no spec_version
    json.dumps({"spec_version": 99, "models": ["cnn"]}),
    json.dumps({"spec_version": 1, "models": ["cnn"], "sizes": [0, 2]}),
    json.dumps({"spec_version": 1, "models": ["cnn"], "exporters": ["tflite"]}),
])
def test_unreadable_spec_exits_3_without_result(tmp_path, content):
    spec_file, result_file = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(content)
    proc = subprocess.run([sys.executable, "-I", str(RUNNER_PATH), str(spec_file), str(result_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "unreadable spec" in proc.stderr and not result_file.exists()


@pytest.mark.slow
def test_missing_spec_file_exits_3(tmp_path):
    proc = subprocess.run([sys.executable, "-I", str(RUNNER_PATH), str(tmp_path / "nope.json"),
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3


def test_failure_table_readable_by_path_without_heavy_imports():
    """The protocol (its failure table) loads in any Python with the standard library alone."""
    code = textwrap.dedent(f'''
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("r", {str(RUNNER_PATH.with_name("envctl_smoke_protocol.py"))!r})
        m = importlib.util.module_from_spec(spec); sys.modules["r"] = m; spec.loader.exec_module(m)
        heavy = [k for k in ("torch", "onnx", "onnxruntime", "numpy") if k in sys.modules]
        print(json.dumps({{"heavy": heavy, "table": m.FAILURE_CLASSES}}))
    ''')
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    data = json.loads(out.stdout)
    assert data["heavy"] == []
    table = data["table"]
    expected = {"env_mismatch", "import_error", "unsupported_operator", "opset_unsupported",
                "ir_version_unsupported", "checker_failure", "ep_fallback", "dynamic_axis_ignored",
                "numeric_mismatch", "model_error", "export_failure", "runtime_error", "runner_crash",
                "timeout"}
    assert expected <= set(table)
    assert all(set(v) == {"summary", "remedy"} and v["summary"] and v["remedy"] for v in table.values())
    # every class the runner can raise or classify into has a row
    used = set()
    for path in RUNNER_PATH.parent.glob("*.py"):
        used |= set(re.findall(r'(?:StageFailure|_Fail)\(\s*"(\w+)"', path.read_text()))
        used |= set(re.findall(r'cls = "(\w+)" if', path.read_text()))
    assert {"ep_fallback", "numeric_mismatch", "dynamic_axis_ignored", "env_mismatch"} <= used
    assert used <= set(table)


def test_classifier_knows_the_classic_messages():
    spec = importlib.util.spec_from_file_location("envctl_smoke_runner_for_test", RUNNER_PATH)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    cases = {
        "TypeError: Descriptors cannot be created directly.": "import_error",
        "ImportError: cannot import name 'runtime_version' from 'google.protobuf'": "import_error",
        "AttributeError: _ARRAY_API not found": "import_error",
        "Fail: [ONNXRuntimeError] : 1 : FAIL : Load model failed: Unsupported model IR version: 10, "
        "max supported IR version: 9": "ir_version_unsupported",
        "Opset 21 is under development and support for this is limited. Current official support "
        "for domain ai.onnx is till opset 19.": "opset_unsupported",
        "UnsupportedOperatorError: Exporting the operator 'aten::foo' to ONNX opset version 17 "
        "is not supported.": "unsupported_operator",
    }
    for text, cls in cases.items():
        assert runner.classify("export", text)[0] == cls, text
    assert runner.classify("checker", "ValidationError: something odd")[0] == "checker_failure"
    assert runner.classify("pre_export", "ImportError: No module named 'onnx'")[0] == "model_error"
    assert {cls for _, cls, _ in runner.PATTERNS} | set(runner.STAGE_DEFAULT.values()) <= set(
        runner.FAILURE_CLASSES)


def test_runner_sources_parse_as_python_38():
    """The runner and what a bundle's devcert.py runs on a device (JetPack 5: Python 3.8)."""
    src = RUNNER_PATH.parent.parent
    for path in [*RUNNER_PATH.parent.glob("*.py"), src / "pack" / "devcert.py", src / "core" / "process.py"]:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


@pytest.mark.slow
def test_export_says_why_simplify_auto_skipped(tmp_path, monkeypatch):
    """`envctl export --simplify auto` without a simplifier passes, and its report says why simplify was skipped."""
    from typer.testing import CliRunner

    from envctl.cli import app

    blocked = tmp_path / "mods"
    blocked.mkdir()
    for name in ("onnxslim", "onnxsim"):  # --path comes first on the runner's sys.path
        (blocked / f"{name}.py").write_text(BLOCKED)
    monkeypatch.chdir(tmp_path)
    args = ["export", "cnn", "--out", str(tmp_path / "cnn.onnx"), "--exporter", "torchscript", "--path", str(blocked)]
    result = CliRunner().invoke(app, [*args, "--simplify", "auto"])
    text = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.exit_code == 0, result.output
    assert "simplify skipped: no simplifier in this env (auto)" in text and "blocked for this test" in text
    result = CliRunner().invoke(app, [*args, "--simplify", "required"])
    assert result.exit_code == 1 and "simplifier_missing" in " ".join(result.stdout.split()), result.output


def test_every_declared_builtin_has_a_builder():
    """The names the host validates matrices against (envctl_smoke_builtins) are the registry's keys."""
    load_smoke_module("envctl_smoke_builtins")
    assert set(load_smoke_module("envctl_smoke_models").BUILDERS) == set(BUILTIN_MODELS)


@pytest.mark.slow
def test_a_declared_builtin_without_a_builder_fails_its_run_naming_it(tmp_path):
    """Adding a name to envctl_smoke_builtins.py and forgetting its builder is a model_error, not a
    silently certified RNN (what the if/elif's `else` used to build)."""
    import shutil

    smoke = tmp_path / "smoke"
    shutil.copytree(RUNNER_PATH.parent, smoke, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    names = smoke / "envctl_smoke_builtins.py"
    names.write_text(names.read_text().replace('BUILTIN_NAMES = ("cnn", "transformer", "rnn")',
                                               'BUILTIN_NAMES = ("cnn", "transformer", "rnn", "mlp")'))
    spec_file, result_file = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(json.dumps({"spec_version": 1, "models": ["mlp"], "exporters": ["torchscript"],
                                     "workdir": str(tmp_path / "work")}))
    proc = subprocess.run([sys.executable, "-I", str(smoke / "runner.py"), str(spec_file), str(result_file)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["status"] == "failed" and [r["status"] for r in result["runs"]] == ["failed"]
    failure = result["runs"][0]["failure"]
    assert failure["class"] == "model_error" and failure["stage"] == "pre_export", failure
    assert "'mlp' is declared" in failure["message"] and "@builtin('mlp')" in failure["message"], failure
