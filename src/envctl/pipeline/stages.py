"""The stages chained: render -> lock -> create -> certify.

Each public function here is what one command calls, given a Project (the
matrix loaded once) and its Targets. A stage runs only when its input
changed: render when the target definition changed, lock when the rendered
spec changed, create when the lock changed. `run_chain` is the one place the
stages are put in order; `envctl create` and the whole-matrix run both use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envctl.certify.certificate import HOST, Certificate, CertificateError, read_certificate
from envctl.core.errors import EnvctlError
from envctl.core.hashing import same_digest
from envctl.core.progress import Progress
from envctl.core.paths import EnvPrefix, cert_path
from envctl.matrix.loader import Target
from envctl.matrix.project import Project



def render(project: Project, targets: list[Target]):
    """Render the chosen targets; refuse all of them before writing if any cannot work."""
    from envctl.lock.render import blocking_findings, render_target

    blocked = {t.name: blocking_findings(t) for t in targets}
    blocked = {k: v for k, v in blocked.items() if v}
    if blocked:
        lines = "; ".join(f"{name}: {f.rule} ({f.message})" for name, fs in blocked.items() for f in fs)
        raise EnvctlError(
            f"nothing rendered: {len(blocked)} target(s) cannot work: {lines}",
            file=project.matrix_path, hint="Run `envctl matrix check` for sources and remedies.", exit_code=1,
        )
    return [render_target(project.root, t, project.matrix_path) for t in targets]


def ensure_rendered(project: Project, target: Target, progress: Progress | None = None) -> bool:
    """Render `target` if its environment.yml is missing or stale; True if it did."""
    from envctl.lock.render import is_fresh, render_target

    if is_fresh(project.root, target):
        return False
    if progress:
        progress("render", target=target.name, message="environment.yml missing or stale: rendering")
    render_target(project.root, target, project.matrix_path)
    return True


def check_locks(project: Project, targets: list[Target]):
    """Missing or stale locks (a rendered file older than the matrix makes its lock stale too)."""
    from envctl.lock.render import is_fresh
    from envctl.lock.solve import StaleLock, check_locks as stale_locks

    stale = list(stale_locks(project.root, targets))
    names = {s.target for s in stale}
    for t in targets:
        if t.name not in names and not is_fresh(project.root, t):
            stale.append(StaleLock(target=t.name, reason="environment.yml is stale against the matrix (run `envctl render`)"))
    return stale


def ensure_locked(project: Project, target: Target, *, channels=None, progress: Progress | None = None,
                  force: bool = False):
    """Render and lock `target` when missing or stale; return the LockResult or None if fresh."""
    from envctl.lock.solve import check_locks as stale_locks, lock_target

    rendered = ensure_rendered(project, target, progress)
    if not force and not rendered and not list(stale_locks(project.root, [target])):
        return None
    if progress:
        progress("lock", target=target.name, message="lock missing or stale: solving")
    return lock_target(project.root, target, channels=channels, progress=progress)


def lock(project: Project, targets: list[Target], *, channels=None, progress: Progress | None = None):
    from envctl.lock.solve import lock_target

    results = []
    for target in targets:
        ensure_rendered(project, target, progress)
        results.append(lock_target(project.root, target, channels=channels, progress=progress))
    return results


class LockMode(str, enum.Enum):
    """How a command treats the lock (pixi's meaning of --locked / --frozen)."""

    AUTO = "auto"  # render and relock when missing or stale
    LOCKED = "locked"  # fail when missing or stale; never relock
    FROZEN = "frozen"  # use the lock as it is, without checking freshness

    @classmethod
    def of(cls, locked: bool = False, frozen: bool = False) -> "LockMode":
        if locked and frozen:
            raise EnvctlError("--locked and --frozen exclude each other: --locked checks the lock, --frozen does not.")
        return cls.LOCKED if locked else cls.FROZEN if frozen else cls.AUTO


def ensure_lock(project: Project, target: Target, mode: LockMode = LockMode.AUTO, *, channels=None,
                progress: Progress | None = None):
    """The lock stage under `mode`: relock (AUTO), check (LOCKED) or take as is (FROZEN)."""
    if mode is LockMode.AUTO:
        return ensure_locked(project, target, channels=channels, progress=progress)
    from envctl.lock.lockfile import lock_path

    path = lock_path(project.root, target)
    if mode is LockMode.FROZEN:
        if not path.exists():
            raise EnvctlError(f"--frozen: target '{target.name}' has no lock at {path}", exit_code=1,
                              hint=f"Make it with `envctl lock {target.name}` (and commit it).")
        return None
    stale = check_locks(project, [target])
    if stale:
        raise EnvctlError(f"--locked: the lock of target '{target.name}' is missing or stale: {stale[0].reason}",
                          file=path, exit_code=1,
                          hint=f"Run `envctl lock {target.name}` and commit the lock, or drop --locked to relock here.")
    return None


def host_blocker(target: Target, facts: dict | None = None) -> str | None:
    """Why this host cannot run `target` (with what would make it runnable), or None."""
    from envctl.host.runnable import runnability

    return runnability(target, facts).advice


def create(project: Project, target: Target, *, prefix: Path | None = None, force: bool = False, channels=None,
           progress: Progress | None = None):
    """Lock if needed, then build the env; refused before any download when this host cannot run it."""
    from envctl.create.build import create_env

    blocker = host_blocker(target)
    if blocker:
        raise EnvctlError(f"not creating: {blocker}", exit_code=1)
    ensure_locked(project, target, channels=channels, progress=progress)
    return create_env(project.root, target, prefix=prefix, force=force, progress=progress)


def fresh_certificate(project: Project, target: Target, prefix: Path, lock_sha256: str) -> Certificate | None:
    """certs/<target>.json when it passed, for this env, this lock and this definition; else None."""
    try:
        cert = read_certificate(cert_path(project.root, target))
    except CertificateError:
        return None
    ok = (cert.passed and cert.lock is not None and same_digest(cert.lock.sha256, lock_sha256)
          and cert.prefix == str(prefix) and cert.target_hash == target.definition_hash())
    return cert if ok else None


@dataclass
class ChainResult:
    """What the chain did for one target: the env (None when lock-only here) and its certificate."""

    target: str
    create: object | None = None  # create.build.CreateResult
    certificate: Certificate | None = None
    certification: str = "not run"  # passed | failed | already certified | lock-only | not run


class StageFailed(Exception):
    """An error in one stage of the chain, with the stage it happened in."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


def run_chain(project: Project, target: Target, *, prefix: Path | None = None, force: bool = False, channels=None,
              certify: bool = True, reuse_certificate: bool = True, refuse_lock_only: bool = True,
              facts: dict | None = None, timeout: float | None = None, out: Path | None = None,
              lock_mode: LockMode = LockMode.AUTO, progress: Progress | None = None, inputs: tuple = ()) -> ChainResult:
    """render -> lock -> create -> certify for one target; errors come wrapped in StageFailed.

    A target this host cannot run is refused before any download
    (`refuse_lock_only`, what `envctl create` wants) or locked and certified
    lock-only (what `certify` and the whole-matrix run want). An unchanged env
    with a fresh passing certificate is not re-certified when `reuse_certificate`.
    """
    from envctl.create.build import create_env
    from envctl.host.runnable import runnability

    stage = "render"
    try:
        runnable = runnability(target, facts)
        if not runnable and refuse_lock_only:
            raise EnvctlError(f"not creating: {runnable.advice}", exit_code=1)
        if lock_mode is LockMode.AUTO:
            ensure_rendered(project, target, progress)
        # Lock-only targets are locked too: solving for their platform is the one check this host can make.
        stage = "lock"
        ensure_lock(project, target, lock_mode, channels=channels, progress=progress)
        if not runnable:
            if not certify:
                return ChainResult(target.name, certification="not run")
            stage = "certify"
            from envctl.certify.certify import certify_lock_only

            return ChainResult(target.name, certificate=certify_lock_only(project.root, target, runnable.reason,
                                                                          facts=facts, out=out),
                               certification="lock-only")
        stage = "create"
        # The record, not the bare path: a default prefix stays guarded however it was chosen.
        created = create_env(project.root, target, prefix=EnvPrefix.of(project.root, target, prefix),
                             force=force, progress=progress)
        if not certify:
            return ChainResult(target.name, created, certification="not run")
        stage = "certify"
        if reuse_certificate and created.action == "unchanged" and out is None:
            fresh = fresh_certificate(project, target, created.prefix, created.lock_sha256)
            if fresh:
                if progress:
                    progress("certify", target=target.name, message=f"already certified: {fresh.path} passed for this lock")
                return ChainResult(target.name, created, fresh, "already certified")
        from envctl.certify.certify import certify_env  # not on the no-op path: its imports cost

        cert = certify_env(project.root, target, created.prefix, facts=facts, timeout=timeout, out=out,
                           progress=progress, inputs=inputs)
        return ChainResult(target.name, created, cert, "passed" if cert.passed else "failed")
    except (KeyboardInterrupt, StageFailed):
        raise
    except Exception as exc:
        raise StageFailed(stage, exc) from exc


def unwrap(call: Callable[[], ChainResult]) -> ChainResult:
    """Run a chain for a command: a stage's EnvctlError reaches the user as itself."""
    try:
        return call()
    except StageFailed as failed:
        raise failed.error from None


def setup(project: Project, target: Target, *, prefix: Path | None = None, force: bool = False, channels=None,
          certify: bool = True, timeout: float | None = None, lock_mode: LockMode = LockMode.AUTO,
          progress: Progress | None = None) -> ChainResult:
    """The newcomer's one command: render, lock (if missing or stale), create, certify."""
    return unwrap(lambda: run_chain(project, target, prefix=prefix, force=force, channels=channels, certify=certify,
                                    timeout=timeout, lock_mode=lock_mode, progress=progress))


def certify_one(matrix_path: Path, name: str, *, prefix: Path | None = None, timeout: float | None = None,
                out: Path | None = None, lock_mode: LockMode = LockMode.AUTO,
                progress: Progress | None = None, inputs: tuple = ()) -> Certificate:
    """`envctl certify --target NAME`: 'host' in place; a runnable target built (if needed) then certified;
    any other target lock-only. An explicit --prefix is certified as it is, without building."""
    from envctl.certify.certify import certify_env, certify_host

    if name == HOST and not Path(matrix_path).exists():  # the host needs no project
        return certify_host(Path.cwd(), timeout=timeout, out=out, progress=progress, inputs=inputs)
    project = Project.load(matrix_path)
    if name == HOST and HOST not in project.matrix.targets:  # the matrix's user models too
        return certify_host(project.root, timeout=timeout, out=out, progress=progress, matrix=project.matrix,
                            inputs=inputs)
    from envctl.certify.certify import certify_lock_only
    from envctl.host.runnable import runnability

    target = project.target(name)
    runnable = runnability(target)
    if not runnable:  # nothing to build or run here: record the lock's state
        if lock_mode is LockMode.LOCKED:
            ensure_lock(project, target, lock_mode)
        return certify_lock_only(project.root, target, runnable.reason, out=out)
    if prefix is not None:
        if lock_mode is not LockMode.AUTO:
            ensure_lock(project, target, lock_mode)
        return certify_env(project.root, target, Path(prefix), timeout=timeout, out=out, progress=progress,
                           inputs=inputs)
    if inputs:
        from envctl.certify.truth import input_files

        input_files(inputs)  # refused before anything is built
    chain = unwrap(lambda: run_chain(project, target, reuse_certificate=False, timeout=timeout, out=out,
                                     lock_mode=lock_mode, progress=progress, inputs=inputs))
    return chain.certificate
