"""A verdict that is proved (issue 18, comparison and classes), through `envctl certify
--target host`, the path a team takes for its own models: real decoders from `transformers`
configs read through their padding mask, float32's own error judged against float64, a
random op after eval(), a loop and a list frozen by the trace, and a genuinely wrong export.
The models: tests/support/verdict_models.py. One runner run over all of them (both exporters).
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                           for m in ("torch", "onnx", "onnxruntime", "onnxscript", "transformers")),
                       reason="needs torch, onnx, onnxruntime, onnxscript and transformers"),
]

SUPPORT = Path(__file__).parents[1] / "support"
MODELS = ["llama", "mistral", "clip_text", "naive_variance", "eval_dropout", "unrolled_loop", "plain_loop",
          "lengths_list", "wrong_symbolic"]
SOURCE = (SUPPORT / "verdict_models.py").read_text()


def _line(marker):
    return next(i for i, text in enumerate(SOURCE.splitlines(), 1) if marker in text)


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    from support.project import write_project

    root = tmp_path_factory.mktemp("verdicts")
    matrix = write_project(root, {"t": {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11",
                                        "torch": "2.13.0", "onnx": "*", "onnxruntime": "*", "protobuf": "*",
                                        "opset": 18, "exporters": ["torchscript", "dynamo"],
                                        "models": [f"verdict_models:{m}" for m in MODELS]}},
                           files={"verdict_models.py": SOURCE})
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "envctl", "certify", "--target", "host", "--matrix", str(matrix),
                           "--json"], capture_output=True, text=True, cwd=root, timeout=1500, env=env)
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    cert = json.loads(proc.stdout)
    runs = {(r["model"].split(":")[1], r["exporter"]): r for r in cert["runs"]}
    return {"proc": proc, "cert": cert, "runs": runs, "root": root}


def _failure(run):
    return run["failure"] or {}


def test_decoders_read_through_their_mask_pass_with_a_pad_note(certified):
    """Llama (grouped-query attention), Mistral (sliding window) and CLIP text under dynamo
    differ from PyTorch only at pad positions of left-padded rows: compared where the mask
    marks real tokens, they pass, and the certificate says what was left out."""
    for model in ("llama", "mistral", "clip_text"):
        run = certified["runs"][(model, "dynamo")]
        assert run["status"] == "passed", (model, _failure(run))
        assert run["pad_notes"] and "attention_mask marks padding" in run["pad_notes"][0], (model, run["pad_notes"])
        cases = next(s for s in run["stages"] if s["name"] == "inference")["details"]["cases"]
        outs = [o for c in cases for o in c["outputs"]]
        assert any(o.get("read_through") == "attention_mask" and o["pad_violations"] for o in outs)
        rows = [c for c in cases if c["group"] == "random" and c["sizes"].get("seq", 0) > 2]
        assert rows, "the sweep fed padded rows"
        assert certified["runs"][(model, "torchscript")]["status"] == "passed", model


def test_float32_limit_is_a_pass_marked_precision_limited_with_three_numbers(certified):
    from envctl.certify.certificate import read_certificate

    for exporter in ("torchscript", "dynamo"):
        run = certified["runs"][("naive_variance", exporter)]
        assert run["status"] == "passed", _failure(run)
        p = run["precision"]
        assert p["precision_limited"] is True and p["factor"] == 2.0
        assert p["onnx_vs_torch32"] > 1e-3  # beyond atol: a mismatch before float64 was asked
        assert p["onnx_vs_torch64"] <= p["factor"] * p["torch32_vs_torch64"] + 1e-4 + 1e-3 * 1.0
    # the certificate on disk carries them, typed and checked
    cert = read_certificate(certified["root"] / "certs" / "host.json")
    assert cert.certificate_version == 2
    limited = {(m.split(":")[1], e): p for m, e, p in cert.precision}
    assert limited[("naive_variance", "dynamo")].precision_limited is True
    assert limited[("wrong_symbolic", "torchscript")].precision_limited is False


def test_a_real_numeric_error_is_numeric_mismatch_saying_how_far_float32_is(certified):
    run = certified["runs"][("wrong_symbolic", "torchscript")]
    failure = _failure(run)
    assert failure["class"] == "numeric_mismatch", failure
    assert "not float32's limit" in failure["message"] and "float32 PyTorch is off by" in failure["message"]
    assert run["precision"]["precision_limited"] is False
    assert "widen" not in failure["remedy"]
    # dynamo ignores the hand-written symbolic and exports tanh itself: right, and passed
    assert certified["runs"][("wrong_symbolic", "dynamo")]["status"] == "passed"


def test_a_random_op_after_eval_is_nondeterministic_model_naming_the_module(certified):
    line = _line("F.dropout(torch.relu(self.fc(x)), 0.1)")
    for exporter in ("torchscript", "dynamo"):
        failure = _failure(certified["runs"][("eval_dropout", exporter)])
        assert failure["class"] == "nondeterministic_model", failure
        assert "'block' (EvalDropout)" in failure["message"] and f"verdict_models.py:{line}" in failure["message"]
        assert "training=self.training" in failure["remedy"] and "atol" not in failure["remedy"]


def test_frozen_loop_and_list_are_classified_at_the_warning_line_without_runtime_remedies(certified):
    loop = _failure(certified["runs"][("unrolled_loop", "torchscript")])
    assert loop["class"] == "dynamic_axis_ignored", loop
    assert f"verdict_models.py:{_line('for t in range(int(x.shape[1]))')}" in loop["message"]
    lengths = _failure(certified["runs"][("lengths_list", "torchscript")])
    assert lengths["class"] == "value_dependent_branch", lengths
    assert f"verdict_models.py:{_line('lengths.tolist()')}" in lengths["message"]
    # no warning at all (range(x.shape[1])): ONNX Runtime refusing other sizes while the export sizes run
    plain = _failure(certified["runs"][("plain_loop", "torchscript")])
    assert plain["class"] == "dynamic_axis_ignored" and "Gather" in plain["message"], plain
    for failure in (loop, lengths, plain):
        assert not re.search(r"sidecar|\.onnx\.data|ExecutionProvider", failure["remedy"]), failure["remedy"]
    # dynamo refuses to keep those axes dynamic at export: the same class, from the graph itself
    for model in ("unrolled_loop", "plain_loop", "lengths_list"):
        assert _failure(certified["runs"][(model, "dynamo")])["class"] == "dynamic_axis_ignored"
