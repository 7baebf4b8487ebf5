"""Which env an everyday command works in: --target, --prefix, or the current interpreter.

run, doctor and export all ask the same question; this is its one answer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from envctl.core.errors import EnvctlError, LockStale, NotRunnableHere
from envctl.core.paths import EnvPrefix, env_python, project_root
from envctl.matrix.loader import Target
from envctl.matrix.project import Project


@dataclass(frozen=True)
class EnvLocation:
    target: Target | None  # the matrix target, given or recorded in the env; None for a bare prefix or the host
    prefix: Path
    python: Path
    kind: str  # "current interpreter" | "target env" | "prefix"
    project: Project | None = None  # the matrix, when it was read (once per command)

    @property
    def name(self) -> str | None:
        return self.target.name if self.target else None


def locate_env(matrix_path: Path, target_name: str | None = None, prefix: Path | None = None, *,
               current_ok: bool = True, refuse_unrunnable: str | None = None) -> EnvLocation:
    """The env named by --target / --prefix (else the current interpreter, when `current_ok`).

    `refuse_unrunnable`, e.g. "export in", refuses a target this host cannot run
    before looking for its env. A missing env is an EnvctlError that says how to make it.
    """
    from envctl.create.build import env_state
    from envctl.host.runnable import runnability

    project = Project.load(matrix_path) if target_name else None
    target = project.target(target_name) if project and target_name else None
    blocker = runnability(target).advice if target is not None else None
    if blocker and refuse_unrunnable and target is not None:
        raise NotRunnableHere(f"cannot {refuse_unrunnable} target '{target.name}' here: {blocker}")
    if prefix is None and target is None:
        if not current_ok:
            raise EnvctlError("name the env: --target T (or --prefix PATH)")
        return EnvLocation(None, Path(sys.prefix), Path(sys.executable), "current interpreter")
    root = project_root(matrix_path)
    # never run an env a committed .envctl symlink points at, outside the project
    prefix = EnvPrefix.of(root, target if target is not None else "-", prefix).checked("use")
    python = env_python(prefix)
    if not python.exists():
        made_for = (env_state(prefix) or {}).get("target")
        name = target.name if target else made_for
        how = (f"Create it with `envctl create --target {name}`." if name
               else "Check the path, or create one with `envctl create --target T --prefix PATH`.")
        if blocker:
            how = f"It cannot be created here: {blocker}"
        raise EnvctlError(f"there is no env at {prefix} (no {python}).", hint=how)
    made_for = (env_state(prefix) or {}).get("target")
    if target is None and made_for and Path(matrix_path).exists():
        project = Project.load(matrix_path)
        target = project.matrix.targets.get(made_for)  # judge it as the target it was made for
    return EnvLocation(target, prefix, python, "target env" if target else "prefix", project)


def check_env_lock(matrix_path: Path, prefix: Path, mode: str = "auto", project: Project | None = None) -> str | None:
    """The env against the lock it was built from, under --locked / --frozen (pixi's meaning).

    auto: a note when locks/ now holds another lock than the env was built from;
    locked: that is an error, and so is a missing or stale lock; frozen: no check.
    """
    from envctl.core.hashing import same_digest
    from envctl.lock.lockfile import load_lock, lock_path
    from envctl.create.build import env_state

    if mode == "frozen":
        return None
    state = env_state(prefix) or {}
    name = state.get("target")
    if not name:
        if mode == "locked":
            raise LockStale(f"--locked: {prefix} was not built by envctl from a lock, so it cannot be checked",
                            hint="Use --frozen to run in it anyway.")
        return None
    root = project_root(matrix_path)
    lock = lock_path(root, name)
    if mode == "locked":
        from envctl.pipeline.stages import LockMode, ensure_lock

        project = project or Project.load(matrix_path)
        ensure_lock(project, project.target(name), LockMode.LOCKED)
    try:
        current = load_lock(lock).sha256
    except EnvctlError:  # no lock (or an unreadable one) here: nothing to compare with
        return None
    if same_digest(current, state.get("lock_sha256")):
        return None
    if mode == "locked":
        raise LockStale(f"--locked: {prefix} was built from another {lock.name} than the one in locks/ now",
                        hint=f"`envctl create --target {name} --locked` brings it up to date.")
    return (f"note: {prefix} was built from an older {lock.name}; "
            f"`envctl create --target {name}` brings it up to date")
