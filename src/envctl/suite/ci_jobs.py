"""What every generated CI configuration shares: the certify jobs, install line, paths, rendering.

Every CI system (suite/ci/: `envctl ci github`, `envctl ci gitlab`) lays the
same plan out in its own syntax: a lock job (check the matrix; check each committed lock strictly,
solve the missing ones with the runner's network and hand them on), one
certify job per target and platform that can really run somewhere, and a
fan-in job that gathers every certificate for the cross-target drift check
and the HTML report. This module decides the plan; each system in suite/ci/
decides only runner names and layout.

Where a target's job runs, in order:
1. `runner_labels:` on the target (for all its platforms, or per platform): exactly those
   labels (GitHub `runs-on`, GitLab `tags`);
2. a target that needs an NVIDIA GPU, with `--gpu-label`: a self-hosted runner with that label;
3. a CPU target on a platform the CI service hosts: that hosted runner;
4. otherwise nothing can run it here, so it is certified lock-only, and a lock-only
   certification needs no runner of the target's platform: one job per target on
   Linux, covering all its lock-only platforms (each gets its own JUnit ids). A
   target that also runs on some platform gets a "lock-check" job for the rest
   instead (certify on Linux would run its Linux platform): it checks the lock
   strictly and says why nothing certifies those platforms. No platform of the
   matrix is left without a job, and the fan-in's summary lists every such note.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from envctl.core.atomic import write_text_atomic
from envctl.core.errors import EnvctlError
from envctl.lock.lockfile import lock_path
from envctl.host.runnable import needs_gpu
from envctl.matrix.fields import RUNNER_LABEL
from envctl.matrix.loader import Target

__all__ = ["LABEL", "Job", "plan", "install_spec", "checkout_root", "project_dir", "render", "write_if_changed",
           "check_label", "check_branch", "matrix_rel", "LOCK_ONLY_MINUTES", "job_minutes", "lock_only_notes"]

LABEL = RUNNER_LABEL  # --gpu-label takes the alphabet of `runner_labels:`
BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
# Job ceilings in minutes. A run job: envctl's setup and the env build, plus every smoke
# run at the target's own hang timeout (each run is killed at that timeout anyway).
SETUP_MINUTES = 30
LOCK_ONLY_MINUTES = 20
LOCK_MINUTES = 60  # a solve per missing lock, with the runner's network
REPORT_MINUTES = 15
MAX_MINUTES = 360  # GitHub's ceiling for a hosted job


@dataclass(frozen=True)
class Job:
    """One certify job. `platforms` has one entry for a run job, all lock-only ones otherwise."""

    target: str
    platforms: tuple[str, ...]
    mode: str  # "run" (must really run: certify gets --fail-on-lock-only), "lock-only", or "lock-check"
    runner: Any  # the CI service's runner value (a name, or a tuple of labels)
    note: str  # one line: it becomes a YAML comment
    minutes: int

    @property
    def platform(self) -> str:
        """The job's platform key in names and report paths ('linux-64', or 'linux-64+win-64')."""
        return "+".join(self.platforms)

    @property
    def lock(self) -> str:
        return lock_path(Path("."), self.target).as_posix()

    @property
    def runs(self) -> bool:
        return self.mode == "run"


