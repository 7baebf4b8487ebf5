"""`envctl ci gitlab`: a GitLab CI pipeline (.gitlab-ci.yml) that certifies the matrix.

The same plan as `envctl ci github` (suite/ci_jobs.py), in GitLab's terms:
stage `lock` checks the matrix and each committed lock strictly and solves
the missing ones (passed on as artifacts, which later stages receive); stage
`certify` has one job per target and platform, on runners chosen by `tags:`
(the target's `runner_labels:`, else GitLab's hosted runners), with the
package cache keyed on the lock file (`cache:key:files`) and the JUnit file
in `artifacts:reports:junit`; stage `report` compares every certificate
(drift) and writes the HTML report. Pipelines on the default branch are never
auto-cancelled; others are, by a newer commit. GitLab schedules live in its
settings, not in the file: the header says how to add the weekly one.

Rendered from templates/gitlab-ci.yml.j2, deterministic like the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envctl.suite.ci import CiOptions, CiProject, CiSystem

if TYPE_CHECKING:
    from envctl.suite.ci_jobs import Job

__all__ = ["HOSTED", "GitlabJob", "Pipeline", "GitLab", "SYSTEM"]

# GitLab.com's hosted runners by tag (docs.gitlab.com/ci/runners/hosted_runners/): untagged jobs
# go to the small Linux x86-64 runner. There is no hosted Intel macOS runner, so osx-64 targets
# need `runner_labels:` to run (until then a lock-check or lock-only job says so: no platform is dropped).
# macOS and Windows runners are not Docker: no `image:` there.
HOSTED: dict[str, tuple[str, ...]] = {
    "linux-64": (),
    "linux-aarch64": ("saas-linux-small-arm64",),
    "osx-arm64": ("saas-macos-medium-m1",),
    "win-64": ("saas-windows-medium-amd64",),
}
IMAGE = "python:3.12"  # Linux jobs: envctl's own interpreter (targets bring theirs)
# macOS runners' Python may be externally managed (PEP 668): envctl goes into a venv of its own.
MACOS_VENV = ("python3 -m venv .envctl/ci-venv", ". .envctl/ci-venv/bin/activate")


@dataclass(frozen=True)
class GitlabJob:
    """One certify job as the template writes it; paths from the repository root unless said."""

    name: str
    target: str
    platform: str
    mode: str
    note: str
    tags: tuple[str, ...]
    image: str  # "" on macOS and Windows runners
    setup: tuple[str, ...]  # lines before envctl is installed (a venv where the system Python is not ours)
    minutes: int
    lock: str
    flags: str  # " --fail-on-lock-only" for a job meant to run


@dataclass(frozen=True)
class Pipeline:
    """What templates/gitlab-ci.yml.j2 prints besides the `project` every CI file shares."""

    jobs: tuple[GitlabJob, ...]
    image: str = IMAGE


def _linux(job: Job) -> bool:
    return job.mode != "run" or job.platforms[0].startswith("linux-")


class GitLab(CiSystem):
    name = "gitlab"
    summary = "Write a GitLab CI pipeline (.gitlab-ci.yml) that checks the locks and certifies every target."
    kind = "Pipeline"
    path = ".gitlab-ci.yml"
    template = "gitlab-ci.yml.j2"
    service = "GitLab.com"
    hosted = HOSTED
    linux = ()  # untagged: GitLab's hosted Linux runner
    gpu_runners = "runners tagged"

    def gpu_runner(self, platform: str, label: str) -> tuple[str, ...]:
        return (label,)

    def values(self, project: CiProject, jobs: list[Job], options: CiOptions) -> Mapping[str, Any]:
        return {"pl": Pipeline(jobs=tuple(GitlabJob(
            name=f"certify {j.target} on {j.platform}", target=j.target, platform=j.platform, mode=j.mode, note=j.note,
            tags=tuple(j.runner), image=IMAGE if _linux(j) else "",
            setup=MACOS_VENV if not _linux(j) and j.platforms[0].startswith("osx-") else (),
            minutes=j.minutes, lock=project.at(j.lock), flags=" --fail-on-lock-only" if j.runs else "")
            for j in jobs))}


SYSTEM = GitLab()
