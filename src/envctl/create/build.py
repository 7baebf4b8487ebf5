"""Create stage: install a target's conda-lock lockfile into a real environment.

No solving and no conda/mamba: the conda part is linked by py-rattler from
records rebuilt out of the lock's own URLs and hashes, the pip part by
`uv pip install --no-deps --require-hashes` (install_pip.py).

Safety: the env is built in `<prefix>~staging-<pid>` beside the final prefix,
with the final path patched in, and swapped in only when complete (one atomic
renameat2(RENAME_EXCHANGE) on Linux). A create killed at any point leaves the
previous env (or none); the next create removes the leftovers it can prove it
made (prefixswap's marker files). Creates of one prefix are serialized by
flock on `<prefix>~lock`.

Integrity: both installers hardlink from their package caches, so a cache
file changed after it was fetched (an in-place edit through another env that
shares it, a truncated extraction) would otherwise reach every new env
unchecked. Before the swap, every linked file is checked against its
package's own hashes (conda's paths.json sha256 and size, the wheel's
RECORD); a mismatch evicts that package from the cache and the env is built
once more from freshly fetched archives, which the lock's hashes check again;
a second mismatch is refused. Files already verified are remembered by inode,
size and mtime (`verified-files-v1.json` under envctl's cache folder), so a
second env of the same lock hashes only what changed.

The no-op path (env's recorded lock sha256 == the lock file's) imports
neither rattler nor conda-lock and takes milliseconds.

Progress events, `progress(event, message=..., **info)`: waiting, start,
conda, conda-package (transient), pip, verify, refetch, check, swap, done.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envctl import __version__
from envctl.core.atomic import write_text_atomic
from envctl.core.errors import EnvBroken, EnvctlError, WriteFailed
from envctl.core.hashing import same_digest
from envctl.core.paths import EnvPrefix, default_prefix, env_python
from envctl.lock.lockfile import Lock, load_lock, lock_path
from envctl.core.statedir import ensure_state_dir
from envctl.core.prefixrule import check_prefix
from envctl.core.progress import Progress, emit
from envctl.create.prefixswap import (check_prefix_path, env_in_use, mark_scratch, prefix_lock, recover_leftovers, scratch_path,
                                      swap_in)
from envctl.create.verify import STATE_FILE, CorruptFiles, verify_conda, verify_files

if TYPE_CHECKING:
    from envctl.lock.records import LockedPackage
    from envctl.matrix.loader import Target

__all__ = ["CreateResult", "create_env", "default_prefix", "env_in_use", "env_state", "verify_files", "STATE_FILE"]


@dataclass(frozen=True)
class CreateResult:
    target: str
    prefix: Path
    action: str  # "created" | "unchanged" | "rebuilt"
    packages: dict[str, int]  # {"conda": n, "pip": m}
    size_bytes: int  # du-like: allocated blocks, a hardlinked file once
    own_bytes: int  # of which in files linked nowhere else (not shared with a cache or another env)
    seconds: float
    waited_for_lock: bool
    python: Path
    python_version: str = ""
    lock_sha256: str = ""
    state: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}
        return data | {"prefix": str(self.prefix), "python": str(self.python), "seconds": round(self.seconds, 3)}


# The state file's fields and their types: anyone who can write the env can edit it, so a field
# of another type is dropped (as if absent) rather than trusted or crashed on.
STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "lock_sha256": str, "target": str, "created_at": str, "host_platform": str, "envctl_version": str,
    "lock_file": str, "packages": dict, "python_version": str, "size_bytes": int, "own_bytes": int,
}


def env_state(prefix: Path) -> dict[str, Any] | None:
    """What create recorded in the env (lock sha256, target, ...), or None if not an envctl env."""
    from envctl.core.limits import read_json

    try:
        data = read_json(Path(prefix) / STATE_FILE, what="env state file")  # capped, regular, bounded depth
    except EnvctlError:  # missing, a FIFO or device, not JSON: not an envctl env
        return None
    if not isinstance(data, dict):
        return None
    typed = {k: v for k, v in data.items()
             if k not in STATE_TYPES or (isinstance(v, STATE_TYPES[k]) and not isinstance(v, bool))}
    if isinstance(typed.get("packages"), dict):
        typed["packages"] = {k: v for k, v in typed["packages"].items()
                             if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
    return typed


def create_env(
    root: Path,
    target: Target | str,
    *,
    prefix: EnvPrefix | Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> CreateResult:
    """Install `root/locks/<target>.conda-lock.yml` at `prefix` (default: default_prefix).

    A prefix in the project's .envctl/ (the default one, whoever passed it) is
    checked to stay inside the project and gets .envctl/.gitignore first.
    """
    started = time.monotonic()
    name = target if isinstance(target, str) else target.name
    _check_name(name)
    lock = lock_path(root, name)
    if not lock.is_file():
        raise EnvctlError(f"no lock for target '{name}': {lock} does not exist", hint=f"Run `envctl lock --target {name}`.")
    # The chain hands over the EnvPrefix it made at its start; an API caller's path is made one here.
    place = prefix if isinstance(prefix, EnvPrefix) else EnvPrefix.of(root, name, prefix)
    prefix = check_prefix_path(place.path)
    check_prefix(str(prefix))  # shell or Python syntax in a prefix would run from its launchers (core/prefixrule)
    place.checked()  # .envctl (or .envctl/envs) may be a symlink committed into the project: never build through it
    if place.in_project_state:
        try:
            ensure_state_dir(root)  # .envctl/.gitignore: envs are never committed, in any project
        except OSError as exc:
            raise _os_error(prefix, exc) from None
    # Refuse a folder envctl did not make before anything (even the flock file) is written beside it.
    _refuse_foreign(prefix)
    try:
        return _create_locked(root, name, load_lock(lock), prefix, force, progress, started)
    except OSError as exc:  # a full disk, a read-only or missing parent, a file where a folder should be
        raise _os_error(prefix, exc) from None


def _check_name(name: str) -> None:
    """The matrix admits only plain names; an API caller's `../x` must not become a path either."""
    from envctl.core.atomic import SAFE_NAME

    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise EnvctlError(f"target name {name!r} is not allowed: a target name is a plain file name (no '/', '..')")


