"""`envctl ci github`: a GitHub Actions workflow that certifies the matrix.

One job checks the matrix and refuses missing or stale locks; then one job
per (target, platform) rebuilds the env from its committed lock and
certifies it on a runner of that platform, with the rattler and uv package
caches keyed on the lock file's hash (a new lock starts from the nearest old
cache). Targets that need an NVIDIA GPU have no GitHub-hosted runner: they
run on hosted runners, where `envctl certify` certifies them lock-only, unless
`--gpu-label` sends them to self-hosted GPU runners.

The YAML is rendered from a template (templates/github-workflow.yml.j2), not
dumped: it carries comments, and the same matrix always gives the same bytes
(no dates, matrix order), so the file can be committed and checked for drift
by regenerating it. This module decides the values (jobs, runners, paths);
the template only lays them out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

from envctl import __version__
from envctl.core.atomic import write_text_atomic
from envctl.core.errors import EnvctlError
from envctl.core.paths import lock_path
from envctl.host.runnable import needs_gpu
from envctl.matrix.loader import Target, load_matrix

__all__ = ["RUNNERS", "Entry", "Row", "Workflow", "entries", "render", "github_workflow", "write_workflow",
           "default_out", "job_count"]

TEMPLATE = "github-workflow.yml.j2"  # in envctl/suite/templates/, shipped as package data

# GitHub-hosted runner per conda platform (docs.github.com: "GitHub-hosted runners").
# macos-13 (the last Intel image) was retired in 2025; macos-15-intel replaces it.
RUNNERS = {
    "linux-64": "ubuntu-latest",
    "linux-aarch64": "ubuntu-24.04-arm",
    "osx-arm64": "macos-14",
    "osx-64": "macos-15-intel",
    "win-64": "windows-latest",
}
# Self-hosted runners carry these default labels (OS, architecture).
SELF_HOSTED = {
    "linux-64": ("Linux", "X64"),
    "linux-aarch64": ("Linux", "ARM64"),
    "osx-arm64": ("macOS", "ARM64"),
    "osx-64": ("macOS", "X64"),
    "win-64": ("Windows", "X64"),
}
PYTHON = "3.12"  # the interpreter envctl itself runs with; targets bring their own
# Majors that run on Node 24 (GitHub removed Node 20 from its runners in September 2026).
ACTIONS = {
    "checkout": "actions/checkout@v5",
    "python": "actions/setup-python@v6",
    "cache": "actions/cache@v5",
    "upload": "actions/upload-artifact@v6",
    "junit": "mikepenz/action-junit-report@v6",
}


@dataclass(frozen=True)
class Entry:
    """One certify job: a target on one of its platforms."""

    target: str
    platform: str
    runner: str | tuple[str, ...]
    mode: str  # "run" or "lock-only"
    note: str

    @property
    def lock(self) -> str:
        return lock_path(Path("."), self.target).as_posix()


def _q(value: str | tuple[str, ...]) -> str:
    """A YAML double-quoted scalar, or a flow sequence of them (JSON is valid YAML)."""
    return json.dumps(value)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def entries(targets: list[Target], gpu_label: str | None = None) -> list[Entry]:
    out = []
    for target in targets:
        gpu = needs_gpu(target)
        for platform in target.platforms:
            if gpu and gpu_label:
                runner: str | tuple[str, ...] = ("self-hosted", *SELF_HOSTED[platform], gpu_label)
                mode, note = "run", f"needs {target.execution_provider}: self-hosted runner labelled {gpu_label}"
            elif gpu:
                runner, mode = RUNNERS[platform], "lock-only"
                note = (f"needs a self-hosted GPU runner (CUDA {target.cuda or '?'}); hosted runners have none, "
                        "so it is certified lock-only (regenerate with --gpu-label LABEL to run it)")
            else:
                runner, mode, note = RUNNERS[platform], "run", _one_line(target.description) or "CPU"
            out.append(Entry(target.name, platform, runner, mode, note))
    return out


def _install_spec(root: Path) -> str:
    # In envctl's own repository CI tests the checked-out code; elsewhere the released one.
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        text = ""
    if re.search(r'^name\s*=\s*"envctl"\s*$', text, re.M):
        return "."
    return f"envctl=={__version__}"


def _checkout_root(root: Path) -> Path:
    """The git checkout holding the project (GitHub runs workflows from its root), else the project."""
    root = Path(root).absolute()
    return next((p for p in (root, *root.parents) if (p / ".git").exists()), root)


def _project_dir(root: Path) -> str:
    """The project's folder relative to its checkout ('' when it is the checkout)."""
    rel = Path(root).absolute().relative_to(_checkout_root(root)).as_posix()
    return "" if rel == "." else rel


