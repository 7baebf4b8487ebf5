"""The pieces that keep certification truthful (issue 11), each on real data in-process:
remedies per class and exporter, resource_exhausted, ANSI-free innermost-cause messages,
NaN-aware comparison with row attribution, input domains and masks, the size sweep, the
measured ORT limits against the rules' facts, and the host's choice of models.

The smoke runner's modules are loaded by path, as the runner loads them (they import
torch/numpy, so this file needs the certify extras like test_smoke_runner.py).
"""
import errno
import json
import importlib.util
import re
import sys

import pytest

from envctl.smoke import RUNNER_PATH
from support.smoke_modules import load_smoke_module

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "onnxruntime")),
    reason="needs torch, onnx and onnxruntime in this interpreter")

SMOKE = RUNNER_PATH.parent


@pytest.fixture(scope="module")
def smoke():
    for name in ("envctl_smoke_builtins", "envctl_smoke_inputs", "envctl_smoke_compare", "envctl_smoke_models",
                 "envctl_smoke_probe"):
        load_smoke_module(name)
    spec = importlib.util.spec_from_file_location("envctl_smoke_runner_t", RUNNER_PATH)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner, sys.modules["envctl_smoke_inputs"], sys.modules["envctl_smoke_compare"], sys.modules["envctl_smoke_models"]


# --- remedies: one test per class, for both exporters ---------------------------------------

# A message the classifier maps to the class, where the class is reached by classification.
CLASSIFIED = {
    "import_error": ("versions", "ImportError: cannot import name 'runtime_version' from 'google.protobuf'"),
    "unsupported_operator": ("export", "UnsupportedOperatorError: Exporting the operator 'aten::foo' is not supported"),
    "opset_unsupported": ("session", "Opset 30 is under development and support for this is limited."),
    "ir_version_unsupported": ("session", "Unsupported model IR version: 11, max supported IR version: 10"),
    "checker_failure": ("checker", "ValidationError: Field 'type' of value_info is required"),
    "ep_fallback": ("session", "Failed to create CUDAExecutionProvider"),
    "export_failure": ("export", "TorchExportError: Failed to export the model with torch.export"),
    "runtime_error": ("inference", "Fail: [ONNXRuntimeError] : 1 : FAIL : Non-zero status code"),
    "simplify_failure": ("simplify", "AssertionError: slim failed"),
    "model_error": ("pre_export", "RuntimeError: weights /nowhere/ckpt.pt not found"),
    "resource_exhausted": ("export", "OSError: [Errno 28] No space left on device: '/tmp/full/model.onnx'"),
    "env_mismatch": ("versions", "AssertionError: Torch not compiled with CUDA enabled"),
}


def _recommends(text, exporter):
    name = {"torchscript": "torchscript", "dynamo": "dynamo"}[exporter]
    return re.search(rf"(use|try|with|export with) the {name} exporter", text, re.I)


def test_every_class_has_a_remedy_test(smoke):
    runner = smoke[0]
    tested = set(CLASSIFIED) | {"dynamic_axis_ignored", "numeric_mismatch", "value_dependent_branch",
                                "nondeterministic_model",  # tests/certify/test_certify_verdicts.py
                                "runner_crash", "timeout", "spec_error",
                                "simplifier_missing"}  # its remedy: tests/smoke/test_smoke_runner.py (simplify required)
    assert set(runner.FAILURE_CLASSES) == tested


@pytest.mark.parametrize("cls", sorted(
    ["env_mismatch", "import_error", "unsupported_operator", "opset_unsupported", "ir_version_unsupported",
     "checker_failure", "ep_fallback", "dynamic_axis_ignored", "value_dependent_branch", "numeric_mismatch",
     "nondeterministic_model", "model_error", "export_failure", "runtime_error", "simplify_failure", "resource_exhausted",
     "runner_crash", "timeout", "spec_error", "simplifier_missing"]))
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_remedy_never_recommends_the_exporter_that_failed(smoke, cls, exporter):
    runner = smoke[0]
    remedy = runner.for_exporter(runner.FAILURE_CLASSES[cls]["remedy"], exporter)
    assert remedy and not re.search(r"<(torchscript|dynamo)\||\{other\}", remedy), remedy
    assert not _recommends(remedy, exporter), remedy
    if cls in CLASSIFIED:
        stage, text = CLASSIFIED[cls]
        got, specific = runner.classify(stage, text)
        assert got == cls, (text, got)
        assert not _recommends(runner.for_exporter(specific, exporter), exporter)
    # the pattern-specific remedies obey the same rule
    for _, _, specific in runner.PATTERNS:
        assert not _recommends(runner.for_exporter(specific or "", exporter), exporter), specific