def _os_error(prefix: Path, exc: OSError) -> EnvctlError:
    where = f" ({exc.filename})" if exc.filename else ""
    hint = {
        errno.ENOSPC: "Free some disk space and run it again.",
        errno.EDQUOT: "Free some disk space and run it again.",
        errno.EROFS: "Choose a writable --prefix.",
        errno.EACCES: "Choose a writable --prefix.",
        errno.EPERM: "Choose a writable --prefix.",
        errno.ENOTDIR: "Something on the way to the prefix is a file, not a folder; choose another --prefix.",
        errno.EEXIST: "Something on the way to the prefix is a file, not a folder; choose another --prefix.",
    }.get(exc.errno or 0)
    return WriteFailed(
        f"cannot create the env at {prefix}: {exc.strerror or exc}{where}. "
        "Nothing was swapped in: the previous env (if any) is unchanged.",
        hint=hint,
    )


def _create_locked(root: Path, name: str, lock: Lock, prefix: Path, force: bool,
                   progress: Progress | None, started: float) -> CreateResult:
    with prefix_lock(prefix, progress) as waited:
        recover_leftovers(prefix)
        state = env_state(prefix)
        if not force and state is not None and _matches(prefix, state, lock.sha256):
            return _result(name, prefix, "unchanged", state, started, waited)
        _refuse_foreign(prefix, state)
        action = "rebuilt" if state is not None else "created"
        emit(progress, "start", target=name, message=f"{'rebuilding' if state else 'creating'} {name} at {prefix} from {lock.path.name}")
        state = _build(lock, name, prefix, progress)
        return _result(name, prefix, action, state, started, waited)


