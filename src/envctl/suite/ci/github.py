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
by regenerating it. This module decides the values (runners, pins); the
template only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envctl.suite.ci import CiOptions, CiProject, CiSystem

if TYPE_CHECKING:
    from envctl.suite.ci_jobs import Job

__all__ = ["RUNNERS", "PINS", "Row", "Workflow", "GitHub", "SYSTEM"]

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
# uses the same pins (tests/suite/test_ci_fork.py checks). To update: bump tag and sha together.
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
    """What templates/github-workflow.yml.j2 prints besides the `project` every CI file shares."""

    branch: str
    rows: tuple[Row, ...]
    cron: str = CRON
    python: str = PYTHON
    actions: Mapping[str, str] = field(default_factory=lambda: dict(ACTIONS))


class GitHub(CiSystem):
    name = "github"
    summary = "Write a GitHub Actions workflow that checks the locks and certifies every target."
    kind = "Workflow"
    path = ".github/workflows/certify.yml"
    template = "github-workflow.yml.j2"
    service = "GitHub"
    hosted = RUNNERS
    linux = LINUX
    gpu_runners = "self-hosted runners"
    takes_branch = True  # `on: push: branches` and the concurrency group name it

    def gpu_runner(self, platform: str, label: str) -> tuple[str, ...]:
        return ("self-hosted", *SELF_HOSTED[platform], label)

    def values(self, project: CiProject, jobs: list[Job], options: CiOptions) -> Mapping[str, Any]:
        rows = tuple(Row(j.target, j.platform, j.runner, j.mode, j.note, project.at(j.lock), j.minutes) for j in jobs)
        return {"wf": Workflow(branch=options.branch, rows=rows)}


SYSTEM = GitHub()
