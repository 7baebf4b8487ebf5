"""The README and docs/ say what the code does: rules table, test command, links, benchmark counts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from envctl.rules.api import describe_rules

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_rules_table_is_generated_from_the_rule_registry():
    """docs/rules.md holds markers, not a table: the site's hook fills them from the registry,
    so adding a rule touches no doc."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_cli_reference", REPO / "scripts" / "gen_cli_reference.py")
    hook = importlib.util.module_from_spec(spec)
    sys.modules["gen_cli_reference"] = hook  # its dataclasses look their module up there
    spec.loader.exec_module(hook)
    text = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert not re.search(r"^\| `[a-z0-9-]+` \|", text, re.M), "docs/rules.md lists rules by hand: the hook generates them"
    filled = hook.fill_rules_table(text)
    table = [m.groups() for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.*) \|$", filled, re.M)]
    assert [rule_id for rule_id, _ in table] == [rule_id for rule_id, _ in describe_rules()] and len(table) > 10
    with pytest.raises(ValueError, match="rules-table"):
        hook.fill_rules_table("# no markers")
    assert "docs/rules.md" in README


def test_the_contributors_map_names_one_or_two_source_files_that_exist():
    """docs/architecture.md's map: for each thing a contributor adds, the files it takes exist, and are few."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## The contributor's map\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (a [^|]+?) \| (.+?) \| .+ \|$", section, re.M)}
    assert set(rows) == {"a compatibility rule", "a lockfile format", "a built-in smoke model", "a CI system"}, rows
    for thing, files in rows.items():
        paths = re.findall(r"`((?:src|docs)/[^`]*)`", files)
        assert paths, thing
        for path in paths:
            assert (REPO / path).exists(), f"{thing}: {path}"
        source = [p for p in paths if p.startswith("src/") and p.endswith((".py", "/"))]
        assert 1 <= len(source) <= 2, f"{thing} takes {source}: the map promises one or two files"


def test_readme_links_and_contents_resolve():
    anchors = {_slug(line.lstrip("#")) for line in README.splitlines() if line.startswith("#")}
    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, f"README links to #{target}, which no heading makes"
    for path in re.findall(r"\]\(((?:docs|src|tests|scripts)/[^)#]+)\)", README):
        assert (REPO / path).exists(), path
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"\(#([^)]+)\)", contents)
    assert listed == [_slug(line[3:]) for line in README.splitlines() if line.startswith("## ") and line != "## Contents"]


def _marked_command(marker: str) -> str:
    """The command README.md shows between <!-- MARKER --> and <!-- /MARKER --> (one fenced line)."""
    match = re.search(rf"^<!-- {marker} -->\n```\n(.+)\n```\n<!-- /{marker} -->$", README, re.M)
    assert match, f"README.md has no one-line fenced command between <!-- {marker} --> and <!-- /{marker} -->"
    return match.group(1)


def test_the_test_commands_install_what_the_tests_need_and_ci_runs_both():
    full, fast = _marked_command("test-command"), _marked_command("fast-test-command")
    install = 'python -m pip install -e ".[test]" && '
    assert full.startswith(install + "python -m pytest") and fast.startswith(install + "python -m pytest"), (full, fast)
    assert '-m "not slow"' in fast and "-m " not in full.split("pytest", 1)[1], (full, fast)
    # the options the commands use are installed by the extra they install
    extras = " ".join(re.search(r"^test = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.M | re.S).group(1).split())
    for option, plugin in (("-n ", "pytest-xdist"), ("--dist", "pytest-xdist")):
        if option in full or option in fast:
            assert f'"{plugin}' in extras, f"{option} needs {plugin} in the test extra"
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install" not in ci  # no installs of its own: the README's commands do them
    assert 'run_tier "full suite" "$test_command"' in ci and 'run_tier "fast tier" "$fast_command"' in ci
    # lint and types run before the tests, with the tools the test extra installs
    assert ci.index("run_tier ruff") < ci.index("run_tier mypy") < ci.index('run_tier "fast tier"')
    assert '"ruff>=' in extras and '"mypy>=' in extras
    # .ci/run extracts exactly those commands
    printed = subprocess.run(["bash", str(REPO / ".ci" / "run"), "--print-commands"], capture_output=True, text=True,
                             check=True, timeout=60)
    assert printed.stdout.splitlines() == [fast, full]


def test_benchmark_doc_states_the_scripts_run_counts():
    bench = (REPO / "scripts" / "bench").read_text()
    repeat = re.search(r'"--repeat", type=int, default=(\d+)', bench).group(1)
    noop = re.search(r'"--noop-runs", type=int, default=(\d+)', bench).group(1)
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    assert f"[--repeat {repeat}]" in doc and f"[--noop-runs {noop}]" in doc
    assert f"`--repeat` rounds (default {repeat})" in doc and f"`--noop-runs` each (default {noop})" in doc
    assert f"[--repeat {repeat}]" in bench.split('"""')[1]  # the script's own usage line
    assert "docs/benchmarks.md" in README