def default_out(matrix_path: Path) -> Path:
    from envctl.core.paths import project_root

    return _checkout_root(project_root(matrix_path)) / ".github" / "workflows" / "certify.yml"


@dataclass(frozen=True)
class Row:
    """One entry of the certify job's matrix, with the lock path as actions see it."""

    target: str
    platform: str
    runner: str | tuple[str, ...]
    mode: str
    note: str  # one line: it becomes a YAML comment
    lock: str  # from the checkout's root


@dataclass(frozen=True)
class Workflow:
    """Every value templates/github-workflow.yml.j2 prints; the template decides only the layout.

    Paths the workflow's steps use are relative to the project (steps run there); those
    actions see (cache, upload, hashFiles) are from the checkout's root, like `lock`.
    """

    matrix: str  # the matrix, from the checkout's root (named in the header)
    matrix_opt: str  # " --matrix REL" for envctl commands, "" at the default place
    branch: str
    install: str  # the pip requirement that installs envctl
    workdir: str  # the project's folder in the checkout, "" at its root
    rows: tuple[Row, ...]
    rattler_cache: str
    uv_cache: str
    certs: str
    reports: str
    python: str = PYTHON
    actions: Mapping[str, str] = field(default_factory=lambda: dict(ACTIONS))


def _bare(value: object) -> object:
    # A line break in a bare value (a path, a comment) would start a new YAML line: refuse it
    # rather than write a workflow whose structure the matrix decided. Quoted values have none.
    if isinstance(value, str) and any(c in value for c in "\n\r\x85\u2028\u2029"):
        raise EnvctlError(f"cannot write {value!r} into the workflow: it contains a line break.")
    return value


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("envctl.suite", "templates"),
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # YAML, not HTML: quoting is the `q` filter's job
        finalize=_bare,
        # GitHub's expressions are ${{ ... }}: Jinja's default delimiters would swallow them.
        variable_start_string="<<", variable_end_string=">>",
        block_start_string="<%", block_end_string="%>",
        comment_start_string="<#", comment_end_string="#>",
    )
    env.filters["q"] = _q
    return env


def render(workflow: Workflow) -> str:
    return _environment().get_template(TEMPLATE).render(wf=workflow)


def github_workflow(matrix_path: Path, *, gpu_label: str | None = None, install: str | None = None,
                    branch: str = "main") -> str:
    """The workflow text for the matrix at `matrix_path`."""
    from envctl.core.paths import project_root

    if gpu_label is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", gpu_label):
        raise EnvctlError(f"--gpu-label {gpu_label!r}: a runner label is letters, digits, '.', '_' or '-'.")
    matrix = load_matrix(matrix_path)
    root = project_root(matrix_path)
    jobs = entries(list(matrix.targets.values()), gpu_label)
    if not jobs:
        raise EnvctlError("the matrix has no targets: nothing to certify.", file=matrix_path)
    try:
        rel = Path(matrix_path).absolute().relative_to(root).as_posix()
    except ValueError:
        rel = Path(matrix_path).name
    base = _project_dir(root)
    at = (lambda p: f"{base}/{p}") if base else (lambda p: p)  # noqa: E731
    return render(Workflow(
        matrix=at(rel),
        matrix_opt="" if rel == "envs/matrix.yaml" else f" --matrix {rel}",
        branch=branch,
        install=install or _install_spec(root),
        workdir=base,
        rows=tuple(Row(j.target, j.platform, j.runner, j.mode, j.note, at(j.lock)) for j in jobs),
        rattler_cache=at(".envctl/cache/rattler"),
        uv_cache=at(".envctl/cache/uv"),
        certs=at("certs"),
        reports=at("reports"),
    ))


def write_workflow(path: Path, text: str) -> bool:
    """Write the workflow if its text changed; True when written."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_text_atomic(path, text)
    return True


def job_count(text: str) -> int:
    return text.count("\n          - target: ")
