"""`envctl ci github`: a GitHub Actions workflow that certifies the matrix.

The jobs (suite/ci_jobs.py decides them, the same plan as `envctl ci gitlab`):
`lock` checks the matrix and each committed lock strictly, solves the missing
ones with the runner's network and hands all locks on as an artifact (its step
summary says which to commit); `certify` runs one job per target and platform,
rebuilding the env from its lock with the rattler and uv caches keyed on the
lock's hash; lock-only targets get one job on Linux; `report` gathers every
certificate for the cross-target drift check and the HTML report. Every job
has a timeout and only the permissions it needs; the default branch's runs
are never cancelled; a weekly schedule re-certifies against moving runners.

The YAML is rendered from a template (templates/github-workflow.yml.j2), not
dumped: it carries comments, and the same matrix always gives the same bytes
(no dates, matrix order), so the file can be committed and checked for drift
by regenerating it. This module decides the values (runners, paths); the
template only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.core.paths import LOCK_SUFFIX
from envctl.matrix.loader import Target, load_matrix
from envctl.suite import ci_jobs
from envctl.suite.ci_jobs import Job

__all__ = ["RUNNERS", "Row", "Workflow", "entries", "render", "github_workflow", "write_workflow",
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
LINUX = RUNNERS["linux-64"]  # lock-only jobs, the lock job and the fan-in
# Self-hosted runners carry these default labels (OS, architecture).
SELF_HOSTED = {
    "linux-64": ("Linux", "X64"),
    "linux-aarch64": ("Linux", "ARM64"),
    "osx-arm64": ("macOS", "ARM64"),
    "osx-64": ("macOS", "X64"),
    "win-64": ("Windows", "X64"),
}
PYTHON = "3.12"  # the interpreter envctl itself runs with; targets bring their own
CRON = "17 4 * * 1"  # weekly re-certification, Monday 04:17 UTC (off the hour, when GitHub's queue is long)
# Every action the generated workflow uses, pinned to the full commit sha of a release tag (a tag can be
# moved; a sha cannot), with the tag written beside it as a comment. Majors that run on Node 24 (GitHub
# removed Node 20 from its runners in September 2026); download-artifact's first node24 major is v7.
# Shas read from each action's repository (`git rev-parse TAG^{commit}`); .github/workflows/tests.yml
# uses the same pins (tests/test_ci_fork.py checks). To update: bump tag and sha together.
@dataclass(frozen=True)
class Pin:
    action: str  # owner/repo
    sha: str
    tag: str

    @property
    def uses(self) -> str:
        """The `uses:` value, with its tag as a YAML comment."""
        return f"{self.action}@{self.sha}  # {self.tag}"


PINS = {
    "checkout": Pin("actions/checkout", "fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09", "v5.1.0"),
    "python": Pin("actions/setup-python", "ece7cb06caefa5fff74198d8649806c4678c61a1", "v6.3.0"),
    "cache": Pin("actions/cache", "27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "upload": Pin("actions/upload-artifact", "b7c566a772e6b6bfb58ed0dc250532a479d7789f", "v6.0.0"),
    "download": Pin("actions/download-artifact", "37930b1c2abaa49bbe596cd826c3c89aef350131", "v7.0.0"),
    "junit": Pin("mikepenz/action-junit-report", "d9f48fc87bc235f7e214acf696ca5abc0a986f16", "v6.4.2"),
}
ACTIONS = {key: pin.uses for key, pin in PINS.items()}


def entries(targets: list[Target], gpu_label: str | None = None) -> list[Job]:
    """The certify jobs on GitHub's runners (see ci_jobs.plan)."""
    return ci_jobs.plan(targets, hosted=RUNNERS, linux=LINUX, service="GitHub", gpu_label=gpu_label,
                        gpu_runner=lambda platform, label: ("self-hosted", *SELF_HOSTED[platform], label))


