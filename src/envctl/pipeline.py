"""The pipeline stages chained: matrix -> render -> lock -> create.

Each function here is what one CLI command calls. A stage runs only when its
input changed: render when the target definition changed, lock when the
rendered spec changed, create when the lock changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import EnvctlError
from .matrix import Matrix, Target, load_matrix

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
    from .render import blocking_findings, render_target

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
    from .render import is_fresh, render_target

    if is_fresh(root, target):
        return False
    if progress:
        progress("render", target=target.name, message="environment.yml missing or stale: rendering")
    render_target(root, target, Path(matrix_path))
    return True


def check_locks(matrix_path: Path, targets: list[str] | None, all_targets: bool):
    from .lock import check_locks as _check
    from .render import is_fresh

    matrix = load_matrix(matrix_path)
    chosen = _select(matrix, targets, all_targets)
    root = project_root(matrix_path)
    stale = list(_check(root, chosen))
    # A rendered file older than the matrix makes its lock stale too.
    names = {s.target for s in stale}
    from .lock import StaleLock

    for t in chosen:
        if t.name not in names and not is_fresh(root, t):
            stale.append(StaleLock(target=t.name, reason="environment.yml is stale against the matrix (run `envctl render`)"))
    return stale


def ensure_locked(root: Path, matrix_path: Path, target: Target, *, channels=None, progress: Progress | None = None, force: bool = False):
    """Render and lock `target` when missing or stale; return the LockResult or None if fresh."""
    from .lock import check_locks as _check
    from .lock import lock_target

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
        from .lock import lock_target

        results.append(lock_target(root, target, channels=channels, progress=progress))
    return results


def create(matrix_path: Path, target_name: str, *, prefix: Path | None = None, force: bool = False, channels=None, progress: Progress | None = None):
    from .create import create_env

    matrix = load_matrix(matrix_path)
    (target,) = matrix.select([target_name])
    root = project_root(matrix_path)
    ensure_locked(root, matrix_path, target, channels=channels, progress=progress)
    return create_env(root, target, prefix=prefix, force=force, progress=progress)