def test_dynamic_axis_remedy_offers_the_other_exporter_only(smoke):
    runner = smoke[0]
    remedy = runner.FAILURE_CLASSES["dynamic_axis_ignored"]["remedy"]
    assert "dynamo exporter" in runner.for_exporter(remedy, "torchscript")
    assert "dynamo exporter" not in runner.for_exporter(remedy, "dynamo")
    assert "TorchScript exporter" in runner.for_exporter(remedy, "dynamo")


# --- messages: ANSI, innermost cause, resource_exhausted naming the path -----------------------

class TorchExportError(RuntimeError):
    pass


def _wrapped():
    try:
        try:
            raise RuntimeError("\x1b[96mCannot view a tensor with shape torch.Size([2, 3]) and strides (3, 1)\x1b[0m"
                               "\nas a tensor with shape (6,)!")
        except RuntimeError as inner:
            raise TorchExportError("\x1b[1mFailed to export the model with torch.export.\x1b[0m This is step 1/3 "
                                   "of exporting the model to ONNX. Next steps: ...") from inner
    except TorchExportError as e:
        return e


def test_dynamo_one_liner_is_the_innermost_cause_without_colour_codes(smoke):
    runner = smoke[0]

    def raises(details):
        raise _wrapped()
    stages = []
    _, fail, rec = runner.run_stage(stages, "export", raises, exporter="dynamo")
    assert fail["message"].startswith("RuntimeError: Cannot view a tensor with shape torch.Size([2, 3])")
    assert "\x1b" not in fail["message"] and "\x1b" not in rec["message"]
    assert "Failed to export the model with torch.export" in rec["message"]  # the wrapper, in the detail
    assert "Failed to export" not in fail["message"]
    assert not _recommends(fail["remedy"], "dynamo")
    assert runner._clean({"m": "\x1b[0;93mwarn\x1b[m"}) == {"m": "warn"}


def test_full_disk_in_the_runner_is_resource_exhausted_naming_the_path(smoke, tmp_path):
    runner = smoke[0]
    target = tmp_path / "work" / "model.onnx"

    def full(details):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))
    _, fail, _ = runner.run_stage([], "export", full, exporter="torchscript")
    assert fail["class"] == "resource_exhausted" and str(target) in fail["message"]
    for text in ("OSError: [Errno 24] Too many open files: '/x'", "MemoryError", "RuntimeError: std::bad_alloc"):
        assert runner.classify("inference", text)[0] == "resource_exhausted"
    # a model callable that hits a full disk is not a model bug either
    assert runner.classify("pre_export", "OSError: [Errno 28] No space left on device: '/w'")[0] == "resource_exhausted"


def test_host_classifies_a_dead_runner_on_a_full_disk(tmp_path):
    from envctl.certify.truth import oserror_failure, resource_failure

    tail = "Traceback ...\n\x1b[31mOSError: [Errno 28] No space left on device: '/tmp/envctl-smoke-x/result.json'\x1b[0m\n"
    f = resource_failure(tail, "free space")
    assert f["class"] == "resource_exhausted" and "/tmp/envctl-smoke-x/result.json" in f["message"]
    assert "\x1b" not in f["message"]
    assert resource_failure("Segmentation fault (core dumped)", "x") is None
    f = oserror_failure(OSError(errno.ENOSPC, "No space left on device", "/tmp/spec.json"), "free space")
    assert f["class"] == "resource_exhausted" and "/tmp/spec.json" in f["message"]
    assert oserror_failure(OSError(errno.EACCES, "Permission denied", "/x"), "r") is None


# --- comparison -----------------------------------------------------------------------------

def test_nan_and_inf_at_the_same_positions_match_and_are_counted(smoke):
    import numpy as np

    compare = smoke[2]
    ref = np.array([[1.0, np.nan, np.inf], [2.0, -np.inf, 3.0]], dtype=np.float32)
    same = compare.compare(ref, ref.copy(), 1e-4, 1e-3)
    assert same["passed"] and same["nonfinite_matched"] == 3 and same["max_abs"] == 0.0
    other = ref.copy()
    other[0, 1] = 0.0  # NaN on one side only
    bad = compare.compare(ref, other, 1e-4, 1e-3)
    assert not bad["passed"] and bad["violations"] == 1 and bad["bad_rows"] == [0]
    flipped = ref.copy()
    flipped[0, 2] = -np.inf  # +inf against -inf
    assert not compare.compare(ref, flipped, 1e-4, 1e-3)["passed"]


