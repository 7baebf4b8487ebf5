"""Whole-matrix certification end to end: `envctl certify --all -j 2` on a real matrix.

Targets are built offline from the local conda channel (python) and pip's
wheels (torch 2.13.0 CPU, onnx, onnxruntime), with different onnx /
onnxruntime / opset / exporter choices, one expected to fail and one for
linux-aarch64 that can only be locked here.
"""

from __future__ import annotations

import copy
import json
import math
import re
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.certify.certificate import Certificate
from envctl.cli import app
from envctl.host.platform import host_platform
from envctl.suite.certify_all import SuiteResult, TargetResult, compare_fingerprints, drift
from support.project import pip_target, write_project
from support.shared import XFAIL, shared_targets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

runner = CliRunner()
RUNNABLE = ("ort-latest-o18", "ort119-o17", "dynamo-o18")


@pytest.fixture(scope="module")
def matrix(shared_project, local_channel) -> Path:
    # In the session's shared project: old-runtime's env and aarch64-only's lock are made once there.
    root, _ = shared_project
    targets = {
        "ort-latest-o18": pip_target(local_channel, models=["cnn"]),
        "ort119-o17": pip_target(local_channel, onnxruntime="1.19.2", onnx="1.17.*", opset=17, models=["cnn"]),
        "dynamo-o18": pip_target(local_channel, exporters=["dynamo"], models=["cnn"]),
        **shared_targets(local_channel),  # the xfail target and the lock-only one
    }
    return write_project(root, targets, name="suite.yaml")


@pytest.fixture(scope="module")
def suite_run(matrix):
    root = matrix.parent.parent
    out = root / "suite-reports"
    step_summary = out / "step-summary.md"
    out.mkdir()
    step_summary.write_text("earlier step\n")
    result = runner.invoke(app, ["certify", "--all", "-j", "2", "--junit", str(out / "junit.xml"),
                                 "--markdown", str(out / "summary.md"), "--json", "--matrix", str(matrix)],
                           env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert "Traceback" not in result.output, result.output
    return result, json.loads(result.stdout), out


def test_matrix_has_no_rule_errors_except_the_xfail(matrix):
    result = runner.invoke(app, ["matrix", "check", "--json", "--matrix", str(matrix)])
    status = {name: t["status"] for name, t in json.loads(result.stdout)["targets"].items()}
    assert status.pop("old-runtime") == "error"  # the reason it is marked xfail
    assert set(status.values()) <= {"ok", "warning"}, status


def test_certify_all_in_parallel(suite_run):
    result, data, _ = suite_run
    assert result.exit_code == 0, result.output
    outcomes = {t["target"]: t["outcome"] for t in data["targets"]}
    assert outcomes == {"ort-latest-o18": "passed", "ort119-o17": "passed", "dynamo-o18": "passed",
                        "old-runtime": "xfailed", "aarch64-only": "lock-only"}
    assert data["counts"] == {"passed": 3, "failed": 0, "xfailed": 1, "xpassed": 0, "lock-only": 1}
    by = {t["target"]: t for t in data["targets"]}
    # the xfailed target fails for the reason it is marked, at the session stage
    assert by["old-runtime"]["failure"]["class"] == "opset_unsupported"
    assert by["old-runtime"]["xfail"] == XFAIL
    # lock-only: locked for its platform, nothing ran, never counted as passed
    lock_only = by["aarch64-only"]
    assert "linux-aarch64" in lock_only["reason"] and lock_only["lock"]["fresh"] is True
    assert lock_only["runs"] == []
    # each target ran in its own env with the versions its matrix entry asked for
    assert by["ort119-o17"]["versions"]["onnxruntime"] == "1.19.2"
    assert by["ort119-o17"]["versions"]["onnx"].startswith("1.17.")
    assert by["old-runtime"]["versions"]["onnxruntime"] == "1.16.3"
    assert {by[t]["runs"][0]["exporter"] for t in RUNNABLE} == {"torchscript", "dynamo"}
    for name in RUNNABLE:
        assert by[name]["versions"]["torch"].startswith("2.13.0")
        assert Path(by[name]["certificate"]).exists()
    # progress went to stderr, one line per step, each naming its target
    assert "aarch64-only" in result.stderr and "LOCK-ONLY" in result.stderr


def progress_lines(stderr: str) -> list[tuple[str, str]]:
    """(target, text) of each plain progress line (`  12.3s  target  text`), in the order written."""
    found = []
    for line in stderr.splitlines():
        m = re.match(r"\s*\d+\.\ds  (\S+)\s+(.*)$", line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def test_certify_all_runs_targets_at_the_same_time(suite_run):
    """-j 2 really overlaps targets: a smoke run starts while another target's smoke run is still going.

    Each target's smoke run starts at its `certify: smoke export-and-infer` line and ends at its outcome
    line (PASSED, XFAILED, ...). With one worker those intervals come one after another.
    """
    result, _, _ = suite_run
    lines = progress_lines(result.stderr)
    runs = {}
    for name in (*RUNNABLE, "old-runtime"):
        mine = [i for i, (target, _) in enumerate(lines) if target == name]
        start = [i for i in mine if lines[i][1].startswith("certify: smoke")]
        assert start and mine, (name, result.stderr)
        runs[name] = (start[0], mine[-1])
    overlapping = [(a, b) for a, b in combinations(runs, 2) if runs[a][0] < runs[b][1] and runs[b][0] < runs[a][1]]
    assert overlapping, result.stderr


def test_junit_counts(suite_run):
    _, _, out = suite_run
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    # Jenkins' JUnit schema accepts the file (it has no `skipped` on <testsuites>)
    from lxml import etree

    xsd = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[1] / "data" / "jenkins-junit-10.xsd")))
    xsd.assertValid(etree.parse(str(out / "junit.xml")))
    # 3 passing cnn runs + old-runtime's xfailed run + aarch64-only's 3 models as skipped
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == \
        {"tests": "7", "failures": "0", "errors": "0", "skipped": None}
    assert sum(int(s.get("skipped")) for s in root.findall("testsuite")) == 4
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    # classname "<target>.<platform>": a run is for this host's platform, lock-only for the target's
    assert set(cases) == {("ort-latest-o18.linux-64", "cnn[torchscript]"), ("ort119-o17.linux-64", "cnn[torchscript]"),
                          ("dynamo-o18.linux-64", "cnn[dynamo]"), ("old-runtime.linux-64", "cnn[torchscript]"),
                          *(("aarch64-only.linux-aarch64", f"{m}[torchscript]") for m in ("cnn", "transformer", "rnn"))}
    xfailed = cases[("old-runtime.linux-64", "cnn[torchscript]")].find("skipped")
    assert XFAIL in xfailed.get("message") and "opset_unsupported" in xfailed.get("message")
    for model in ("cnn", "transformer", "rnn"):
        assert "linux-aarch64" in cases[("aarch64-only.linux-aarch64", f"{model}[torchscript]")].find("skipped").get("message")
    for name in RUNNABLE:
        suite = root.find(f"testsuite[@name='{name}']")
        assert suite.get("tests") == "1" and suite.get("failures") == "0"
        assert suite.find("properties/property[@name='version.torch']").get("value").startswith("2.13.0")


