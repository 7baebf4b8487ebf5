#!/usr/bin/env python3
"""Reference pages of the docs site generated from the code: commands and failure classes.

mkdocs runs this file as a hook (`hooks:` in mkdocs.yml). At build time it
walks `typer.main.get_command(app)` and adds `reference/cli.md`, one section
per command and sub-command with its usage, help text, arguments and options
(spelling, default, help) exactly as the code defines them; and it adds
`reference/failure-classes.md` from the smoke runner's FAILURE_CLASSES table
and the host's stage failures; and it fills the table of compatibility rules
in `rules.md` (between its `rules-table` markers) from the rule registry.
Nothing on these pages is written by hand, so they cannot fall behind the code.

    python scripts/gen_cli_reference.py [cli|failure-classes|rules]   # print a page or table (what the site shows)
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

PAGE = "reference/cli.md"
CLASSES_PAGE = "reference/failure-classes.md"


@dataclass(frozen=True)
class CommandDoc:
    """One command as the reference shows it."""

    path: tuple[str, ...]  # ("envctl", "matrix", "check")
    help: str
    usage: str
    params: tuple[tuple[str, str, str], ...]  # (spelling, default, help) per argument/option
    subcommands: tuple[str, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def anchor(self) -> str:
        return "-".join(self.path)


def _text(value: str) -> str:
    """Help text as Markdown text on one line: `<`, `>` and `&` escaped outside code spans, pipes escaped."""
    parts = " ".join(value.split()).split("`")
    # Even parts are prose, odd parts are inside backticks (already literal in Markdown).
    text = "`".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))
    return text.replace("|", "\\|")


def _default(param: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    default = param.default
    if default is None or default is False or default == () or default == []:
        return ""
    if getattr(param, "count", False) and default == 0:
        return ""
    return f"`{default}`"


def walk(root: Any = None) -> Iterator[CommandDoc]:
    """Every command of the app, depth first in `--help` order (groups before their sub-commands)."""
    import typer.main

    if root is None:
        from envctl.cli import app

        root = typer.main.get_command(app)
    yield from _walk(root, ("envctl",), None)


def _walk(cmd: Any, path: tuple[str, ...], parent: Any) -> Iterator[CommandDoc]:
    ctx = type(parent)(cmd, info_name=path[-1], parent=parent) if parent is not None else _context(cmd, path[-1])
    params = []
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        spelling = record[0] if record else param.name
        params.append((spelling, _default(param), getattr(param, "help", None) or ""))
    subs = tuple(cmd.list_commands(ctx)) if hasattr(cmd, "list_commands") else ()
    usage = cmd.get_usage(ctx).replace("Usage: ", "", 1)
    yield CommandDoc(path, cmd.help or "", usage, tuple(params), subs)
    for name in subs:
        yield from _walk(cmd.get_command(ctx, name), (*path, name), ctx)


def _context(cmd: Any, name: str) -> Any:
    import typer.main  # noqa: F401  (Typer's commands carry their own click Context class)

    return cmd.context_class(cmd, info_name=name)


def render(commands: list[CommandDoc] | None = None) -> str:
    """The whole reference page as Markdown."""
    commands = list(walk()) if commands is None else commands
    out = [
        "# Command reference",
        "",
        "Generated from envctl's command-line definitions when the site is built "
        "(`scripts/gen_cli_reference.py`), so every command, option, default and help text "
        "here is the code's own. `envctl COMMAND --help` prints the same.",
        "",
        "Exit status: 0 success, 1 a check that failed, 2 bad input; see "
        "[Exit codes](exit-codes.md).",
        "",
        "Conventions: a command that works on targets by name takes them both ways, as arguments "
        "(`envctl lock linux-cpu linux-cuda12`) or with a repeatable `--target/-t` "
        "(`envctl lock -t linux-cpu -t linux-cuda12`); `list`, `shell`, `pack` and `env export` take exactly "
        "one. `run` and `export` take the command or the model as their argument, so only `--target` there. "
        "`--locked` and `--frozen` mean what they mean in pixi "
        "([Locks](../concepts/locks.md#locking)). `--install-completion` / `--show-completion` cover bash, "
        "zsh, fish and PowerShell.",
        "",
    ]
    for doc in commands:
        depth = "#" * min(len(doc.path) + 1, 4)
        out += [f"{depth} {doc.name} {{ #{doc.anchor} }}", ""]
        if doc.help:
            out += [_text(doc.help), ""]
        out += ["```", doc.usage, "```", ""]
        if doc.subcommands:
            links = ", ".join(f"[`{sub}`](#{doc.anchor}-{sub})" for sub in doc.subcommands)
            out += [f"Commands: {links}.", ""]
        if doc.params:
            out += ["| argument / option | default | what it does |", "|---|---|---|"]
            out += [f"| `{spelling}` | {default} | {_text(text)} |" for spelling, default, text in doc.params]
            out.append("")
    return "\n".join(out)


def failure_classes() -> list[tuple[str, str, str, str]]:
    """(class, where it is decided, summary, remedy) for every class a certification can end in."""
    from envctl.smoke import runner_module
    from envctl.smoke.envctl_smoke_protocol import FAILURE_CLASSES

    for_exporter = runner_module("envctl_smoke_classes").for_exporter
    from envctl.suite.certify_all import STAGE_FAILURES

    host_side = {"runner_crash", "timeout", "spec_error"}  # the host classifies how the runner ended
    rows = [(name, "host" if name in host_side else "smoke runner", info["summary"], for_exporter(info["remedy"], None))
            for name, info in FAILURE_CLASSES.items()]
    rows += [(klass, f"host, {stage} stage", f"the host's {stage} stage failed (outside the smoke runner)",
              remedy.replace("{t}", "<target>")) for stage, (klass, remedy) in STAGE_FAILURES.items()]
    rows.append(("internal_error", "host", "an error inside envctl itself (a bug): never counts as an expected failure",
                 "this is a bug in envctl: please report it with this message"))
    return rows


def render_failure_classes() -> str:
    out = [
        "# Failure classes",
        "",
        "Generated from the runner protocol's table (`src/envctl/smoke/envctl_smoke_protocol.py`) and the host's "
        "stage failures (`src/envctl/suite/certify_all.py`) when the site is built. A failing certification "
        "names one class, the stage it failed at, a one-line message and the remedy below (a remedy never "
        "recommends the exporter that just failed: where a remedy names an exporter, that part is left out "
        "when that exporter failed). How classes become verdicts: [Verdicts](../verdicts.md).",
        "",
        "| class | decided by | what happened | remedy |",
        "|---|---|---|---|",
    ]
    out += [f"| `{name}` | {where} | {_text(summary)} | {_text(remedy)} |" for name, where, summary, remedy in failure_classes()]
    return "\n".join(out) + "\n"


RULES_PAGE = "rules.md"
RULES_TABLE = re.compile(r"<!-- rules-table -->\n.*?<!-- /rules-table -->", re.S)


def render_rules() -> str:
    """The compatibility rules in check order, one row each: the registry's ids and descriptions."""
    from envctl.rules.api import describe_rules

    rows = [f"| `{rule_id}` | {_text(description)} |" for rule_id, description in describe_rules()]
    return "\n".join(["| rule | what it checks |", "|---|---|", *rows]) + "\n"


