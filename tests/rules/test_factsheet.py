"""The fact sheet docs/compatibility.md: every "§N" citation in the project resolves into it.

Citations read "docs/compatibility.md §5" (a section), "§0.2" (item 2 of the
section's numbered list) or "§8 #3" (row 3 of the section's table). The
matrix and code comments cite bare "§N"; they mean the same sheet.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from envctl.rules import facts as F
from envctl.matrix import load_matrix
from envctl.rules.engine import RULES
from envctl.rules.api import check_target

from test_rules import CPU, CU12, CU118, JETSON

REPO = Path(__file__).resolve().parents[2]
SHEET = REPO / "docs" / "compatibility.md"
# "§8 #3, #4" and "§1/§8 #2" carry several references; "§N" (a letter) is prose.
CITE = re.compile(r"§(\d+)(?:\.(\d+))?((?:\s*(?:,|and)?\s*#\d+)*)")
LINK = re.compile(r"\]\(https?://[^)\s]+\)")
COMMAND = re.compile(r"^```|`(?:pip|python|readelf|unzip|git) [^`]+`", re.M)


def _sections() -> dict[str, str]:
    """Heading ("§5", "Appendix A: ...") -> the section's text, for each "## " heading."""
    parts = re.split(r"^## ", SHEET.read_text(encoding="utf-8"), flags=re.M)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def _numbered() -> dict[str, str]:
    """"5" -> text of the section headed "## §5 ..."."""
    return {m.group(1): text for head, text in _sections().items() if (m := re.match(r"§(\d+) \S", head))}


def unresolved(text: str) -> list[str]:
    """The citations in `text` that name no section, list item or table row of the sheet."""
    sections, bad = _numbered(), []
    for m in CITE.finditer(text):
        body = sections.get(m.group(1))
        if body is None:
            bad.append(m.group(0).strip())
            continue
        if m.group(2) and not re.search(rf"^{m.group(2)}\. ", body, re.M):
            bad.append(m.group(0).strip())
        for row in re.findall(r"#(\d+)", m.group(3)):
            if not re.search(rf"^\| {row} \|", body, re.M):
                bad.append(f"§{m.group(1)} #{row}")
    return bad


def _project_files(*roots: str):
    for root in roots:
        path = REPO / root
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in files:
            if "__pycache__" not in p.parts and p.suffix not in {".pyc", ".so"}:
                yield p, p.read_text(encoding="utf-8", errors="replace")


# --- the sheet itself ----------------------------------------------------------
def test_sections_are_numbered_like_the_citations():
    assert sorted(_numbered(), key=int) == [str(n) for n in range(10)]  # §0 .. §9, none skipped


def test_every_section_carries_a_link_or_a_measured_command():
    for head, text in _sections().items():
        assert LINK.search(text) or COMMAND.search(text), f"section {head!r} has no link and no command"


def test_the_sheet_cites_only_its_own_sections():
    assert unresolved(SHEET.read_text(encoding="utf-8")) == []


def test_the_resolver_rejects_missing_sections_items_and_rows():
    assert unresolved("docs/compatibility.md §5; §0.2; §8 #3, #4; §3/§4") == []
    assert unresolved("docs/compatibility.md §42") == ["§42"]
    assert unresolved("(§0.99)") == ["§0.99"]
    assert unresolved("§8 #3, #99") == ["§8 #99"]
    assert unresolved("§5.1") == ["§5.1"]  # §5 has no numbered list at top level


# --- (a) every citation in the project resolves ---------------------------------
@pytest.mark.parametrize("root", ["src", "envs/matrix.yaml", "README.md", "scripts", "docs"])
def test_every_citation_in_the_project_resolves(root):
    cited = 0
    for path, text in _project_files(root):
        cited += len(CITE.findall(text))
        assert unresolved(text) == [], path.relative_to(REPO)
    if root in ("src", "envs/matrix.yaml"):
        assert cited > 10  # the scan saw the citations it is meant to check