def test_error_statistics_per_output(smoke):
    import numpy as np

    compare = smoke[2]
    ref = np.ones((4, 100))
    got = ref.copy()
    got[3, 0] = 1.5
    out = compare.compare(ref, got, 1e-4, 1e-3)
    assert out["max_abs"] == pytest.approx(0.5) and out["mean_abs"] == pytest.approx(0.5 / 400)
    assert out["p99_abs"] < 0.5 and out["max_rel"] == pytest.approx(0.5)
    assert out["bad_rows"] == [3]


def test_mismatch_confined_to_rows_says_what_their_inputs_share(smoke):
    import numpy as np

    _, inputs, compare, _ = smoke
    mask = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
    ids = np.array([[5, 6, 7], [1, 2, 3], [4, 4, 4], [9, 9, 9]])
    domains = [{"kind": "int"}, {"kind": "mask"}]
    note = compare.rows_note({"bad_rows": [1, 3]}, 4, ["input_ids", "attention_mask"], [ids, mask], domains,
                             inputs.shared_by)
    assert "only rows [1, 3] of 4 differ" in note and "attention_mask is all zeros" in note


def test_only_positions_a_mask_marks_as_real_are_compared(smoke):
    """Right, left and single-token padding; the pad positions' difference is reported apart;
    an output whose axes do not line up with the mask (pooled, or heads first) is compared whole."""
    import numpy as np

    compare = smoke[2]
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]])
    domains, names, axes = [{"kind": "mask"}], ["attention_mask"], {"attention_mask": {0: "batch", 1: "seq"}}
    ref = np.random.RandomState(0).standard_normal((4, 5, 3))
    got = ref.copy()
    got[mask == 0] += 5.0  # garbage where only padding sits
    name, read = compare.read_positions(names, [mask], domains, axes, ref.shape, ["batch", "seq", 3])
    assert name == "attention_mask"
    out = compare.compare(ref, got, 1e-4, 1e-3, read)
    assert out["passed"] and out["pad_violations"] == 8 * 3 and out["pad_max_abs"] == pytest.approx(5.0)
    assert out["compared"] == 12 * 3
    got[3, 4, 0] += 1.0  # the single real token of the last row is wrong: caught
    out = compare.compare(ref, got, 1e-4, 1e-3, read)
    assert not out["passed"] and out["bad_rows"] == [3]
    # a padding mask (nonzero = pad) reads the other way round
    _, read_pad = compare.read_positions(["key_padding_mask"], [1 - mask], domains,
                                         {"key_padding_mask": {0: "batch", 1: "seq"}}, ref.shape, None)
    assert (read_pad[..., 0] == (mask == 1)).all()
    # pooled (batch, hidden) whose hidden size equals seq: a static axis in the graph, compared whole
    assert compare.read_positions(names, [mask], domains, axes, (4, 5), ["batch", 5]) == (None, None)
    # batch == seq (4 x 4): sizes alone are ambiguous, so only the graph's dim names line the axes up
    square = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    graph = {"attention_mask": ["batch", "seq"]}
    assert compare.read_positions(names, [square], domains, axes, (4, 4, 3), ["seq", "batch", 3], graph) == (None, None)
    assert compare.read_positions(names, [square], domains, axes, (4, 4, 3), ["batch", "seq", 3], graph)[0] == name
    # heads first (batch, heads, seq, seq): not the mask's axes
    assert compare.read_positions(names, [mask], domains, axes, (4, 2, 5, 5), None) == (None, None)
    assert compare.read_positions(names, [mask], [{"kind": "int"}], axes, ref.shape, None) == (None, None)


def test_precision_is_judged_against_float64_within_the_stated_factor(smoke):
    import numpy as np

    compare = smoke[2]
    x = 1000.0 + np.random.RandomState(1).uniform(0, 1, (4, 256))
    ref64 = (x * x).mean(-1) - x.mean(-1) ** 2
    x32 = x.astype(np.float32)
    ref32 = (x32 * x32).mean(-1) - x32.mean(-1) ** 2  # float32 PyTorch: cancellation near 1000
    onnx = (x32 * x32).sum(-1) / np.float32(256) - (x32.sum(-1) / np.float32(256)) ** 2  # another order
    p = compare.precision(ref32, onnx, ref64, None, 1e-4, 1e-3, 2.0)
    assert p["torch32_vs_torch64"] > 1e-3 and p["precision_limited"], p
    wrong = ref32 + 10 * p["torch32_vs_torch64"] + 0.5  # far beyond float32's own error
    q = compare.precision(ref32, wrong, ref64, None, 1e-4, 1e-3, 2.0)
    assert not q["precision_limited"] and q["onnx_vs_torch64"] > q["torch32_vs_torch64"]
    assert compare.precision(ref32, onnx * np.nan, ref64, None, 1e-4, 1e-3, 2.0) is None