def _refuse_foreign(prefix: Path, state: dict | None = None) -> None:
    """EnvctlError when `prefix` holds something that is not an envctl env (a home folder, a project)."""
    if state is None:
        state = env_state(prefix) if prefix.is_dir() else None
    if prefix.is_symlink() or (os.path.lexists(prefix) and state is None and (not prefix.is_dir() or any(prefix.iterdir()))):
        raise EnvctlError(
            f"{prefix} exists but was not made by envctl (no {STATE_FILE}); refusing to replace it",
            hint="Remove it yourself or choose another --prefix.",
        )


def _matches(prefix: Path, state: dict, lock_sha: str) -> bool:
    # Envs made before the digest took its `sha256:` spelling recorded bare hex: same_digest reads both.
    return bool(state) and same_digest(state.get("lock_sha256"), lock_sha) and env_python(prefix).exists()


def _result(name: str, prefix: Path, action: str, state: dict, started: float, waited: bool) -> CreateResult:
    return CreateResult(
        target=name, prefix=prefix, action=action,
        packages=dict(state.get("packages", {})),
        size_bytes=int(state.get("size_bytes", 0)), own_bytes=int(state.get("own_bytes", 0)),
        seconds=time.monotonic() - started, waited_for_lock=waited,
        python=env_python(prefix), python_version=state.get("python_version", ""),
        lock_sha256=state.get("lock_sha256", ""), state=state,
    )


# ---------------------------------------------------------------- building


def _build(lock_read: Lock, name: str, prefix: Path, progress: Progress | None) -> dict[str, Any]:
    from envctl.host.platform import host_platform

    host = host_platform()
    from envctl.create.conda_install import read_lock_entries  # rattler and the lock's parser: only to build

    conda, pip = read_lock_entries(lock_read, name, host)
    lock, lock_sha = lock_read.path, lock_read.sha256
    staging = scratch_path(prefix, "staging")
    if os.path.lexists(staging):  # not provably envctl's (recovery removes those): never build into it, never delete it
        raise EnvctlError(f"{staging} exists but is not a leftover this create can prove it made; refusing to touch it",
                          hint="Move it away and run the command again.")
    try:
        _link_verified(conda, pip, lock, host, staging, prefix, progress)
        python = env_python(staging)
        emit(progress, "check", message="running the env's python")
        version = _check_python(python) if python.exists() else ""
        size, own = env_size(staging)
        state = {
            "lock_sha256": lock_sha,
            "target": name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host_platform": host,
            "envctl_version": __version__,
            "lock_file": str(lock),
            "packages": {"conda": len(conda), "pip": len(pip)},
            "python_version": version,
            "size_bytes": size,
            "own_bytes": own,
        }
        # Written last: an env with this file is complete.
        write_text_atomic(staging / STATE_FILE, json.dumps(state, indent=2) + "\n")
        emit(progress, "swap", message=f"swapping the new env into {prefix}")
        old = swap_in(staging, prefix)
    except BaseException:
        discard_scratch(staging)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    emit(progress, "done", message=f"{name} ready at {prefix}")
    return state