def job_minutes(target: Target) -> int:
    runs = max(1, len(target.models) * len(target.exporters))
    return min(MAX_MINUTES, SETUP_MINUTES + math.ceil(runs * target.timeout / 60))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def plan(targets: list[Target], *, hosted: Mapping[str, Any], linux: Any, service: str,
         gpu_label: str | None = None, gpu_runner: Callable[[str, str], Any] | None = None) -> list[Job]:
    """The certify jobs for `targets`, in matrix order (see the module's docstring for the rules).

    `hosted` maps a conda platform to the service's hosted runner for it; `linux` is the
    Linux runner lock-only jobs use; `gpu_runner(platform, label)` the runner for --gpu-label.
    """
    jobs: list[Job] = []
    for target in targets:
        gpu = needs_gpu(target)
        ran: list[Job] = []
        idle: list[tuple[str, str]] = []  # (platform, why nothing runs it)
        for platform in target.platforms:
            labels = target.labels_for(platform)
            if labels:
                ran.append(Job(target.name, (platform,), "run", labels, f"runner_labels: {', '.join(labels)}",
                               job_minutes(target)))
            elif gpu and gpu_label and gpu_runner:
                ran.append(Job(target.name, (platform,), "run", gpu_runner(platform, gpu_label),
                               f"needs {target.execution_provider}: self-hosted runner labelled {gpu_label}",
                               job_minutes(target)))
            elif gpu:
                idle.append((platform, f"needs a GPU runner (CUDA {target.cuda or '?'})"))
            elif platform in hosted:
                ran.append(Job(target.name, (platform,), "run", hosted[platform],
                               _one_line(target.description) or "CPU", job_minutes(target)))
            else:
                idle.append((platform, f"{service} hosts no {platform} runner"))
        jobs.extend(ran)
        if idle:
            why = "; ".join(dict.fromkeys(w for _, w in idle))
            how = "give the target `runner_labels:`" + (", or pass --gpu-label," if gpu else "")
            if ran:  # certify on Linux would run the target's other platforms: its lock is checked, and said so
                note = f"{why}, so it is lock-checked only, on Linux ({how} to certify it on a runner of yours)"
                mode = "lock-check"
            else:
                note = f"{why}, so it is certified lock-only, on Linux ({how} to run it on a runner of yours)"
                mode = "lock-only"
            jobs.append(Job(target.name, tuple(p for p, _ in idle), mode, linux, note, LOCK_ONLY_MINUTES))
    return jobs


def lock_only_notes(jobs: list[Job]) -> str:
    """One Markdown line per job that runs nothing of its target (the fan-in's summary lists them)."""
    return "\n".join(f"- **{j.target}** on {', '.join(j.platforms)}: {j.note}" for j in jobs if not j.runs)


def check_label(label: str | None, option: str = "--gpu-label") -> None:
    if label is not None and not LABEL.match(label):
        raise EnvctlError(f"{option} {label!r}: a runner label is letters, digits, '.', '_' or '-'.")


def check_branch(branch: str) -> None:
    # The branch is written into a GitHub expression and a GitLab rule: a narrow alphabet keeps both literal.
    if not BRANCH.match(branch) or ".." in branch:
        raise EnvctlError(f"--branch {branch!r}: a branch name here is letters, digits, '.', '_', '-' and '/'.")


def install_spec(root: Path, install: str | None = None) -> str:
    """What every generated job pip-installs, from source only (suite/ci_install.py decides)."""
    from envctl.suite.ci_install import install_spec as from_source

    return from_source(Path(root), checkout_root(root), install)


def checkout_root(root: Path) -> Path:
    """The git checkout holding the project (CI services run from its root), else the project."""
    root = Path(root).absolute()
    return next((p for p in (root, *root.parents) if (p / ".git").exists()), root)


def project_dir(root: Path) -> str:
    """The project's folder relative to its checkout ('' when it is the checkout)."""
    rel = Path(root).absolute().relative_to(checkout_root(root)).as_posix()
    return "" if rel == "." else rel


def matrix_rel(matrix_path: Path, root: Path) -> str:
    try:
        return Path(matrix_path).absolute().relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        return Path(matrix_path).name


def _q(value: Any) -> str:
    """A YAML double-quoted scalar, or a flow sequence of them (JSON is valid YAML)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _bare(value: object) -> object:
    # A line break in a bare value (a path, a comment) would start a new YAML line: refuse it
    # rather than write a file whose structure the matrix decided. Quoted values have none.
    if isinstance(value, str) and any(c in value for c in "\n\r\x85\u2028\u2029"):
        raise EnvctlError(f"cannot write {value!r} into the CI file: it contains a line break.")
    return value


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("envctl.suite", "templates"),
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML: quoting is the `q` filter's job
        finalize=_bare,
        # GitHub's expressions are ${{ ... }}: Jinja's default delimiters would swallow them.
        variable_start_string="<<", variable_end_string=">>",
        block_start_string="<%", block_end_string="%>",
        comment_start_string="<#", comment_end_string="#>",
    )
    env.filters["q"] = _q
    return env


def render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)


def write_if_changed(path: Path, text: str) -> bool:
    """Write the file if its text changed; True when written."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_text_atomic(path, text)
    return True