def test_markdown_summary_and_step_summary(suite_run):
    _, _, out = suite_run
    text = (out / "summary.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `") and "target(s)" not in line}
    assert set(rows) == {*RUNNABLE, "old-runtime", "aarch64-only"}
    for name in RUNNABLE:
        assert "passed" in rows[name]
    assert "xfailed" in rows["old-runtime"] and "opset_unsupported" in rows["old-runtime"]
    assert "lock-only" in rows["aarch64-only"] and "linux-aarch64" in rows["aarch64-only"]
    assert "### Drift across targets" in text
    drift_rows = [line for line in text.split("### Drift across targets")[1].splitlines() if line.startswith("| `cnn`")]
    assert len(drift_rows) == 1 and "3 in 3 target(s)" in drift_rows[0] and "ok (" in drift_rows[0]
    # appended to GitHub's step summary, after what earlier steps wrote
    summary = (out / "step-summary.md").read_text()
    assert summary.startswith("earlier step\n") and text in summary


def test_drift_across_targets_is_computed_and_within_tolerance(suite_run, matrix):
    _, data, _ = suite_run
    (cnn,) = data["drift"]
    assert cnn["model"] == "cnn"
    assert set(cnn["members"]) == {"ort-latest-o18[torchscript]", "ort119-o17[torchscript]", "dynamo-o18[dynamo]"}
    assert cnn["pairs"] == 3 and cnn["incomparable"] == [] and cnn["above"] == []
    # the same seeded inputs reached every env
    certs = {n: json.loads((matrix.parent.parent / "certs" / f"{n}.json").read_text()) for n in RUNNABLE}
    fps = {n: c["runs"][0]["fingerprint"] for n, c in certs.items()}
    assert len({fp["input_sha256"] for fp in fps.values()}) == 1
    # recomputed by hand from the certificates: the largest sampled difference between any two targets
    expected = max(abs(x - y) for a, b in combinations(fps.values(), 2)
                   for oa, ob in zip(a["outputs"], b["outputs"]) for x, y in zip(oa["samples"], ob["samples"]))
    worst = cnn["worst"]
    assert worst["max_abs"] == pytest.approx(expected, rel=0, abs=0)
    assert {worst["a"], worst["b"]} <= set(cnn["members"])
    assert 0 <= worst["max_abs"] < worst["tolerance"] and worst["ratio"] < 1
    assert worst["tolerance"] >= 1e-4  # at least atol