# --- (b) rule sources ----------------------------------------------------------
def _facts():
    for name in dir(F):
        value = getattr(F, name)
        if isinstance(value, F.Fact):
            yield name, value
        elif isinstance(value, dict):
            yield from ((f"{name}[{k}]", v) for k, v in value.items() if isinstance(v, F.Fact))


def test_every_fact_source_is_a_link_or_resolves_into_the_sheet():
    facts = dict(_facts())
    assert len(facts) > 100
    for name, fact in facts.items():
        assert "http" in fact.source or F.CF in fact.source, (name, fact.source)
        assert unresolved(fact.source) == [], (name, fact.source)
    assert F.CF == "docs/compatibility.md" and (REPO / F.CF).is_file()


# Each base target, alone and with one change; together they trigger every registered rule.
_CHANGES = [
    dict(pip_options={"find_links": ["https://download.pytorch.org/whl/cpu"]}),  # on a target with no pip part: ignored-setting
    dict(torch="*"), dict(onnx="*"), dict(onnxruntime="*"), dict(numpy=">=2"), dict(numpy="*"), dict(protobuf="*"),
    dict(protobuf="<4"), dict(opset=14), dict(opset=21), dict(opset=24), dict(exporters=["dynamo"]),
    dict(exporters=["dynamo"], onnxscript="*"), dict(cudnn="8"), dict(cudnn="9"), dict(python="3.8"),
    dict(python="3.10"), dict(channels=["pytorch", "conda-forge"]), dict(platforms=["osx-arm64"]), dict(cuda="11.8"),
    dict(torch="2.16"), dict(pip=["torch", "onnx", "onnxruntime", "protobuf", "numpy"]), dict(onnx="1.22.*"),
    dict(onnxruntime="1.17.*", exporters=["dynamo"]), dict(pip_options=None),
    dict(onnxruntime="1.27.*", protobuf="4.21.*", pip=["onnxruntime"]),
    dict(host_provides={"jetpack": "5.1.2", "l4t": "R36.4.0", "cuda": "10.2", "cudnn": "9.3", "tensorrt": "10.3"}),
]


def test_every_rule_finding_cites_a_resolving_source(tmp_path: Path):
    bases = {"cpu": CPU, "cu118": CU118, "cu12": CU12, "jetson": JETSON}
    targets = {}
    for (name, base), i in itertools.product(bases.items(), range(len(_CHANGES) + 1)):
        body = {**base, **(_CHANGES[i - 1] if i else {})}
        targets[f"{name}-{i}"] = {k: v for k, v in body.items() if v is not None}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}))
    matrix = [*load_matrix(path).targets.values(), *load_matrix(REPO / "envs" / "matrix.yaml").targets.values()]
    fired: set[str] = set()
    for target in matrix:
        for f in check_target(target):
            fired.add(f.rule)
            # A URL, the sheet, or (for a target contradicting itself) the user's own matrix.
            assert "http" in f.source or F.CF in f.source or f.source.startswith("matrix "), (f.rule, f.source)
            assert "compat-facts" not in f.source and "shared/" not in f.source, (f.rule, f.source)
            assert unresolved(f.source) == [], (f.rule, f.source)
    # A rule no target here triggers is unchecked: add a change above that makes it fire.
    assert {rule.id for rule in RULES} <= fired


# --- (c) nothing points outside the repository --------------------------------------
@pytest.mark.parametrize("root", ["src", "envs", "scripts", "README.md", "docs"])
def test_nothing_points_at_the_outside_fact_sheet(root):
    for path, text in _project_files(root):
        for banned in ("shared/", "compat-facts"):
            assert banned not in text, f"{path.relative_to(REPO)} mentions {banned!r}"


def test_the_docs_link_the_sheet_where_they_describe_the_rules():
    concept = (REPO / "docs" / "concepts" / "matrix.md").read_text(encoding="utf-8")
    rules = concept.split("\n## The rules\n", 1)[1].split("\n## ", 1)[0]
    assert "](../compatibility.md)" in rules
    assert "](docs/compatibility.md)" in (REPO / "README.md").read_text(encoding="utf-8")