def default_out(matrix_path: Path) -> Path:
    from envctl.core.atomic import ensure_inside
    from envctl.core.paths import project_root

    # .github (or .github/workflows) may be a symlink committed into the checkout: never write through it.
    checkout = ci_jobs.checkout_root(project_root(matrix_path))
    return ensure_inside(checkout, checkout / ".github" / "workflows" / "certify.yml", "workflow file")


@dataclass(frozen=True)
class Row:
    """One entry of the certify job's matrix, with the lock path as actions see it."""

    target: str
    platform: str
    runner: str | tuple[str, ...]
    mode: str
    note: str  # one line: it becomes a YAML comment
    lock: str  # from the checkout's root
    minutes: int


@dataclass(frozen=True)
class Workflow:
    """Every value templates/github-workflow.yml.j2 prints; the template decides only the layout.

    Paths the workflow's steps use are relative to the project (steps run there); those
    actions see (cache, upload, download, hashFiles) are from the checkout's root, like `lock`.
    """

    matrix: str  # the matrix, from the checkout's root (named in the header)
    matrix_opt: str  # " --matrix REL" for envctl commands, "" at the default place
    branch: str
    install: str  # the pip requirement that installs envctl
    workdir: str  # the project's folder in the checkout, "" at its root
    rows: tuple[Row, ...]
    targets: tuple[str, ...]  # every target, for the lock job (names are shell-safe: core/atomic SAFE_NAME)
    lock_suffix: str
    locks: str
    rattler_cache: str
    uv_cache: str
    certs: str
    reports: str
    gathered: str
    drift_opt: str  # " --fail-on-drift" when drift fails the fan-in
    lock_only_notes: str = ""  # Markdown lines: jobs that certify nothing by running (the fan-in's summary)
    lock_minutes: int = ci_jobs.LOCK_MINUTES
    report_minutes: int = ci_jobs.REPORT_MINUTES
    cron: str = CRON
    python: str = PYTHON
    actions: Mapping[str, str] = field(default_factory=lambda: dict(ACTIONS))


def render(workflow: Workflow) -> str:
    return ci_jobs.render(TEMPLATE, wf=workflow)


def github_workflow(matrix_path: Path, *, gpu_label: str | None = None, install: str | None = None,
                    branch: str = "main", fail_on_drift: bool = False) -> str:
    """The workflow text for the matrix at `matrix_path`."""
    from envctl.core.paths import project_root

    ci_jobs.check_label(gpu_label)
    ci_jobs.check_branch(branch)
    from envctl.core.limits import check_text

    if install is not None:  # lands in generated YAML: one line, or it would add keys of its own
        check_text(install, "--install")
    matrix = load_matrix(matrix_path)
    root = project_root(matrix_path)
    targets = list(matrix.targets.values())
    jobs = entries(targets, gpu_label)
    if not jobs:
        raise EnvctlError("the matrix has no targets: nothing to certify.", file=matrix_path)
    rel = ci_jobs.matrix_rel(matrix_path, root)
    base = ci_jobs.project_dir(root)
    at = (lambda p: f"{base}/{p}") if base else (lambda p: p)
    return render(Workflow(
        matrix=at(rel),
        matrix_opt="" if rel == "envs/matrix.yaml" else f" --matrix {rel}",
        branch=branch,
        install=ci_jobs.install_spec(root, install),
        workdir=base,
        rows=tuple(Row(j.target, j.platform, j.runner, j.mode, j.note, at(j.lock), j.minutes) for j in jobs),
        targets=tuple(t.name for t in targets),
        lock_suffix=LOCK_SUFFIX,
        locks=at("locks"),
        rattler_cache=at(".envctl/cache/rattler"),
        uv_cache=at(".envctl/cache/uv"),
        certs=at("certs"),
        reports=at("reports"),
        gathered=at("gathered"),
        drift_opt=" --fail-on-drift" if fail_on_drift else "",
        lock_only_notes=ci_jobs.lock_only_notes(jobs),
    ))


def write_workflow(path: Path, text: str) -> bool:
    """Write the workflow if its text changed; True when written."""
    return ci_jobs.write_if_changed(path, text)


def job_count(text: str) -> int:
    return text.count("\n          - target: ")