def test_drift_flags_real_fingerprints_pushed_apart(matrix, suite_run):
    """The comparison on a real fingerprint: nudged past tolerance, other inputs, other shape."""
    cert = json.loads((matrix.parent.parent / "certs" / "ort119-o17.json").read_text())
    fp = cert["runs"][0]["fingerprint"]
    member = {"label": "a[torchscript]", "fingerprint": fp, "atol": 1e-4, "rtol": 1e-3}

    def other(change) -> dict:
        twin = copy.deepcopy(fp)
        change(twin)
        return member | {"label": "b[torchscript]", "fingerprint": twin}

    assert compare_fingerprints(member, other(lambda f: None))["max_abs"] == 0
    value = fp["outputs"][0]["samples"][3]
    pushed = compare_fingerprints(member, other(lambda f: f["outputs"][0]["samples"].__setitem__(3, value + 0.05)))
    assert pushed["above"] and pushed["max_abs"] == pytest.approx(0.05) and pushed["ratio"] > 1
    close = compare_fingerprints(member, other(lambda f: f["outputs"][0]["samples"].__setitem__(3, value + 5e-5)))
    assert not close["above"] and 0 < close["ratio"] < 1
    nan = compare_fingerprints(member, other(lambda f: f["outputs"][0]["samples"].__setitem__(3, "nan")))
    assert nan["above"] and math.isinf(nan["max_abs"])
    inputs = compare_fingerprints(member, other(lambda f: f.__setitem__("input_sha256", "0" * 64)))
    assert not inputs["comparable"] and "inputs differ" in inputs["problem"]
    # in a whole run, a member with other inputs is set apart, never paired
    results = [TargetResult(name, "passed", 1.0, certificate=Certificate.from_json(
                                json.loads(json.dumps(cert) if name != "moved" else
                                           json.dumps(cert).replace(fp["input_sha256"], "0" * 64)) | {"target": name}))
               for name in ("x", "y", "moved")]
    (entry,) = drift(results)
    assert entry["pairs"] == 1 and entry["incomparable"][0]["members"] == ["moved[torchscript]"]
    # drift is reported; it fails the run only with --fail-on-drift
    pushed_cert = copy.deepcopy(cert) | {"target": "pushed"}
    pushed_cert["runs"][0]["fingerprint"]["outputs"][0]["samples"][3] = value + 0.05
    results = [results[0], TargetResult("pushed", "passed", 1.0, certificate=Certificate.from_json(pushed_cert))]
    assert SuiteResult(matrix, results, drift(results), 1.0).ok
    strict = SuiteResult(matrix, results, drift(results), 1.0, fail_on_drift=True)
    assert strict.drifted == ["cnn"] and not strict.ok
    shape = compare_fingerprints(member, other(lambda f: f["outputs"][0].__setitem__("shape", [2, 11])))
    assert shape["above"] and "shape" in shape["problem"]


@pytest.fixture(scope="module")
def surprise_matrix(tmp_path_factory, local_channel) -> Path:
    root = tmp_path_factory.mktemp("suite-surprise")
    return write_project(root, {
        # marked broken, but it works: the run must say so and fail
        "surprise": pip_target(local_channel, models=["cnn"], xfail="thought to be broken"),
        # no python 3.99 in the channel: a solve failure, recorded as this target's failure
        "unsolvable": pip_target(local_channel, python="3.99", models=["cnn"]),
    })


def test_unexpected_pass_fails_the_run(surprise_matrix):
    junit = surprise_matrix.parent.parent / "junit.xml"
    result = runner.invoke(app, ["certify", "surprise", "unsolvable", "-j", "2", "--junit", str(junit),
                                 "--matrix", str(surprise_matrix)], env={"GITHUB_STEP_SUMMARY": None})
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1
    table = " ".join(result.stdout.split())  # rich wraps long lines
    assert "xpassed" in table and "remove `xfail`" in table
    assert "lock_failure" in table and "python 3.99" in table  # the solver's cause, not only its headline
    assert "FAILED: 1 failed, 1 xpassed" in table
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("2", "2", None)  # Jenkins' schema: no skipped here
    assert [s.get("skipped") for s in root.findall("testsuite")] == ["0", "0"]
    xpass = root.find("testsuite[@name='surprise']/testcase[@name='cnn[torchscript]']/failure")
    assert xpass.get("type") == "xpassed" and "thought to be broken" in xpass.get("message")
    env = root.find("testsuite[@name='unsolvable']/testcase[@name='unsolvable[env]']/failure")
    assert env.get("type") == "lock_failure" and "python 3.99" in env.text


def test_usage_errors_are_one_line_with_exit_2(surprise_matrix):
    for args, needle in ((["certify"], "or pass --all"), (["certify", "--all", "surprise"], "not both"),
                         (["certify", "surprize"], "Did you mean 'surprise'"),
                         (["certify", "--all", "--prefix", "/tmp/x"], "--prefix"),
                         (["certify", "--all", "-j", "0"], "at least 1")):
        result = runner.invoke(app, [*args, "--matrix", str(surprise_matrix)])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output
