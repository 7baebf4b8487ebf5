"""Tiny inputs that used to cost minutes or gigabytes, and strings that smuggled lines past validation.

Regression tests for issue 12 items 4, 5 and the YAML/timeout parts of 9.
The CLI runs in a subprocess under a 2 GB address-space limit, so an input
that still allocated gigabytes ends in a MemoryError traceback (caught by
the no-traceback check) instead of swapping the machine; each run has a
generous ceiling, so a hang fails rather than blocks.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from envctl.core.errors import EnvctlError
from envctl.matrix.loader import load_matrix

SRC = str(Path(__file__).resolve().parents[2] / "src")
VALID = {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11", "torch": "2.4", "onnx": "*",
         "onnxruntime": "1.19", "protobuf": "*", "opset": 17, "exporters": ["torchscript"]}
CEILING = 120


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def envctl(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")} | {"PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "envctl", *args], env=env, capture_output=True, text=True,
                          timeout=CEILING, preexec_fn=_limit_memory)


def refused(path: Path, *expected: str) -> str:
    proc = envctl("matrix", "show", "--matrix", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr.replace("envctl:", ""), proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert len(proc.stderr) < 2000, len(proc.stderr)  # bounded, whatever the input
    return proc.stderr


def matrix(tmp_path: Path, doc_or_text) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else yaml.safe_dump(doc_or_text, allow_unicode=True))
    return path


def laughs(levels: int = 9, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(width))}]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- item 4: time and memory


def test_billion_laughs_with_a_bad_field_is_refused_without_expanding(tmp_path):
    """The 624-byte case: the bomb sits where a field's error message used to format it in full."""
    text = "version: 1\n" + "x:\n" + "".join("  " + line + "\n" for line in laughs().splitlines())
    text += "targets:\n  t:\n    opset: *a8\n"
    assert len(text) < 1000
    refused(matrix(tmp_path, text), "aliases expand")


@pytest.mark.parametrize("where", ["opset", "description", "pip_extra", "product"])
def test_alias_bombs_anywhere_in_the_matrix_are_refused(tmp_path, where):
    bomb = "".join("  " + line + "\n" for line in laughs(7, 12).splitlines())
    body = {"opset": "    opset: *a6\n", "description": "    description: *a6\n", "pip_extra": "    pip_extra: *a6\n",
            "product": ""}[where]
    text = f"version: 1\ndefaults:\n  description: x\n_bombs: &b\n{bomb}targets:\n  t:\n{body}"
    if where == "product":
        text = f"version: 1\n_bombs:\n{bomb}axes:\n  - name: t-{{torch}}\n    product:\n      torch: *a6\n"
    refused(matrix(tmp_path, text), "aliases expand")


def test_aliases_within_budget_still_work(tmp_path):
    text = "version: 1\ntargets:\n  a: &d\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in VALID.items())
    text += "  b: *d\n  c: *d\n"
    assert sorted(load_matrix(matrix(tmp_path, text)).targets) == ["a", "b", "c"]


@pytest.mark.parametrize("template", ["t{torch:>3000000000}", "t{torch:{opset}}", "t{torch!r}", "t{torch.real}",
                                      "t{torch[0]}", "t{0}", "t{}", "t{torch:,}", "t{{{torch:>99999999}}}"])
def test_format_specs_in_name_templates_are_refused_unrun(tmp_path, template):
    doc = {"version": 1, "defaults": VALID, "axes": [{"name": template, "product": {"torch": ["2.4", "2.5"], "opset": [17]}}]}
    refused(matrix(tmp_path, doc), "name template")


