"""The pipeline stages chained: matrix -> render -> lock -> create.

Each function here is what one CLI command calls. A stage runs only when its
input changed: render when the target definition changed, lock when the
rendered spec changed, create when the lock changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envctl.core.errors import EnvctlError
from envctl.matrix.loader import Matrix, Target, load_matrix

Progress = Callable[..., None]


def project_root(matrix_path: Path) -> Path:
    """The project a matrix belongs to: the folder holding envs/ (or the matrix's own folder)."""
    matrix_path = Path(matrix_path).absolute()
    parent = matrix_path.parent
    return parent.parent if parent.name == "envs" else parent


def _select(matrix: Matrix, targets: list[str] | None, all_targets: bool) -> list[Target]:
    return matrix.select(targets, all_targets)


def render(matrix_path: Path, targets: list[str] | None, all_targets: bool):
    """Render the chosen targets; refuse all of them before writing if any cannot work."""
    from envctl.lock.render import blocking_findings, render_target

    matrix = load_matrix(matrix_path)
    chosen = _select(matrix, targets, all_targets)
    blocked = {t.name: blocking_findings(t) for t in chosen}
    blocked = {k: v for k, v in blocked.items() if v}
    if blocked:
        lines = "; ".join(f"{name}: {f.rule} ({f.message})" for name, fs in blocked.items() for f in fs)
        raise EnvctlError(
            f"nothing rendered: {len(blocked)} target(s) cannot work: {lines}",
            file=matrix_path, hint="Run `envctl matrix check` for sources and remedies.", exit_code=1,
        )
    root = project_root(matrix_path)
    return [render_target(root, t, Path(matrix_path)) for t in chosen]


def ensure_rendered(root: Path, matrix_path: Path, target: Target, progress: Progress | None = None) -> bool:
    """Render `target` if its environment.yml is missing or stale; True if it did."""
    from envctl.lock.render import is_fresh, render_target

    if is_fresh(root, target):
        return False
    if progress:
        progress("render", target=target.name, message="environment.yml missing or stale: rendering")
    render_target(root, target, Path(matrix_path))
    return True


def check_locks(matrix_path: Path, targets: list[str] | None, all_targets: bool):
    from envctl.lock.solve import check_locks as _check
    from envctl.lock.render import is_fresh

    matrix = load_matrix(matrix_path)
    chosen = _select(matrix, targets, all_targets)
    root = project_root(matrix_path)
    stale = list(_check(root, chosen))
    # A rendered file older than the matrix makes its lock stale too.
    names = {s.target for s in stale}
    from envctl.lock.solve import StaleLock

    for t in chosen:
        if t.name not in names and not is_fresh(root, t):
            stale.append(StaleLock(target=t.name, reason="environment.yml is stale against the matrix (run `envctl render`)"))
    return stale


def ensure_locked(root: Path, matrix_path: Path, target: Target, *, channels=None, progress: Progress | None = None, force: bool = False):
    """Render and lock `target` when missing or stale; return the LockResult or None if fresh."""
    from envctl.lock.solve import check_locks as _check
    from envctl.lock.solve import lock_target

    rendered = ensure_rendered(root, matrix_path, target, progress)
    if not force and not rendered and not list(_check(root, [target])):
        return None
    if progress:
        progress("lock", target=target.name, message="lock missing or stale: solving")
    return lock_target(root, target, channels=channels, progress=progress)


def lock(matrix_path: Path, targets: list[str] | None, all_targets: bool, *, channels=None, progress: Progress | None = None):
    matrix = load_matrix(matrix_path)
    chosen = _select(matrix, targets, all_targets)
    root = project_root(matrix_path)
    results = []
    for target in chosen:
        ensure_rendered(root, matrix_path, target, progress)
        from envctl.lock.solve import lock_target

        results.append(lock_target(root, target, channels=channels, progress=progress))
    return results


def host_blocker(target: Target, facts: dict | None = None) -> str | None:
    """Why `target` cannot run on this machine (with what would make it runnable), or None.

    Certification's own skip logic decides; host facts (nvidia-smi) are read
    only for GPU targets, so the everyday no-op create stays fast.
    """
    from envctl.certify.certify import GPU_PROVIDERS, _skip_reason
    from envctl.host.platform import host_platform

    host = host_platform()
    lock_only = f"or `envctl lock {target.name}` to make and check its lock here without an env"
    gpu = target.execution_provider in GPU_PROVIDERS
    if facts is None:
        from envctl.host.facts import host_facts

        facts = host_facts() if gpu and host in target.platforms else {"has_nvidia_gpu": False}
    reason = _skip_reason(target, facts)
    if reason and host not in target.platforms:
        where = " or ".join(target.platforms)
        return (f"target '{target.name}' runs on {where}, and this machine is {host}. "
                f"Run `envctl create --target {target.name}` on a {where} machine, {lock_only}.")
    if reason:
        return (f"target '{target.name}' needs {target.execution_provider} (CUDA {target.cuda or '?'}), and this "
                f"machine has no NVIDIA GPU (no nvidia-smi, no Jetson L4T). Run it on a machine with an NVIDIA "
                f"driver for CUDA {target.cuda or '?'} or newer, {lock_only}.")
    driver = ((facts.get("nvidia") or {}).get("driver_cuda") or "") if gpu else ""
    if driver and target.cuda and _major(driver) < _major(target.cuda):
        return (f"target '{target.name}' needs CUDA {target.cuda}, and this machine's NVIDIA driver supports CUDA "
                f"{driver} at most. Upgrade the driver to one for CUDA {target.cuda} or newer, {lock_only}.")
    return None


def _major(version: str) -> int:
    head = str(version).split(".")[0]
    return int(head) if head.isdigit() else 0


def create(matrix_path: Path, target_name: str, *, prefix: Path | None = None, force: bool = False, channels=None, progress: Progress | None = None):
    from envctl.create.build import create_env

    matrix = load_matrix(matrix_path)
    (target,) = matrix.select([target_name])
    root = project_root(matrix_path)
    # Before render or lock: a target this host cannot run must cost no download.
    blocker = host_blocker(target)
    if blocker:
        raise EnvctlError(f"not creating: {blocker}", exit_code=1)
    ensure_locked(root, matrix_path, target, channels=channels, progress=progress)
    return create_env(root, target, prefix=prefix, force=force, progress=progress)


@dataclass
class SetupResult:
    """What `envctl create` did: the env, and its certification."""

    create: object  # create.CreateResult
    certification: str  # "passed" | "failed" | "already certified" | "not run"
    certificate: dict | None = None
    certificate_path: Path | None = None


def fresh_certificate(root: Path, target: Target, prefix: Path, lock_sha256: str) -> tuple[dict, Path] | None:
    """certs/<target>.json when it passed, for this env, this lock and this definition; else None."""
    import json

    from envctl.certify.certify import cert_path

    path = cert_path(root, target.name)
    try:
        cert = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(cert, dict) and cert.get("result") == "passed"
          and (cert.get("lock") or {}).get("sha256") == lock_sha256
          and (cert.get("environment") or {}).get("prefix") == str(prefix)
          and cert.get("target_hash") == target.definition_hash())
    return (cert, path) if ok else None


def setup(matrix_path: Path, target_name: str, *, prefix: Path | None = None, force: bool = False, channels=None,
          certify: bool = True, timeout: float | None = None, progress: Progress | None = None) -> SetupResult:
    """The newcomer's one command: render, lock (if missing or stale), create, certify.

    A rebuilt env is always re-certified; an unchanged one only when no fresh
    passing certificate exists for it and its lock.
    """
    created = create(matrix_path, target_name, prefix=prefix, force=force, channels=channels, progress=progress)
    if not certify:
        return SetupResult(created, "not run")
    from envctl.certify.certify import certify as run_certify

    (target,) = load_matrix(matrix_path).select([target_name])
    root = project_root(matrix_path)
    if created.action == "unchanged":
        fresh = fresh_certificate(root, target, created.prefix, created.lock_sha256)
        if fresh:
            if progress:
                progress("certify", target=target.name, message=f"already certified: {fresh[1]} passed for this lock")
            return SetupResult(created, "already certified", fresh[0], fresh[1])
    cert = run_certify(matrix_path, target.name, prefix=created.prefix, timeout=timeout, build=False, progress=progress)
    return SetupResult(created, "passed" if cert.data.get("result") == "passed" else "failed", cert.data, cert.path)