def fill_rules_table(markdown: str) -> str:
    """`markdown` with the table between its rules-table markers generated; ValueError without them."""
    if not RULES_TABLE.search(markdown):
        raise ValueError(f"{RULES_PAGE} has no <!-- rules-table --> ... <!-- /rules-table --> markers")
    return RULES_TABLE.sub(lambda _: render_rules(), markdown, count=1)


# --- the mkdocs hook -----------------------------------------------------------------
def _checkout_on_path() -> None:
    src = str(Path(__file__).resolve().parents[1] / "src")
    if src not in sys.path:
        sys.path.insert(0, src)  # the checkout's envctl, also when it is not installed


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the rules table of rules.md at build time."""
    if page.file.src_uri != RULES_PAGE:
        return markdown
    _checkout_on_path()
    return fill_rules_table(markdown)


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site (mkdocs >= 1.6)."""
    from mkdocs.structure.files import File

    _checkout_on_path()
    files.append(File.generated(config, PAGE, content=render()))
    files.append(File.generated(config, CLASSES_PAGE, content=render_failure_classes()))
    return files


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "cli"
    _checkout_on_path()
    pages = {"cli": render, "failure-classes": render_failure_classes, "rules": render_rules}
    if which not in pages:
        sys.exit(f"usage: {sys.argv[0]} [{'|'.join(pages)}]")
    sys.stdout.write(pages[which]())