def test_plain_name_templates_still_expand(tmp_path):
    doc = {"version": 1, "defaults": VALID, "axes": [{"name": "t{torch}-o{opset}", "product": {"torch": ["2.4", "2.5"], "opset": [17]}}]}
    assert sorted(load_matrix(matrix(tmp_path, doc)).targets) == ["t2.4-o17", "t2.5-o17"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null", "/dev/stdin"])
def test_devices_as_the_matrix_are_refused_at_once(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    proc = envctl("matrix", "show", "--matrix", device)
    assert proc.returncode == 2 and "regular file" in proc.stderr, proc.stderr


def test_a_fifo_as_the_matrix_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "matrix.yaml"
    os.mkfifo(fifo)
    proc = envctl("matrix", "show", "--matrix", str(fifo))
    assert proc.returncode == 2 and "FIFO" in proc.stderr, proc.stderr


def test_a_fifo_lock_or_folder_is_refused_by_the_api(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(EnvctlError, match="regular file"):
        load_matrix(tmp_path / "dir.yaml")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    done = threading.Event()

    def writer_of_last_resort() -> None:  # unblocks a hung open so a failure cannot hang the suite
        if not done.wait(CEILING):
            with open(fifo, "w"):
                pass

    threading.Thread(target=writer_of_last_resort, daemon=True).start()
    try:
        with pytest.raises(EnvctlError, match="FIFO"):
            load_matrix(fifo)
    finally:
        done.set()


def test_an_oversized_matrix_is_refused_before_parsing(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 200_000)
    refused(path, "more than")


def test_huge_values_give_bounded_messages(tmp_path):
    doc = {"version": 1, "targets": {"t": {**VALID, "opset": "9" * 500_000}}}
    refused(matrix(tmp_path, doc), "opset")
    nested = {"version": 1, "targets": {"t": {**VALID, "cuda": [[["x" * 100] * 10] * 10] * 5}}}
    refused(matrix(tmp_path, nested), "cuda")


# ---------------------------------------------------------------- item 5: control characters


@pytest.mark.parametrize(("field", "value"), [
    ("pip_extra", ["six\n--extra-index-url http://evil.invalid/simple"]),
    ("pip_extra", ["six\r--index-url http://evil.invalid"]),
    ("pip", ["torch\n-e ."]),
    ("conda_extra", ["numpy\x00"]),
    ("channels", ["conda-forge\t"]),
    ("description", "one\rtwo: injected"),
    ("description", "bell\x07"),
    ("description", "csi\u009b31m red"),  # C1 controls (YAML itself folds a raw NEL into a space)
    ("pip_extra", ["six\u009b31m"]),  # C1 controls: CSI, the one-byte ANSI escape
    ("cuda", "12.4\n"),
    ("onnxruntime_build", "cpu\t"),
    ("xfail", "line\u2028separator"),
    ("python", "3.11\n"),
    ("models", ["cnn\n"]),
    ("pip_options", {"index_url": "https://x.invalid/simple\n--trusted-host x"}),
    ("pip_options", {"extra_index_urls": ["https://x.invalid\n"]}),
    ("host_provides", {"notes": "a\x1b[31mred"}),
    ("virtual_packages", {"__glibc": "2.31\n"}),
    # Keys of mappings: a field's own parser would strip these, then call them unknown.
    ("pip_options", {"index_url\n": "https://x.invalid/simple"}),
    ("runner_labels", {"linux-64\n": ["gpu"]}),
    ("runner_labels", {"linux-64": ["gpu", "big\u2029"]}),
    ("virtual_packages", {"__glibc\r": "2.31"}),
])
def test_control_characters_in_any_field_are_refused(tmp_path, field, value):
    doc = {"version": 1, "targets": {"t": {**VALID, field: value}}}
    refused(matrix(tmp_path, doc), "not allowed")


@pytest.mark.parametrize("value", [
    {"k\n": "v"},
    {"k": "v\x1b"},
    [{"k": ["fine", {"deep": "x\ty"}]}],
    {"outer": {"inner": ("a", "b\u0085")}},
    [[["\r"]]],
])
def test_the_catch_all_looks_at_every_string_at_any_depth_keys_included(value):
    """Before any field's own parser runs, every string of a one-line field is checked, nested at any depth."""
    from envctl.matrix.fields import FieldError, parse_field

    with pytest.raises(FieldError, match="not allowed"):
        parse_field("runner_labels", value)  # the field's parser would refuse these shapes for other reasons


@pytest.mark.parametrize("name", ["t\n", "t\r", "\nt", "a\u0085b", "t\x7f"])
def test_control_characters_in_target_names_are_refused(tmp_path, name):
    doc = {"version": 1, "targets": {name: VALID}}
    refused(matrix(tmp_path, doc), "not allowed")


def test_control_characters_from_an_axis_value_are_refused(tmp_path):
    doc = {"version": 1, "defaults": VALID, "axes": [{"name": "t{python}", "product": {"python": ["3.11\n"]}}]}
    refused(matrix(tmp_path, doc), "not allowed")


@pytest.mark.parametrize("item", ["--extra-index-url http://evil.invalid/simple", "-i http://x.invalid", "-e .", "-r other.txt"])
def test_installer_options_in_package_lists_are_refused(tmp_path, item):
    for field in ("pip_extra", "conda_extra"):
        doc = {"version": 1, "targets": {"t": {**VALID, field: [item]}}}
        refused(matrix(tmp_path, doc), "installer option")


def test_block_scalars_span_lines_only_in_free_text(tmp_path):
    base = "version: 1\ntargets:\n  t:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in VALID.items())
    ok = load_matrix(matrix(tmp_path, base + "    description: |\n      one line\n"))
    assert ok.targets["t"].description == "one line"
    two = load_matrix(matrix(tmp_path, base + "    description: |\n      one\n      two\n"))
    assert two.targets["t"].description == "one\ntwo"  # free text; its writers fold or quote it
    refused(matrix(tmp_path, base + "    pip_extra:\n      - |\n        six\n        --index-url http://x.invalid\n"), "newline")


# ---------------------------------------------------------------- item 9: merge keys, timeouts


def test_yaml_merge_keys_with_overrides(tmp_path):
    text = "version: 1\ntargets:\n  base: &d\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in VALID.items())
    text += "    timeout: 60\n  e: &e\n    <<: *d\n    opset: 16\n"
    text += "  a:\n    <<: *d\n    opset: 18\n  b:\n    <<: [*e, *d]\n  c:\n    <<: *d\n"
    targets = load_matrix(matrix(tmp_path, text)).targets
    assert targets["a"].opset == 18 and targets["a"].timeout == 60
    assert targets["b"].opset == 16  # the first mapping in a merge list wins, as YAML 1.1 says
    assert targets["c"].opset == 17
    refused(matrix(tmp_path, text + "  d:\n    <<: *d\n    opset: 18\n    opset: 19\n"), "duplicate key 'opset'")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400", "0", "-1", "1e12", "true"])
def test_timeouts_that_cannot_be_a_timer_are_refused(tmp_path, value):
    text = "version: 1\ntargets:\n  t:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in VALID.items())
    refused(matrix(tmp_path, text + f"    timeout: {value}\n"), "timeout")


@pytest.mark.parametrize("field", ["atol", "rtol"])
@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_tolerances_must_be_finite(tmp_path, field, value):
    text = "version: 1\ntargets:\n  t:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in VALID.items())
    refused(matrix(tmp_path, text + f"    {field}: {value}\n"), field)


def test_fractional_timeouts_are_kept(tmp_path):
    doc = {"version": 1, "targets": {"t": {**VALID, "timeout": 0.5}, "u": {**VALID, "timeout": 900}}}
    targets = load_matrix(matrix(tmp_path, doc)).targets
    assert targets["t"].timeout == 0.5
    assert targets["u"].timeout == 900 and isinstance(targets["u"].timeout, int)  # hashes of existing targets unchanged


def test_a_fifo_in_place_of_a_rendered_file_or_env_state_is_refused_not_waited_on(tmp_path):
    from envctl.create.build import env_state
    from envctl.lock.render import render_target

    path = matrix(tmp_path, {"version": 1, "targets": {"t": VALID}})
    target = load_matrix(path).targets["t"]
    rendered = tmp_path / "envs" / "t" / "environment.yml"
    rendered.parent.mkdir(parents=True)
    os.mkfifo(rendered)
    with pytest.raises(EnvctlError, match="FIFO"):
        render_target(tmp_path, target, path)
    prefix = tmp_path / "env" / "conda-meta"
    prefix.mkdir(parents=True)
    os.mkfifo(prefix / "envctl-state.json")
    assert env_state(prefix.parent) is None
