"""The README and docs/ say what the code does: rules table, test command, links, benchmark counts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from envctl.rules.api import describe_rules

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_rules_table_is_the_rule_registry():
    text = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    rows = [re.fullmatch(r"\| `([a-z0-9-]+)` \| (.*) \|", line) for line in text.splitlines()]
    table = [(m.group(1), m.group(2)) for m in rows if m]
    assert table == describe_rules(), "docs/rules.md's table differs from envctl.rules.api.describe_rules()"
    assert "docs/rules.md" in README


def test_readme_links_and_contents_resolve():
    anchors = {_slug(line.lstrip("#")) for line in README.splitlines() if line.startswith("#")}
    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, f"README links to #{target}, which no heading makes"
    for path in re.findall(r"\]\(((?:docs|src|tests|scripts)/[^)#]+)\)", README):
        assert (REPO / path).exists(), path
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"\(#([^)]+)\)", contents)
    assert listed == [_slug(line[3:]) for line in README.splitlines() if line.startswith("## ") and line != "## Contents"]


def test_the_test_command_installs_what_the_tests_need_and_ci_runs_it():
    block = README.split("<!-- test-command -->", 1)[1].split("<!-- /test-command -->", 1)[0]
    command = " ".join(line for line in block.splitlines() if line.strip() and not line.startswith("```"))
    assert re.search(r"pip install -e \"\.\[test\]\" && python -m pytest", command), command
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and 'eval "$test_command"' in ci
    assert "pip install" not in ci  # no installs of its own: the README's command does them
    # .ci/run extracts exactly that command
    extracted = subprocess.run(
        ["bash", "-c", "sed -n '/<!-- test-command -->/,/<!-- \\/test-command -->/p' README.md | grep -v '^<!--' "
                       "| grep -v '^```' | sed '/^[[:space:]]*$/d'"], cwd=REPO, capture_output=True, text=True, check=True)
    assert extracted.stdout.strip() == command.strip()


def test_benchmark_doc_states_the_scripts_run_counts():
    bench = (REPO / "scripts" / "bench").read_text()
    repeat = re.search(r'"--repeat", type=int, default=(\d+)', bench).group(1)
    noop = re.search(r'"--noop-runs", type=int, default=(\d+)', bench).group(1)
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    assert f"[--repeat {repeat}]" in doc and f"[--noop-runs {noop}]" in doc
    assert f"`--repeat` rounds (default {repeat})" in doc and f"`--noop-runs` each (default {noop})" in doc
    assert f"[--repeat {repeat}]" in bench.split('"""')[1]  # the script's own usage line
    assert "docs/benchmarks.md" in README