# --- inputs ---------------------------------------------------------------------------------

def _case(models, model, inputs, names, axes, **extra):
    case = {"model": model.eval(), "inputs": tuple(inputs), "input_names": names, "output_names": None,
            "dynamic_axes": axes, **extra}
    case["samples"] = []
    case["domains"], case["limits"] = models.inputs.analyse(case, []) if hasattr(models, "inputs") else \
        sys.modules["envctl_smoke_inputs"].analyse(case, [])
    return case


class _Tok:
    """Embedding ids + mask + a position table of 40."""

    def __new__(cls):
        import torch
        from torch import nn

        class Tok(nn.Module):
            def __init__(self):
                super().__init__()
                self.word_embeddings = nn.Embedding(300, 8)
                self.position_embeddings = nn.Embedding(40, 8)

            def forward(self, input_ids, attention_mask):
                pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
                return (self.word_embeddings(input_ids) + self.position_embeddings(pos)) * attention_mask.unsqueeze(-1)
        return Tok()


def test_domains_embedding_vocab_masks_sign_and_ranges(smoke):
    import torch

    _, inputs, _, models = smoke
    ids, mask = torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 6, dtype=torch.long)
    case = _case(models, _Tok(), [ids, mask], ["input_ids", "attention_mask"],
                 {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
    d_ids, d_mask = case["domains"]
    assert (d_ids["kind"], d_ids["low"], d_ids["high"]) == ("int", 0, 300)  # the vocabulary, not 0..0
    assert d_mask["kind"] == "mask" and not d_mask["zero_rows"]
    assert case["limits"] == {"seq": 40}
    for group in ("random",) + inputs.ADVERSARIAL[:-1]:
        for sizes in ({"batch": 5, "seq": 7}, {"batch": 8, "seq": 1}, {"batch": 1, "seq": 30}):
            t_ids, t_mask = models.make_inputs(case, sizes, 0, group)
            assert t_mask.dtype == torch.long and set(t_mask.unique().tolist()) <= {0, 1}
            assert (t_mask.sum(-1) > 0).all(), (group, sizes)  # never a pure-padding row
            assert int(t_ids.min()) >= 0 and int(t_ids.max()) < 300
    t_ids, t_mask = models.make_inputs(case, {"batch": 5, "seq": 7}, 0)
    assert int(t_ids.max()) > 0  # ids other than the example's zeros
    rows = t_mask.tolist()
    assert [1] * 7 in rows  # all ones
    assert any(r[0] == 1 and r[-1] == 0 for r in rows) and any(r[0] == 0 and r[-1] == 1 for r in rows)
    assert any(sum(r) == 1 for r in rows)  # a single real token

    x = torch.rand(3, 10)  # a power spectrum: non-negative
    case = _case(models, torch.nn.Identity(), [x], ["power"], {"power": {0: "batch"}})
    assert case["domains"][0]["low"] == 0.0
    for group in ("random",) + inputs.ADVERSARIAL[:-1]:
        assert float(models.make_inputs(case, {"batch": 4}, 0, group)[0].min()) >= 0.0, group
    case = _case(models, torch.nn.Identity(), [x], ["power"], {"power": {0: "batch"}}, ranges={"power": [2.0, 3.0]})
    t = models.make_inputs(case, {"batch": 4}, 0)[0]
    assert float(t.min()) >= 2.0 and float(t.max()) <= 3.0
    assert float(models.make_inputs(case, {"batch": 4}, 0, "large")[0].min()) > 2.5


def test_size_sweep_goes_below_and_above_the_export_length_within_limits(smoke):
    import torch

    models = smoke[3]
    ids, mask = torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 6, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    case = _case(models, _Tok(), [ids, mask], ["input_ids", "attention_mask"], axes)
    seqs = {c["seq"] for c in models.sweep(case, [1, 2, 5], case["limits"])}
    assert min(seqs) < 6 and {12, 24} <= seqs and max(seqs) <= 40
    case["max"] = {"seq": 16}
    case["domains"], case["limits"] = sys.modules["envctl_smoke_inputs"].analyse(case, [])
    seqs = {c["seq"] for c in models.sweep(case, [1, 2, 5], case["limits"])}
    assert max(seqs) == 16 and 12 in seqs
    big = torch.zeros(8, 6, dtype=torch.long)  # batch 8: the default sizes are all below it
    case = _case(models, _Tok(), [big, big + 1], ["input_ids", "attention_mask"], axes)
    assert max(c["batch"] for c in models.sweep(case, [1, 2, 5], case["limits"])) == 16


# --- measured limits ------------------------------------------------------------------------

def test_probe_measures_this_onnxruntime_and_agrees_with_the_rules(smoke):
    from importlib import metadata

    from envctl.certify.truth import limit_findings

    probe = sys.modules["envctl_smoke_probe"]
    details = {}
    probe.limits_stage(details)
    assert details["max_opset"] >= 17 and details["max_ir"] >= 8
    measured = {"max_opset": details["max_opset"], "max_ir": details["max_ir"]}
    versions = {"onnxruntime": metadata.version("onnxruntime")}
    # the installed release's facts agree with the measurement (else the facts are wrong: say so)
    assert limit_findings(versions, measured) == [], limit_findings(versions, measured)
    wrong = limit_findings(versions, dict(measured, max_opset=measured["max_opset"] - 1))
    assert len(wrong) == 1 and wrong[0]["rule"] == "ort-max-opset" and "ort-max-opset" in wrong[0]["message"]
    assert wrong[0]["claimed"] == measured["max_opset"]


# --- host: user models are certified, never dropped -------------------------------------------

def test_host_certification_takes_the_matrix_user_models(tmp_path):
    from envctl.certify.truth import host_models
    from envctl.core.errors import EnvctlError

    assert host_models(tmp_path / "none.yaml") == ["cnn", "transformer", "rnn"]
    from support.project import write_project

    matrix = write_project(tmp_path, {"t": {"platforms": ["linux-64"], "channels": ["conda-forge"],
                                            "python": "3.11", "torch": "2.13.0",
                                            "onnx": "1.20", "onnxruntime": "1.23", "protobuf": "6.31",
                                            "opset": 18, "exporters": ["torchscript"],
                                            "models": ["cnn", "team:make_model"]}})
    assert host_models(matrix) == ["cnn", "team:make_model"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(EnvctlError):
        host_models(bad)


# --- your data, and --out, through the real `envctl export` -----------------------------------

SAMPLE_MODELS = '''
import torch
from torch import nn


class Gate(nn.Module):
    """Right on small inputs; a branch on the value breaks it on the user's real (large) data."""

    def forward(self, x):
        if x.abs().max().item() > 100:
            return x * 0.0
        return x * 2.0


def gate():
    return {"model": Gate(), "inputs": (torch.rand(2, 4),), "input_names": ["x"],
            "ranges": {"x": [0.0, 1.0]}}  # declared: the comparison stays in [0, 1] ...


def gate_with_samples():
    case = gate()
    case["samples"] = [(torch.full((3, 4), 500.0),)]  # ... but the real data is not
    return case


class Scale(nn.Module):
    def forward(self, x):
        return torch.log1p(x) * 3.0


def scale():
    return {"model": Scale(), "inputs": (torch.rand(2, 4),), "input_names": ["x"]}
'''


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    (root / "sample_models.py").write_text(SAMPLE_MODELS)
    return root


def _export(root, *args):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "envctl", "export", *args, "--path", str(root),
                           "--exporter", "torchscript", "--matrix", str(root / "envs" / "matrix.yaml")],
                          capture_output=True, text=True, cwd=root, timeout=600, env=_env())
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    return proc


def _env():
    import os

    return dict(os.environ, COLUMNS="200", NO_COLOR="1")


@pytest.mark.slow
def test_declared_ranges_hide_a_branch_your_data_reveals_and_out_keeps_the_old_file(sample_project):
    root = sample_project
    out = root / "dist" / "gate.onnx"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"an older export")
    # inside the declared range the branch never flips: certified, and --out replaced
    proc = _export(root, "sample_models:gate", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes() != b"an older export"
    shipped = out.read_bytes()
    # the user's own sample takes the other branch: the comparison on their data says so, first
    proc = _export(root, "sample_models:gate_with_samples", "--out", str(out), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["status"] == "failed"
    assert report["failure"]["class"] == "value_dependent_branch"
    assert "on your data (sample 0)" in report["failure"]["message"]
    assert report["sizes"][0]["group"] == "samples" and report["on_your_data"]["passed"] is False
    assert out.read_bytes() == shipped and report["stale_out"] is True
    proc = _export(root, "sample_models:gate_with_samples", "--out", str(out))
    first = proc.stdout.strip().splitlines()[0]
    assert "NOT this export" in first and str(out) in first.replace("\n", "")


@pytest.mark.slow
def test_inputs_files_npz_and_pt_are_compared_as_your_data(sample_project, tmp_path):
    import numpy as np
    import torch

    root = sample_project
    npz, pt = tmp_path / "batch.npz", tmp_path / "more.pt"
    np.savez(npz, x=np.random.RandomState(0).uniform(0, 5, (3, 4)).astype(np.float32))
    torch.save([(torch.rand(5, 4),), {"x": torch.rand(1, 4)}], pt)
    out = tmp_path / "scale.onnx"
    proc = _export(root, "sample_models:scale", "--out", str(out), "--inputs", str(npz), "--inputs", str(pt), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["failure"]
    mine = [c for c in report["sizes"] if c["group"] == "samples"]
    assert [c["sizes"]["batch"] for c in mine] == [3, 5, 1] and all(c["passed"] for c in mine)
    assert report["sizes"][:3] == mine  # your data first
    assert report["on_your_data"] == {"samples": 3, "passed": True, "max_abs": report["on_your_data"]["max_abs"]}
    assert out.exists()
    bad = tmp_path / "x.csv"
    bad.write_text("1,2")
    proc = _export(root, "sample_models:scale", "--out", str(out), "--inputs", str(bad))
    assert proc.returncode == 2 and "--inputs" in (proc.stdout + proc.stderr)


@pytest.mark.slow
def test_certify_host_runs_the_user_models_the_matrix_names(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from envctl.cli import app
    from support.project import write_project

    matrix = write_project(tmp_path, {"t": {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11",
                                            "torch": "2.13.0", "onnx": "*", "onnxruntime": "*", "protobuf": "*",
                                            "opset": 18, "exporters": ["torchscript"], "models": ["hostmodels:scale"]}},
                           files={"hostmodels.py": SAMPLE_MODELS.replace("def scale", "def scale")})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["certify", "--target", "host", "--matrix", str(matrix), "--json"])
    cert = json.loads(result.stdout)
    assert [r["model"] for r in cert["runs"]] == ["hostmodels:scale", "hostmodels:scale"], cert["runs"]
    assert cert["result"] == "passed" and result.exit_code == 0
    assert cert["measured_limits"]["max_opset"] >= 17 and cert["findings"] == []


@pytest.mark.slow
def test_full_disk_under_the_runner_and_under_the_host_is_resource_exhausted(tmp_path, monkeypatch):
    """A real full filesystem (a small tmpfs, filled): the runner's export cannot write its
    .onnx, and the host cannot write its spec. Both say resource_exhausted and where."""
    import tempfile

    from envctl.certify import certify
    from support.diskfaults import fill, mounted_tmpfs

    result_dir = tmp_path / "result"
    result_dir.mkdir()
    with mounted_tmpfs(tmp_path / "full", "4m") as full:
        fill(full)
        spec = {"spec_version": 1, "target": "t", "opset": 18, "exporters": ["torchscript"], "models": ["cnn"],
                "sizes": [1, 2], "workdir": str(result_dir / "work")}
        # the runner: its workdir on the full disk
        spec_file = result_dir / "spec.json"
        spec_file.write_text(json.dumps(dict(spec, workdir=str(full / "work"))))
        import subprocess

        proc = subprocess.run([sys.executable, "-I", str(RUNNER_PATH), str(spec_file), str(result_dir / "r.json")],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        failure = json.loads((result_dir / "r.json").read_text())["failure"]
        assert failure["class"] == "resource_exhausted", failure
        assert str(full) in failure["message"] and "TMPDIR" in failure["remedy"]
        # the host: its temporary folder on the full disk
        monkeypatch.setattr(tempfile, "tempdir", str(full))
        from envctl.smoke.envctl_smoke_protocol import Spec

        result, facts = certify.run_smoke(certify.Path(sys.executable), Spec.from_json(spec), 120)
        assert result is None and facts["failure"]["class"] == "resource_exhausted", facts
        assert str(full) in facts["failure"]["message"]
