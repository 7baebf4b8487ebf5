"""The stages chained: render -> lock -> create -> certify.

Each public function here is what one command calls, given a Project (the
matrix loaded once) and its Targets. A stage runs only when its input
changed: render when the target definition changed, lock when the rendered
spec changed, create when the lock changed. `run_chain` is the one place the
stages are put in order; `envctl create` and the whole-matrix run both use it.
The chain carries the Target and the env's EnvPrefix from start to end, and
returns what each stage did; it prints nothing and picks no exit status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from envctl.certify.certificate import HOST, Certificate, CertificateError, read_certificate
from envctl.core.errors import EnvctlError, LockStale, NotRunnableHere
from envctl.core.hashing import same_digest
from envctl.core.progress import Progress
from envctl.core.paths import EnvPrefix, cert_path
from envctl.matrix.loader import Target
from envctl.matrix.project import Project

if TYPE_CHECKING:
    from envctl.lock.render import RenderResult


def render(project: Project, targets: list[Target]) -> list[RenderResult]:
    """Render the chosen targets; refuse all of them before writing if any cannot work."""
    from envctl.lock.render import refuse_blocked, write_rendered

    refuse_blocked(targets, project.matrix_path)
    return [write_rendered(project.root, t, project.matrix_path) for t in targets]


def ensure_rendered(project: Project, target: Target, progress: Progress | None = None) -> RenderResult | None:
    """Render `target` if its environment.yml is missing or stale; what it wrote, or None when it was fresh."""
    from envctl.lock.render import is_fresh, render_target

    if is_fresh(project.root, target):
        return None
    if progress:
        progress("render", target=target.name, message="environment.yml missing or stale: rendering")
    return render_target(project.root, target, project.matrix_path)


def lock(project: Project, targets: list[Target], *, channels=None, progress: Progress | None = None):
    """`envctl lock`: render where stale, then solve every target (fresh or not)."""
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
    """The lock stage under `mode`, once the target is rendered: relock when missing or stale (AUTO),
    refuse a missing or stale lock (LOCKED), or take the lock as it is (FROZEN).

    The LockResult when it solved, else None. Whether the lock is stale is
    decided by `lock.solve.check_locks` alone.
    """
    from envctl.lock.lockfile import lock_path
    from envctl.lock.solve import check_locks

    path = lock_path(project.root, target)
    if mode is LockMode.FROZEN:
        if not path.exists():
            raise LockStale(f"--frozen: target '{target.name}' has no lock at {path}",
                            hint=f"Make it with `envctl lock {target.name}` (and commit it).")
        return None
    stale = check_locks(project.root, [target])
    if not stale:
        return None
    if mode is LockMode.LOCKED:
        raise LockStale(f"--locked: the lock of target '{target.name}' is missing or stale: {stale[0].reason}",
                        file=path,
                        hint=f"Run `envctl lock {target.name}` and commit the lock, or drop --locked to relock here.")
    from envctl.lock.solve import lock_target

    if progress:
        progress("lock", target=target.name, message="lock missing or stale: solving")
    return lock_target(project.root, target, channels=channels, progress=progress)


def host_blocker(target: Target, facts: dict | None = None) -> str | None:
    """Why this host cannot run `target` (with what would make it runnable), or None."""
    from envctl.host.runnable import runnability

    return runnability(target, facts).advice


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


def run_chain(project: Project, target: Target, *, prefix: EnvPrefix | None = None, force: bool = False,
              channels=None, certify: bool = True, reuse_certificate: bool = True, refuse_lock_only: bool = True,
              facts: dict | None = None, timeout: float | None = None, out: Path | None = None,
              lock_mode: LockMode = LockMode.AUTO, progress: Progress | None = None, inputs: tuple = ()) -> ChainResult:
    """render -> lock -> create -> certify for one target; errors come wrapped in StageFailed.

    `prefix` is where the env goes (default: the target's default prefix),
    carried as it was chosen to create_env. A target this host cannot run is
    refused before any download (`refuse_lock_only`, what `envctl create`
    wants) or locked and certified lock-only (what `certify` and the
    whole-matrix run want). An unchanged env with a fresh passing certificate
    is not re-certified when `reuse_certificate`.
    """
    from envctl.create.build import create_env
    from envctl.host.runnable import runnability

    place = prefix if prefix is not None else EnvPrefix.of(project.root, target)
    stage = "render"
    try:
        runnable = runnability(target, facts)
        if not runnable and refuse_lock_only:
            raise NotRunnableHere(f"not creating: {runnable.advice}")
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

            cert = certify_lock_only(project.root, target, runnable.reason or "lock-only", facts=facts, out=out)
            return ChainResult(target.name, certificate=cert, certification="lock-only")
        stage = "create"
        created = create_env(project.root, target, prefix=place, force=force, progress=progress)
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
    place = EnvPrefix.of(project.root, target, prefix)  # made once; a default stays a default however it was named
    return unwrap(lambda: run_chain(project, target, prefix=place, force=force, channels=channels, certify=certify,
                                    timeout=timeout, lock_mode=lock_mode, progress=progress))


def certify_one(matrix_path: Path, name: str, *, prefix: Path | None = None, timeout: float | None = None,
                out: Path | None = None, lock_mode: LockMode = LockMode.AUTO,
                progress: Progress | None = None, inputs: tuple = ()) -> Certificate:
    """`envctl certify --target NAME`: 'host' in place; a runnable target built (if needed) then certified;
    any other target lock-only. An explicit --prefix is certified as it is, without building."""
    from envctl.certify.certify import certify_env, certify_host, certify_lock_only
    from envctl.host.runnable import runnability

    if name == HOST and not Path(matrix_path).exists():  # the host needs no project
        return certify_host(Path.cwd(), timeout=timeout, out=out, progress=progress, inputs=inputs)
    project = Project.load(matrix_path)
    if name == HOST and HOST not in project.matrix.targets:  # the matrix's user models too
        return certify_host(project.root, timeout=timeout, out=out, progress=progress, matrix=project.matrix,
                            inputs=inputs)
    target = project.target(name)
    runnable = runnability(target)
    if not runnable:  # nothing to build or run here: record the lock's state
        if lock_mode is LockMode.LOCKED:
            ensure_lock(project, target, lock_mode)
        return certify_lock_only(project.root, target, runnable.reason or "lock-only", out=out)
    if prefix is not None:  # an env the user names: certified as it is, never built
        place = EnvPrefix.of(project.root, target, prefix)
        if lock_mode is not LockMode.AUTO:
            ensure_lock(project, target, lock_mode)
        return certify_env(project.root, target, place.checked("use"), timeout=timeout, out=out, progress=progress,
                           inputs=inputs)
    if inputs:
        from envctl.certify.truth import input_files

        input_files(inputs)  # refused before anything is built
    chain = unwrap(lambda: run_chain(project, target, reuse_certificate=False, timeout=timeout, out=out,
                                     lock_mode=lock_mode, progress=progress, inputs=inputs))
    if chain.certificate is None:  # unreachable: with certify on, every chain ends in a certificate
        raise RuntimeError(f"the chain of '{name}' ended without a certificate")
    return chain.certificate