def discard_scratch(path: Path, patience: float = 15.0) -> None:
    """Remove a failed build's scratch folder, and make sure it stays gone.

    When linking fails (a full disk), rattler raises while its worker threads still finish
    the files they had started, and creating a file recreates its folders: one rmtree can
    run before the last of them and leave a half-built folder behind. Removing again until
    the folder stays away (or `patience` seconds pass) frees the space the failure used."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(path, ignore_errors=True)
        time.sleep(0.2)  # a writer still draining shows up within this
        if not os.path.lexists(path) or time.monotonic() > deadline:
            return


def _link_verified(conda: list[Any], pip: list[LockedPackage], lock: Path, host: str, staging: Path, prefix: Path,
                   progress: Progress | None) -> None:
    """_link, and where a package cache holds changed files: evict those packages and link again.

    Each package is evicted at most once; the archives fetched again are
    checked against the lock's hashes, so a package whose files still differ
    from its own file list is refused.
    """
    evicted: set[tuple[str, str]] = set()
    found: list[str] = []
    while True:
        try:
            _link(conda, pip, lock, host, staging, prefix, progress)
            return
        except CorruptFiles as corrupt:
            discard_scratch(staging)
            keys = {(corrupt.manager, name) for name in corrupt.packages}
            if keys <= evicted:
                raise EnvBroken(
                    f"{corrupt.describe()}, even after evicting them from the package cache and fetching them "
                    "again; refusing to install unverified files. Nothing was changed.",
                    file=lock,
                    hint="The package does not match its own file list: re-lock, or report it to the channel/index.",
                ) from None
            emit(progress, "refetch", manager=corrupt.manager, packages=sorted(corrupt.packages),
                  message=f"{corrupt.describe()}; evicting them from the cache and fetching them again")
            corrupt.evict()
            evicted |= keys
            found.append(corrupt.describe())
        except EnvctlError as exc:
            if found:
                exc.message = f"{'; '.join(found)}. They were evicted, but fetching them again failed: {exc.message}"
            raise


def _link(conda: list[Any], pip: list[LockedPackage], lock: Path, host: str, staging: Path, prefix: Path,
          progress: Progress | None) -> None:
    """Install both parts into a fresh `staging` and verify every linked file; CorruptFiles on a mismatch."""
    staging.mkdir(parents=True)
    mark_scratch(staging, prefix)  # before anything else: a kill from here on leaves a provable leftover
    emit(progress, "conda", total=len(conda), message=f"linking {len(conda)} conda packages")
    from envctl.create.conda_install import install_conda

    install_conda(conda, staging, prefix, progress, lock)
    emit(progress, "verify", manager="conda", transient=True, message="checking the linked conda files against their packages")
    verify_conda(staging)
    python = env_python(staging)
    if pip:
        from envctl.create.pip_install import install_pip

        if not python.exists():
            raise EnvctlError(f"the lock has pip packages but no conda python for {host}", file=lock)
        emit(progress, "pip", total=len(pip), message=f"installing {len(pip)} pip packages")
        install_pip(pip, python=python, staging=staging, final=prefix)
    emit(progress, "verify", manager="closure", transient=True, message="checking every declared dependency is installed")
    from envctl.create.closure import check_closure  # only when building

    check_closure(staging, lock)


def _check_python(python: Path) -> str:
    from envctl.core.process import without_host_python

    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", "import sys; print(sys.version)"],
            env=without_host_python(), capture_output=True, text=True, errors="replace", timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvBroken(f"the new env's python does not run: {exc}") from None
    if proc.returncode != 0:
        raise EnvBroken(f"the new env's python does not run: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def env_size(path: Path) -> tuple[int, int]:
    """(du-like bytes, bytes held only by this tree): allocated blocks, each inode once.

    The second number leaves out files also linked from elsewhere (rattler's
    and uv's caches, another env of the same lock): what deleting the env frees.
    """
    inodes: dict[tuple[int, int], list[int]] = {}  # -> [size, nlink, links seen here]
    stack = [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    nlink = 1  # a directory's own links are its subfolders, not sharing
                else:
                    nlink = st.st_nlink
                seen = inodes.get((st.st_dev, st.st_ino))
                if seen is None:
                    inodes[(st.st_dev, st.st_ino)] = [getattr(st, "st_blocks", 0) * 512 or st.st_size, nlink, 1]
                else:
                    seen[2] += 1
    total = sum(v[0] for v in inodes.values())
    own = sum(v[0] for v in inodes.values() if v[2] >= v[1])
    return total, own