# ---------------------------------------------------------------- every path and command the docs show

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# Top-level folders and files of this repository: a path that starts with one of them is a claim about it.
# (envs/, locks/ and certs/ are left out: the docs use them for the reader's own project.)
REPO_ROOTS = ("src/", "tests/", "docs/", "scripts/", ".ci/", "pyproject.toml")
PLACEHOLDER = re.compile(r"[<>{}*$]|\.\.\.|…|^[A-Z][A-Z0-9_-]*$")  # <target>, {name}, ..., COMMAND


def _site_pages() -> set[Path]:
    """Pages the docs site names in mkdocs.yml (nav): they exist once built, generated ones included."""
    config = REPO / "mkdocs.yml"
    if not config.exists():
        return set()
    text = config.read_text(encoding="utf-8")
    docs_dir = re.search(r"^docs_dir:\s*(\S+)", text, re.M)
    root = REPO / (docs_dir.group(1) if docs_dir else "docs")
    return {(root / page).resolve() for page in re.findall(r"[\w./-]+\.md\b", text)}


def _doc_texts():
    for path in DOC_FILES:
        yield path, path.read_text(encoding="utf-8")


def _code(text: str) -> list[str]:
    """Fenced blocks' lines and inline code spans (not the text of links to other sites: their paths are theirs)."""
    text = re.sub(r"\[[^\]]*\]\([a-z]+:[^)]*\)", "", text)
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return [line for block in fenced for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", rest)


def test_every_repository_path_the_docs_write_exists():
    """Links, and paths in code (`src/envctl/rules/facts.py`), resolve in this repository."""
    missing = []
    site_pages = _site_pages()
    for doc, text in _doc_texts():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):  # markdown links, relative to the doc
            target = target.split("#", 1)[0]
            if not target or re.match(r"[a-z]+:", target):
                continue
            if not (doc.parent / target).exists() and (doc.parent / target).resolve() not in site_pages:
                missing.append(f"{doc.relative_to(REPO)}: link {target}")
        for code in _code(text):
            for token in re.findall(r"(?<![\w./-])((?:src|tests|docs|scripts|\.ci)/[\w./-]*|pyproject\.toml)", code):
                token = token.rstrip(".")
                if PLACEHOLDER.search(token) or not token.startswith(REPO_ROOTS):
                    continue
                if not (REPO / token).exists():
                    missing.append(f"{doc.relative_to(REPO)}: `{token}`")
    assert not missing, "paths the docs name that this repository lacks:\n" + "\n".join(sorted(set(missing)))


def _envctl_invocations(code: str) -> list[list[str]]:
    """The argument lists of each `envctl ...` / `python -m envctl ...` in a line of code."""
    import shlex

    found = []
    for part in re.split(r"&&|\|\||[|;]", code.split(" #", 1)[0]):
        try:
            words = shlex.split(part.replace("\\\n", " "))
        except ValueError:
            words = part.split()
        for i, word in enumerate(words):
            if word == "envctl" and (i == 0 or words[i - 1] in ("-m", "exec", "sudo", "time", "run")
                                     or re.fullmatch(r"\w+=\S*", words[i - 1])):
                found.append(words[i + 1:])
                break
    return found


def test_every_envctl_command_and_option_the_docs_show_exists():
    """Each `envctl COMMAND [SUB] --option` in the docs' code is a command and option of the Typer app."""
    import typer.main

    from envctl.cli import app

    root = typer.main.get_command(app)
    wrong = []
    for doc, text in _doc_texts():
        for code in _code(text):
            for args in _envctl_invocations(code):
                command, ctx_path = root, ["envctl"]
                for word in args:
                    if word == "--":  # what follows belongs to the command envctl runs
                        break
                    if hasattr(command, "commands") and not word.startswith("-"):  # a group: this word names a command
                        if PLACEHOLDER.search(word):
                            break
                        sub = command.commands.get(word)
                        if sub is None:
                            wrong.append(f"{doc.relative_to(REPO)}: `{' '.join(ctx_path)} {word}` is no command")
                            break
                        command, ctx_path = sub, [*ctx_path, word]
                        continue
                    if word.startswith("-") and not PLACEHOLDER.search(word):
                        name = word.split("=", 1)[0]
                        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
                        if name not in known | {"--help", "-h", "-"} and not re.fullmatch(r"-\d.*", name):
                            wrong.append(f"{doc.relative_to(REPO)}: `{' '.join(ctx_path)} {name}` is no option")
    assert not wrong, "commands and options the docs show that envctl lacks:\n" + "\n".join(sorted(set(wrong)))
