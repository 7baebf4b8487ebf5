"""The docs site: it builds strictly, its generated reference covers every command, option and
failure class, its hand-written schema pages match the code, and the README is a short front page."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import click  # noqa: F401  (typer's commands are click commands)
import typer.main
import yaml

from envctl.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", REPO / "scripts" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _commands(cmd, path=("envctl",)):
    """Every (path, click command) of the app, walked here independently of the generator."""
    yield path, cmd
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), (*path, name))


def test_cli_reference_covers_every_command_option_and_default():
    page = _generator().render()
    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) > 15
    sections = re.split(r"^#+ envctl", page, flags=re.MULTILINE)[1:]
    assert len(sections) == len(commands)
    for (path, cmd), section in zip(commands, sections):
        name = " ".join(path)
        assert section.startswith(f"{name[len('envctl'):]} {{ #{'-'.join(path)} }}"), (name, section[:80])
        text = html.unescape(section).replace("\\|", "|")
        if cmd.help:
            assert " ".join(cmd.help.split()) in text, name
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            for flag in [*param.opts, *param.secondary_opts]:
                if param.param_type_name == "option":
                    assert re.search(rf"`[^`]*{re.escape(flag)}\b", section), f"{name}: {flag} missing"
            default = param.default
            if isinstance(default, (str, Path, int)) and not isinstance(default, bool) and default != 0:
                assert f"`{default}`" in section, f"{name}: default of {param.name} missing"
            if param.help:
                assert " ".join(param.help.split()) in text, f"{name}: help of {param.name} missing"


def test_failure_class_reference_covers_every_class():
    from envctl.smoke.envctl_smoke_protocol import FAILURE_CLASSES
    from envctl.suite.certify_all import STAGE_FAILURES

    page = _generator().render_failure_classes()
    listed = re.findall(r"^\| `([a-z_]+)` \|", page, flags=re.MULTILINE)
    expected = [*FAILURE_CLASSES, *(klass for klass, _ in STAGE_FAILURES.values()), "internal_error"]
    assert listed == expected
    assert "simplifier_missing" in listed


def test_matrix_schema_page_lists_every_target_field():
    from envctl.matrix.fields import TARGET_FIELDS

    text = (DOCS / "reference" / "matrix-schema.md").read_text(encoding="utf-8")
    table = text.split("## Target fields", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (.+?) \| ", table, flags=re.MULTILINE):
        documented.update(re.findall(r"`([a-z_]+)`", row))
    assert documented == set(TARGET_FIELDS)


def test_nav_names_every_page_and_every_page_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from (pages(value) if isinstance(value, list) else [value])

    listed = set(pages(config["nav"]))
    generated = {"reference/cli.md", "reference/failure-classes.md"}
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert listed - generated == on_disk
    assert generated <= listed and not (generated & on_disk)  # generated, never written by hand


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], check=False,
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for path, _ in _commands(typer.main.get_command(app)):
        assert f'id="{"-".join(path)}"' in cli, path
    assert "simplifier_missing" in (site / "reference" / "failure-classes" / "index.html").read_text(encoding="utf-8")


def test_readme_is_a_short_front_page_with_both_test_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 20 * 1024
    fast = readme.split("<!-- fast-test-command -->", 1)[1].split("<!-- /fast-test-command -->", 1)[0]
    assert [line for line in fast.splitlines() if line.strip() and not line.startswith("```")] == \
        ['python -m pip install -e ".[test]" && python -m pytest -q -m "not slow" -n auto --dist loadgroup']
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]*))?\)", readme)
    assert len(links) > 20
    for target, anchor in links:
        assert (REPO / target).is_file(), target
        if anchor:
            assert anchor in _anchors(REPO / target), f"{target} has no heading #{anchor}"


def _anchors(page: Path) -> set[str]:
    """The ids mkdocs gives the page's headings (Python-Markdown's toc slugify of the heading text)."""
    from markdown.extensions.toc import slugify

    text = page.read_text(encoding="utf-8")
    return {slugify(re.sub(r"[`*]", "", line.lstrip("#").strip()), "-") for line in text.splitlines()
            if re.match(r"#{1,6} ", line)}
