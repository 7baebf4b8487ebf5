"""JUnit XML for a whole-matrix certification, for CI test reporters.

One <testsuite> per target and one <testcase> per platform, model and
exporter, so a test's identity is the same on every runner and unique across
the jobs of one CI run: classname = "<target>.<platform>" with the dots of the
target's name written as "_" (Jenkins splits a classname at its last dot into
package and class, so `linux-cuda11.8` on linux-64 becomes package
`linux-cuda11_8`, class `linux-64`), name = "model[exporter]". A run covers
the host's platform; a lock-only target lists the same cases, skipped, for
each of its platforms. The exact target name is the testsuite's name. A
failure the runs do not show (timeout, crash, a failed lock or create) is one
case named "<target>[env]".

The file validates against the Jenkins xunit plugin's JUnit schema
(junit-10.xsd; tests/suite/test_junit_schema.py): in particular the root
<testsuites> carries only name, time, tests, failures and errors.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# XML 1.0 forbids most control characters; runner output and tracebacks can hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object, limit: int | None = None) -> str:
    text = _NOT_XML.sub("?", "" if value is None else str(value))
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _failure_text(f: dict) -> str:
    return _text(f"stage: {f.get('stage', '')}\nclass: {f.get('class', '')}\n{f.get('message', '')}\n"
                 f"remedy: {f.get('remedy') or '-'}")


def classname(target: str, platform: str) -> str:
    """"<target>.<platform>" that survives a split at the last dot (see the module's docstring)."""
    return f"{target.replace('.', '_')}.{platform or 'host'}"


def _case(suite_el: ET.Element, klass: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite_el, "testcase", classname=klass, name=name, time=f"{seconds:.3f}")


def _run_seconds(run: dict) -> float:
    return sum(float(s.get("seconds") or 0) for s in run.get("stages") or [])


def _skip_message(run: dict) -> str:
    for stage in run.get("stages") or []:
        if stage.get("status") == "skipped" and stage.get("message"):
            return stage["message"]
    return "skipped by the runner"


def _target_suite(t) -> ET.Element:
    el = ET.Element("testsuite", name=t.target)
    props = ET.SubElement(el, "properties")
    ET.SubElement(props, "property", name="outcome", value=t.outcome)
    ET.SubElement(props, "property", name="platform", value=_text(t.platform))
    if t.xfail:
        ET.SubElement(props, "property", name="xfail", value=_text(t.xfail))
    for key, value in ((t.certificate.versions if t.certificate else None) or {}).items():
        if value not in (None, ""):
            ET.SubElement(props, "property", name=f"version.{key}", value=_text(value))
    xfail_note = f"xfail: {t.xfail}"
    here = classname(t.target, t.platform)
    if t.outcome == "lock-only":  # nothing ran: the same cases, skipped, for every platform of the target
        for platform in t.platforms or (t.platform,):
            for model in t.models or ("smoke",):
                for exporter in t.exporters or ("-",):
                    case = _case(el, classname(t.target, platform), f"{model}[{exporter}]", 0.0)
                    ET.SubElement(case, "skipped", message=_text(t.reason))
        return el
    shown = False  # does some run's case carry the target's failure?
    caveats = (t.certificate.caveats if t.certificate else None) or []
    for run in t.runs:
        case = _case(el, here, f"{run['model']}[{run['exporter']}]", _run_seconds(run))
        notes = [c for c in caveats if (c.model, c.exporter) == (run.get("model"), run.get("exporter"))]
        status, f = run.get("status"), run.get("failure") or {}
        if status == "skipped":
            ET.SubElement(case, "skipped", message=_text(_skip_message(run)))
        elif status == "failed":
            shown = True
            if t.outcome == "xfailed":
                ET.SubElement(case, "skipped", message=_text(f"{xfail_note} (failed as expected: {f.get('class')} "
                                                              f"at {f.get('stage')})", 1000)).text = _failure_text(f)
            else:
                node = ET.SubElement(case, "failure", type=_text(f.get("class")), message=_text(f.get("message"), 1000))
                node.text = _failure_text(f)
        elif t.outcome == "xpassed":
            ET.SubElement(case, "failure", type="xpassed",
                          message=_text(f"expected to fail ({t.xfail}) but passed: remove xfail from the matrix"))
        if notes:  # a pass with what it could not prove (the schema allows system-out after the outcome)
            ET.SubElement(case, "system-out").text = _text("\n".join(f"caveat ({c.kind}): {c.message}" for c in notes))
    if t.outcome in ("failed", "xfailed") and not shown:
        f = t.failure or {"class": "unknown", "stage": "certify", "message": "failed without a recorded failure"}
        case = _case(el, here, f"{t.target}[env]", t.seconds)
        if t.outcome == "xfailed":
            ET.SubElement(case, "skipped", message=_text(f"{xfail_note} (failed as expected: {f.get('class')})", 1000)).text = _failure_text(f)
        else:
            node = ET.SubElement(case, "failure", type=_text(f.get("class")), message=_text(f.get("message"), 1000))
            node.text = _failure_text(f)
        tail = ((t.certificate.runner if t.certificate else None) or {}).get("output_tail")
        if tail:
            ET.SubElement(case, "system-out").text = _text(tail)
    return el


def _count(el: ET.Element) -> dict[str, int]:
    cases = el.iter("testcase")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in cases:
        counts["tests"] += 1
        counts["failures"] += case.find("failure") is not None
        counts["skipped"] += case.find("skipped") is not None
    return counts


def junit_xml(suite) -> str:
    root = ET.Element("testsuites", name="envctl certify")
    for t in suite.targets:
        el = _target_suite(t)
        el.attrib.update({k: str(v) for k, v in _count(el).items()}, time=f"{t.seconds:.3f}")
        root.append(el)
    # Jenkins' schema allows no `skipped` on <testsuites> (each <testsuite> has its own).
    counts = {k: str(v) for k, v in _count(root).items() if k != "skipped"}
    root.attrib.update(counts, time=f"{suite.seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
