"""Matrix loading, expansion and every bad-input case, through the real CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.cli import app
from envctl.core.errors import EnvctlError
from envctl.matrix.loader import load_matrix

ISSUE_EXAMPLE = """\
defaults:
  channels: [conda-forge]
  python: "3.11"
  exporters: [torchscript]
targets:
  local-cpu:
    platforms: [linux-64]
    channels: ["file:///some/local/channel"]
    torch: "2.13.0"
    onnx: "*"
    onnxruntime: "*"
    protobuf: "*"
    opset: 17
    exporters: [torchscript, dynamo]
    pip: [torch, onnx, onnxruntime, protobuf]
    pip_options:
      find_links: []
"""

AXES = """\
defaults:
  channels: [conda-forge]
  python: "3.11"
  platforms: [linux-64]
  exporters: [torchscript]
  onnx: "1.17.*"
  protobuf: "*"
axes:
  - name: "t{torch}-o{opset}-ort{onnxruntime}"
    product:
      torch: ["2.4", "2.5"]
      opset: [17, 18]
    zip:
      - onnxruntime: ["1.18", "1.19"]
        numpy: ["<2", ">=2"]
    exclude:
      - torch: "2.4"
        opset: 18
        reason: "example exclusion"
        source: "https://example.org/why"
"""

runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_issue_example_is_accepted_as_written(tmp_path):
    matrix = load_matrix(write(tmp_path, ISSUE_EXAMPLE))
    target = matrix.targets["local-cpu"]
    assert target.channels == ("file:///some/local/channel",)
    assert target.python.raw == "3.11"  # from defaults
    assert target.exporters == ("torchscript", "dynamo")
    assert target.pip == ("torch", "onnx", "onnxruntime", "protobuf")
    assert target.cuda is None and target.execution_provider == "CPUExecutionProvider"


def test_product_zip_and_exclude(tmp_path):
    matrix = load_matrix(write(tmp_path, AXES))
    # 2 torch x 2 opset x 2 zipped (ort, numpy) = 8, minus 2 excluded (torch 2.4, opset 18).
    assert len(matrix.targets) == 6
    assert "t2.4-o18-ort1.18" not in matrix.targets
    assert {e.name for e in matrix.excluded} == {"t2.4-o18-ort1.18", "t2.4-o18-ort1.19"}
    assert all(e.source == "https://example.org/why" for e in matrix.excluded)
    paired = matrix.targets["t2.5-o17-ort1.19"]
    assert paired.onnxruntime.raw == "1.19" and paired.numpy.raw == ">=2"  # zipped element-wise
    assert matrix.targets["t2.5-o17-ort1.18"].numpy.raw == "<2"


def test_gpu_defaults_follow_cuda(tmp_path):
    text = ISSUE_EXAMPLE.replace('    opset: 17\n', '    opset: 17\n    cuda: "12.6"\n')
    target = load_matrix(write(tmp_path, text)).targets["local-cpu"]
    assert target.onnxruntime_build == "gpu"
    assert target.execution_provider == "CUDAExecutionProvider"


def test_definition_hash_changes_with_definition(tmp_path):
    a = load_matrix(write(tmp_path, ISSUE_EXAMPLE)).targets["local-cpu"].definition_hash()
    b = load_matrix(write(tmp_path, ISSUE_EXAMPLE.replace("opset: 17", "opset: 18"))).targets["local-cpu"].definition_hash()
    assert a != b and a.startswith("sha256:")


def test_matrix_show_json(tmp_path):
    path = write(tmp_path, AXES)
    result = invoke("matrix", "show", "--matrix", str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["targets"]) == 6 and len(data["excluded"]) == 2


# ------------------------------------------------------------------ bad input
BAD_CASES = {
    "malformed-yaml": ("targets:\n  a: [unclosed\n", "starts on line 2", 3, None),
    "unknown-key": (ISSUE_EXAMPLE.replace("opset: 17", "opsett: 17"), "Did you mean 'opset'", 13, "targets.local-cpu.opsett"),
    "unknown-top-key": ("target: {}\n", "Did you mean 'targets'", 1, "target"),
    "wrong-type": (ISSUE_EXAMPLE.replace("opset: 17", "opset: seventeen"), "opset must be an integer", 13, "targets.local-cpu.opset"),
    "float-version": (ISSUE_EXAMPLE.replace('python: "3.11"', "python: 3.10"), "quote it", 3, "defaults.python"),
    "bad-spec": (ISSUE_EXAMPLE.replace('onnx: "*"', 'onnx: ">=1.1b.x"'), "is not a version spec", 10, "targets.local-cpu.onnx"),
    "bad-platform": (ISSUE_EXAMPLE.replace("[linux-64]", "[linux-46]"), "Did you mean 'linux-64'", 7, "targets.local-cpu.platforms"),
    "escape-name": (ISSUE_EXAMPLE.replace("local-cpu:", "../x:"), "is not allowed", 6, "targets.../x"),
    "absolute-name": (ISSUE_EXAMPLE.replace("local-cpu:", "/etc/x:"), "is not allowed", 6, "targets./etc/x"),
    "zip-mismatch": (AXES.replace('numpy: ["<2", ">=2"]', 'numpy: ["<2", ">=2", "*"]'), "'onnxruntime' has 2 values and 'numpy' has 3", None, None),
    "exclude-without-source": (AXES.replace('        source: "https://example.org/why"\n', ""), "needs a 'source'", None, "axes[0].exclude[0].source"),
    "missing-field": (ISSUE_EXAMPLE.replace("    opset: 17\n", ""), "does not say 'opset'", None, "targets.local-cpu"),
    "duplicate-key": (ISSUE_EXAMPLE.replace("    opset: 17\n", "    opset: 17\n    opset: 18\n"), "duplicate key 'opset'", 14, None),
    "host-provides-typo": (ISSUE_EXAMPLE.replace("    opset: 17\n", "    opset: 17\n    host_provides: {tensorRT: '8.5'}\n"), "Did you mean 'tensorrt'", 14, "targets.local-cpu.host_provides"),
    "not-a-mapping": ("- a\n- b\n", "must be a mapping", 1, None),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_clear_paragraph_exit_2_and_writes_nothing(tmp_path, case):
    text, expected, line, key = BAD_CASES[case]
    path = write(tmp_path, text)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args in (("matrix", "check"), ("matrix", "show"), ("render", "--all")):
        result = invoke(*args, "--matrix", str(path))
        assert result.exit_code == 2, (args, result.output)
        message = result.stderr
        assert "Traceback" not in result.output and "Traceback" not in message
        assert str(path) in message, message
        assert expected in message, message
        if line is not None:
            assert f"{path}:{line}" in message, message
        if key is not None:
            assert f"key '{key}'" in message, message
        assert message.strip().count("\n") == 0  # one paragraph
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unknown_target_suggests(tmp_path):
    path = write(tmp_path, ISSUE_EXAMPLE)
    result = invoke("render", "local-cp", "--matrix", str(path))
    assert result.exit_code == 2
    assert "unknown target 'local-cp'" in result.stderr and "Did you mean 'local-cpu'" in result.stderr
    assert not (tmp_path / "envs" / "local-cp").exists()


def test_missing_matrix_file(tmp_path):
    result = invoke("matrix", "check", "--matrix", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "file not found" in result.stderr


# Hostile YAML tags in a matrix: tests/matrix/test_hostile_input.py (one place for them).


def test_loader_error_object_names_file_line_key(tmp_path):
    path = write(tmp_path, ISSUE_EXAMPLE.replace("opset: 17", "opset: [17]"))
    with pytest.raises(EnvctlError) as info:
        load_matrix(path)
    assert (info.value.file, info.value.line, info.value.key) == (str(path), 13, "targets.local-cpu.opset")
