"""The JUnit file against Jenkins' JUnit schema, and test ids that survive Jenkins' classname split.

The XML writer's input is the suite's result records; here they are built from certificate JSON
of every outcome (the end-to-end run in test_suite.py validates a real run's file the same way).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree

from envctl.certify.certificate import Certificate
from envctl.suite.certify_all import SuiteResult, TargetResult
from envctl.suite.junit import classname, junit_xml

XSD = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[1] / "data" / "jenkins-junit-10.xsd")))
STAGES = [{"name": "export", "status": "passed", "seconds": 1.25}, {"name": "inference", "status": "passed", "seconds": 0.5}]


def cert(target: str, result: str, runs: list[dict], platform: str, **extra) -> Certificate:
    return Certificate.from_json({"target": target, "result": result, "host": {"platform": platform},
                                  "runs": runs, "created_at": "2026-12-02T10:00:00+00:00"} | extra)


def run(model: str, status: str = "passed", **extra) -> dict:
    return {"model": model, "exporter": "torchscript", "status": status, "stages": STAGES} | extra


FAILURE = {"class": "numeric_mismatch", "stage": "inference", "message": "max_abs 0.3 > 1e-4 \x07 <&>", "remedy": "x"}


def results(platform: str) -> list[TargetResult]:
    def result(target, outcome, certificate=None, **extra):
        return TargetResult(target, outcome, 2.5, certificate=certificate, platform=platform,
                            models=("cnn", "rnn"), exporters=("torchscript",), **extra)

    return [
        result("linux-cuda11.8", "passed", cert("linux-cuda11.8", "passed", [run("cnn"), run("rnn")], platform)),
        result("broken", "failed", cert("broken", "failed", [run("cnn", "failed", failure=FAILURE), run("rnn")], platform)),
        result("known", "xfailed", cert("known", "failed", [run("cnn", "failed", failure=FAILURE)], platform), xfail="old ORT"),
        result("fixed", "xpassed", cert("fixed", "passed", [run("cnn")], platform), xfail="was broken"),
        result("unsolvable", "failed", failure={"class": "lock_failure", "stage": "lock", "message": "no python 3.99"}),
        result("gpu.multi", "lock-only", reason="lock-only: needs CUDA", platforms=("linux-64", "win-64")),
        result("skips", "passed", cert("skips", "passed", [run("cnn", "skipped")], platform)),
    ]


def report(platform: str) -> ET.Element:
    text = junit_xml(SuiteResult(Path("m.yaml"), results(platform), [], 12.345))
    XSD.assertValid(etree.fromstring(text.encode()))  # Jenkins' schema accepts it
    return ET.fromstring(text)


def test_junit_passes_jenkins_schema_with_every_outcome():
    root = report("linux-64")
    assert set(root.attrib) == {"name", "tests", "failures", "errors", "time"}  # no `skipped` at the root
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert suites["gpu.multi"].get("skipped") == "4" and suites["broken"].get("failures") == "1"
    assert sum(int(s.get("tests")) for s in suites.values()) == int(root.get("tests"))


def test_the_schema_rejects_what_jenkins_rejects():
    bad = b'<testsuites name="x" tests="1" failures="0" errors="0" skipped="1"><testsuite name="a" tests="0" failures="0" errors="0"/></testsuites>'
    assert not XSD.validate(etree.fromstring(bad))  # the attribute today's file no longer writes
    assert not XSD.validate(etree.fromstring(b'<testsuites><testsuite name="a"/></testsuites>'))


def jenkins_split(name: str) -> tuple[str, str]:
    """Jenkins' JUnit plugin: the package is what comes before the classname's last dot."""
    package, _, klass = name.rpartition(".")
    return package, klass


@pytest.mark.parametrize("target", ["linux-cuda11.8", "jetson-cuda11.8", "a.b.c", "plain"])
def test_classname_survives_the_split_at_the_last_dot(target):
    package, klass = jenkins_split(classname(target, "linux-aarch64"))
    assert klass == "linux-aarch64" and package == target.replace(".", "_") and "." not in package


def test_each_platform_has_its_own_test_ids():
    ids = {}
    for platform in ("linux-64", "osx-arm64"):  # one target certified in two CI jobs
        root = report(platform)
        ids[platform] = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
        for case in root.iter("testcase"):
            package, klass = jenkins_split(case.get("classname"))
            assert klass in (platform, "linux-64", "win-64") and "." not in package
    assert ids["linux-64"].isdisjoint({i for i in ids["osx-arm64"] if not i[0].startswith("gpu_multi.")})
    cases = ids["linux-64"]
    assert ("linux-cuda11_8.linux-64", "cnn[torchscript]") in cases
    # a lock-only target lists its cases once per platform it was locked for
    assert {c for c in cases if c[0].startswith("gpu_multi.")} == {
        (f"gpu_multi.{p}", f"{m}[torchscript]") for p in ("linux-64", "win-64") for m in ("cnn", "rnn")}
    assert ("unsolvable.linux-64", "unsolvable[env]") in cases
    assert len(cases) == sum(1 for _ in report("linux-64").iter("testcase"))  # no duplicate ids in one file


def test_fail_on_lock_only_fails_a_run_that_only_locked():
    from envctl.suite.summary import markdown_summary

    mixed = results("linux-64")[:1] + results("linux-64")[5:6]  # one passed, one lock-only
    assert SuiteResult(Path("m.yaml"), mixed, [], 1.0).ok
    strict = SuiteResult(Path("m.yaml"), mixed, [], 1.0, fail_on_lock_only=True)
    assert not strict.ok and strict.lock_only == ["gpu.multi"]
    assert "--fail-on-lock-only" in markdown_summary(strict) and strict.to_json()["lock_only"] == ["gpu.multi"]
    assert SuiteResult(Path("m.yaml"), mixed[:1], [], 1.0, fail_on_lock_only=True).ok


def test_each_case_says_what_happened_to_it():
    """What a CI reader sees per case: the failure's class, message and remedy, why a case was skipped."""
    cases = {(c.get("classname"), c.get("name")): c for c in report("linux-64").iter("testcase")}

    def only(key, tag):
        children = list(cases[key])
        assert [child.tag for child in children] == [tag], (key, [child.tag for child in children])
        return children[0]

    assert list(cases[("linux-cuda11_8.linux-64", "cnn[torchscript]")]) == []  # passed: no child
    failed = only(("broken.linux-64", "cnn[torchscript]"), "failure")
    assert failed.get("type") == "numeric_mismatch" and failed.get("message") == "max_abs 0.3 > 1e-4 ? <&>"
    assert failed.text == "stage: inference\nclass: numeric_mismatch\nmax_abs 0.3 > 1e-4 ? <&>\nremedy: x"
    assert list(cases[("broken.linux-64", "rnn[torchscript]")]) == []
    expected = only(("known.linux-64", "cnn[torchscript]"), "skipped")
    assert expected.get("message") == "xfail: old ORT (failed as expected: numeric_mismatch at inference)"
    assert "max_abs 0.3" in expected.text
    xpassed = only(("fixed.linux-64", "cnn[torchscript]"), "failure")
    assert xpassed.get("type") == "xpassed" and "remove xfail" in xpassed.get("message")
    env = only(("unsolvable.linux-64", "unsolvable[env]"), "failure")
    assert env.get("type") == "lock_failure" and env.get("message") == "no python 3.99" and "stage: lock" in env.text
    assert only(("skips.linux-64", "cnn[torchscript]"), "skipped").get("message") == "skipped by the runner"
    lock_only = only(("gpu_multi.win-64", "rnn[torchscript]"), "skipped")
    assert lock_only.get("message") == "lock-only: needs CUDA"
