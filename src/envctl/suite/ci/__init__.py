"""The CI systems `envctl ci` writes configuration for: one interface, one registry.

A CI system is one module in this package (plus its template in suite/templates/)
that defines `SYSTEM`, an instance of a `CiSystem` subclass. Every module here is
a system: `systems()` finds them by listing the package, and the CLI offers
a `ci` subcommand of that name for each, so nothing else names them.

What every system shares is decided once: the job plan, the install line and
the checks (suite/ci_jobs.py, suite/ci_install.py), the project's paths
(`CiProject`) and the flow from a matrix to the file's text (`CiSystem.generate`).
A system decides only its runners, its file's place and its template's own values.

The CLI lists the systems on every start, so a module here imports only the
standard library and this module at import time; the matrix, Jinja and the
plan load inside `generate`.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from envctl.suite.ci_jobs import Job

__all__ = ["CiOptions", "CiProject", "CiSystem", "Generated", "systems"]


@dataclass(frozen=True)
class CiOptions:
    """What the user chose on the command line (`branch` only where the system's `takes_branch`)."""

    gpu_label: str | None = None
    install: str | None = None
    branch: str = "main"
    fail_on_drift: bool = False


@dataclass(frozen=True)
class CiProject:
    """What every CI file says about the project. Paths are from the checkout's root (what the
    service's own actions see); the jobs' commands run in `workdir`, the project's folder."""

    matrix: str  # the matrix, from the checkout's root (named in the header)
    matrix_opt: str  # " --matrix REL" for envctl commands, "" at the default place
    install: str  # the pip requirement that installs envctl
    workdir: str  # the project's folder in the checkout, "" at its root
    targets: tuple[str, ...]  # every target, for the lock job (names are shell-safe: core/atomic SAFE_NAME)
    lock_suffix: str
    locks: str
    rattler_cache: str
    uv_cache: str
    certs: str
    reports: str
    gathered: str
    drift_opt: str  # " --fail-on-drift" when drift fails the fan-in
    lock_only_notes: str  # Markdown lines: jobs that certify nothing by running (the fan-in lists them)
    lock_minutes: int
    report_minutes: int

    def at(self, path: str) -> str:
        """A project path (`locks/<target><lock suffix>`) from the checkout's root."""
        return in_checkout(self.workdir, path)


def in_checkout(workdir: str, path: str) -> str:
    return f"{workdir}/{path}" if workdir else path


@dataclass(frozen=True)
class Generated:
    text: str
    jobs: int  # certify jobs in the file
    path: Path  # where the file goes unless --out says otherwise


class CiSystem(abc.ABC):
    """One CI service. A subclass sets the class attributes and lays out the plan in `values`."""

    name: ClassVar[str]  # the `ci` subcommand it gets
    summary: ClassVar[str]  # the command's help
    kind: ClassVar[str]  # what the file is called in --out's help ("Workflow")
    path: ClassVar[str]  # the file, from the checkout's root
    template: ClassVar[str]  # in envctl/suite/templates/
    service: ClassVar[str]  # how notes name the service ("GitHub hosts no osx-64 runner")
    hosted: ClassVar[Mapping[str, Any]]  # conda platform -> the service's hosted runner
    linux: ClassVar[Any]  # the runner of lock-only jobs
    gpu_runners: ClassVar[str]  # --gpu-label's help: which runners the label picks
    takes_branch: ClassVar[bool] = False  # --branch: the file itself names the default branch

    @abc.abstractmethod
    def gpu_runner(self, platform: str, label: str) -> Any:
        """The runner value for a GPU job under --gpu-label."""

    @abc.abstractmethod
    def values(self, project: CiProject, jobs: list[Job], options: CiOptions) -> Mapping[str, Any]:
        """The template's variables besides `project`."""

    def default_out(self, matrix_path: Path) -> Path:
        from envctl.core.atomic import ensure_inside
        from envctl.core.paths import project_root
        from envctl.suite.ci_jobs import checkout_root

        # A folder on the way (.github) may be a symlink committed into the checkout: never write through it.
        checkout = checkout_root(project_root(matrix_path))
        return ensure_inside(checkout, checkout / self.path, f"{self.kind.lower()} file")

    def generate(self, matrix_path: Path, options: CiOptions = CiOptions()) -> Generated:
        """The file's text for the matrix at `matrix_path`."""
        from envctl.core.errors import EnvctlError
        from envctl.core.limits import check_text
        from envctl.core.paths import project_root
        from envctl.lock.lockfile import lock_format
        from envctl.matrix.loader import load_matrix
        from envctl.suite import ci_jobs

        ci_jobs.check_label(options.gpu_label)
        if self.takes_branch:
            ci_jobs.check_branch(options.branch)
        if options.install is not None:  # lands in generated YAML: one line, or it would add keys of its own
            check_text(options.install, "--install")
        root = project_root(matrix_path)
        targets = list(load_matrix(matrix_path).targets.values())
        jobs = ci_jobs.plan(targets, hosted=self.hosted, linux=self.linux, service=self.service,
                            gpu_label=options.gpu_label, gpu_runner=self.gpu_runner)
        if not jobs:
            raise EnvctlError("the matrix has no targets: nothing to certify.", file=matrix_path)
        rel = ci_jobs.matrix_rel(matrix_path, root)
        workdir = ci_jobs.project_dir(root)
        at = partial(in_checkout, workdir)
        project = CiProject(
            matrix=at(rel),
            matrix_opt="" if rel == "envs/matrix.yaml" else f" --matrix {rel}",
            install=ci_jobs.install_spec(root, options.install),
            workdir=workdir,
            targets=tuple(t.name for t in targets),
            lock_suffix=lock_format().suffix,
            locks=at("locks"),
            rattler_cache=at(".envctl/cache/rattler"),
            uv_cache=at(".envctl/cache/uv"),
            certs=at("certs"),
            reports=at("reports"),
            gathered=at("gathered"),
            drift_opt=" --fail-on-drift" if options.fail_on_drift else "",
            lock_only_notes=ci_jobs.lock_only_notes(jobs),
            lock_minutes=ci_jobs.LOCK_MINUTES,
            report_minutes=ci_jobs.REPORT_MINUTES,
        )
        text = ci_jobs.render(self.template, project=project, **self.values(project, jobs, options))
        return Generated(text, len(jobs), self.default_out(matrix_path))


@lru_cache(maxsize=1)
def systems() -> dict[str, CiSystem]:
    """Every module of this package's `SYSTEM`, by name, in name order."""
    found: dict[str, CiSystem] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        system = getattr(importlib.import_module(f"{__name__}.{module}"), "SYSTEM", None)
        if not isinstance(system, CiSystem):
            raise TypeError(f"envctl/suite/ci/{module}.py defines no SYSTEM (a CiSystem): every module here is a "
                            "CI system")
        if system.name in found:
            raise TypeError(f"two CI systems are named {system.name!r}")
        found[system.name] = system
    return found
