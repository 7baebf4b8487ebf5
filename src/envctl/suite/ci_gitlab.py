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

from dataclasses import dataclass
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.core.paths import LOCK_SUFFIX
from envctl.matrix.loader import Target, load_matrix
from envctl.suite import ci_jobs
from envctl.suite.ci_jobs import Job

__all__ = ["HOSTED", "GitlabJob", "Pipeline", "entries", "gitlab_pipeline", "default_out", "job_count"]

TEMPLATE = "gitlab-ci.yml.j2"
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
    matrix: str
    matrix_opt: str
    install: str
    workdir: str  # the project's folder in the checkout, "" at its root
    jobs: tuple[GitlabJob, ...]
    targets: tuple[str, ...]
    lock_suffix: str
    locks: str
    rattler_cache: str
    uv_cache: str
    certs: str
    reports: str
    drift_opt: str
    lock_only_notes: str = ""  # Markdown lines: jobs that certify nothing by running (printed by the report job)
    image: str = IMAGE
    lock_minutes: int = ci_jobs.LOCK_MINUTES
    report_minutes: int = ci_jobs.REPORT_MINUTES


def entries(targets: list[Target], gpu_label: str | None = None) -> list[Job]:
    """The certify jobs on GitLab's runners (see ci_jobs.plan)."""
    return ci_jobs.plan(targets, hosted=HOSTED, linux=(), service="GitLab.com", gpu_label=gpu_label,
                        gpu_runner=lambda platform, label: (label,))


def default_out(matrix_path: Path) -> Path:
    from envctl.core.paths import project_root

    return ci_jobs.checkout_root(project_root(matrix_path)) / ".gitlab-ci.yml"


def _linux(job: Job) -> bool:
    return job.mode != "run" or job.platforms[0].startswith("linux-")


def gitlab_pipeline(matrix_path: Path, *, gpu_label: str | None = None, install: str | None = None,
                    fail_on_drift: bool = False) -> str:
    """The pipeline text for the matrix at `matrix_path`."""
    from envctl.core.paths import project_root

    ci_jobs.check_label(gpu_label)
    matrix = load_matrix(matrix_path)
    root = project_root(matrix_path)
    targets = list(matrix.targets.values())
    planned = entries(targets, gpu_label)
    if not planned:
        raise EnvctlError("the matrix has no targets: nothing to certify.", file=matrix_path)
    rel = ci_jobs.matrix_rel(matrix_path, root)
    base = ci_jobs.project_dir(root)
    at = (lambda p: f"{base}/{p}") if base else (lambda p: p)
    jobs = tuple(GitlabJob(
        name=f"certify {j.target} on {j.platform}", target=j.target, platform=j.platform, mode=j.mode, note=j.note,
        tags=tuple(j.runner), image=IMAGE if _linux(j) else "",
        setup=MACOS_VENV if not _linux(j) and j.platforms[0].startswith("osx-") else (),
        minutes=j.minutes, lock=at(j.lock), flags=" --fail-on-lock-only" if j.runs else "") for j in planned)
    return ci_jobs.render(TEMPLATE, pl=Pipeline(
        matrix=at(rel),
        matrix_opt="" if rel == "envs/matrix.yaml" else f" --matrix {rel}",
        install=ci_jobs.install_spec(root, install),
        workdir=base,
        jobs=jobs,
        targets=tuple(t.name for t in targets),
        lock_suffix=LOCK_SUFFIX,
        locks=at("locks"),
        rattler_cache=at(".envctl/cache/rattler"),
        uv_cache=at(".envctl/cache/uv"),
        certs=at("certs"),
        reports=at("reports"),
        drift_opt=" --fail-on-drift" if fail_on_drift else "",
        lock_only_notes=ci_jobs.lock_only_notes(planned),
    ))


def job_count(text: str) -> int:
    return text.count("\n  stage: certify\n")
