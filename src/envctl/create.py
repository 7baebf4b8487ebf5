"""Create stage: install a target's conda-lock lockfile into a real environment.

No solving and no conda/mamba: the conda part is linked by py-rattler from
records rebuilt out of the lock's own URLs and hashes, the pip part by
`uv pip install --no-deps --require-hashes` (install_pip.py).

Safety: the env is built in `<prefix>.staging-<pid>` beside the final prefix,
with the final path patched in, and swapped in only when complete (one atomic
renameat2(RENAME_EXCHANGE) on Linux). A create killed at any point leaves the
previous env (or none); the next create removes leftovers. Creates of one
prefix are serialized by flock on `<prefix>.lock`.

The no-op path (env's recorded lock sha256 == the lock file's) imports
neither rattler nor conda-lock and takes milliseconds.

Progress events, `progress(event, message=..., **info)`: waiting, start,
conda, conda-package (transient), pip, check, swap, done.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .atomic import write_text_atomic
from .errors import EnvctlError

if TYPE_CHECKING:
    from .install_pip import PipPackage
    from .matrix import Target

__all__ = ["CreateResult", "create_env", "default_prefix", "env_state", "STATE_FILE"]

STATE_FILE = Path("conda-meta") / "envctl-state.json"
Progress = Callable[..., None]


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


def _name(target: Target | str) -> str:
    return target if isinstance(target, str) else target.name


def default_prefix(root: Path, target: Target | str) -> Path:
    """Where envctl puts a target's env: <root>/.envctl/envs/<target> (git-ignored)."""
    return Path(root).absolute() / ".envctl" / "envs" / _name(target)


def _lock_file(root: Path, target: Target | str) -> Path:
    return Path(root) / "locks" / f"{_name(target)}.conda-lock.yml"


def env_state(prefix: Path) -> dict[str, Any] | None:
    """What create recorded in the env (lock sha256, target, ...), or None if not an envctl env."""
    try:
        data = json.loads((Path(prefix) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _emit(progress: Progress | None, event: str, **info: Any) -> None:
    if progress is not None:
        progress(event, **info)


def create_env(
    root: Path,
    target: Target | str,
    *,
    prefix: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> CreateResult:
    """Install `root/locks/<target>.conda-lock.yml` at `prefix` (default: default_prefix)."""
    started = time.monotonic()
    name = _name(target)
    lock = _lock_file(root, name)
    if not lock.is_file():
        raise EnvctlError(f"no lock for target '{name}': {lock} does not exist", hint=f"Run `envctl lock --target {name}`.")
    prefix = Path(os.path.abspath(prefix)) if prefix is not None else default_prefix(root, name)
    lock_sha = _sha256_file(lock)

    with _prefix_lock(prefix, progress) as waited:
        _recover(prefix)
        state = env_state(prefix)
        if not force and _matches(prefix, state, lock_sha):
            return _result(name, prefix, "unchanged", state, started, waited)
        if os.path.lexists(prefix) and state is None and (not prefix.is_dir() or any(prefix.iterdir())):
            raise EnvctlError(
                f"{prefix} exists but was not made by envctl (no {STATE_FILE}); refusing to replace it",
                hint="Remove it yourself or choose another --prefix.",
            )
        action = "rebuilt" if state is not None else "created"
        _emit(progress, "start", target=name, message=f"{'rebuilding' if state else 'creating'} {name} at {prefix} from {lock.name}")
        state = _build(lock, lock_sha, name, prefix, progress)
        return _result(name, prefix, action, state, started, waited)


def _matches(prefix: Path, state: dict | None, lock_sha: str) -> bool:
    return bool(state) and state.get("lock_sha256") == lock_sha and (prefix / "bin" / "python").exists()


def _result(name: str, prefix: Path, action: str, state: dict, started: float, waited: bool) -> CreateResult:
    return CreateResult(
        target=name, prefix=prefix, action=action,
        packages=dict(state.get("packages", {})),
        size_bytes=int(state.get("size_bytes", 0)), own_bytes=int(state.get("own_bytes", 0)),
        seconds=time.monotonic() - started, waited_for_lock=waited,
        python=prefix / "bin" / "python", python_version=state.get("python_version", ""),
        lock_sha256=state.get("lock_sha256", ""), state=state,
    )


# ---------------------------------------------------------------- locking and swapping


@contextmanager
def _prefix_lock(prefix: Path, progress: Progress | None) -> Iterator[bool]:
    """Hold flock on <prefix>.lock; yields True when another create had it first."""
    path = prefix.with_name(prefix.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a new inode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            _emit(progress, "waiting", lock=str(path), message=f"another create holds {path}; waiting")
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        yield waited
    finally:
        os.close(fd)  # releases the flock


def _leftovers(prefix: Path, kind: str) -> list[Path]:
    return sorted(prefix.parent.glob(f"{prefix.name}.{kind}-*"))


def _recover(prefix: Path) -> None:
    """Undo what a killed create left behind (we hold the prefix lock, so nobody else is working).

    Only the two-rename fallback swap can leave no prefix with the old env
    parked aside: put it back. Every staging folder is a dead, partial build.
    """
    olds = _leftovers(prefix, "old")
    if not prefix.exists() and olds:
        os.rename(olds[-1], prefix)
        olds = olds[:-1]
    for path in olds + _leftovers(prefix, "staging"):
        shutil.rmtree(path, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _swap_in(staging: Path, prefix: Path) -> Path | None:
    """Make the complete `staging` the env at `prefix`; return the old env's folder to delete."""
    if not os.path.lexists(prefix):
        os.rename(staging, prefix)
        return None
    if _exchange(staging, prefix):
        return staging  # now holds the old env
    # Fallback: two renames. A kill between them leaves <prefix>.old-*, which _recover restores.
    old = prefix.with_name(f"{prefix.name}.old-{os.getpid()}")
    os.rename(prefix, old)
    try:
        os.rename(staging, prefix)
    except OSError:
        os.rename(old, prefix)
        raise
    return old


# ---------------------------------------------------------------- building


def _build(lock: Path, lock_sha: str, name: str, prefix: Path, progress: Progress | None) -> dict[str, Any]:
    from .platforms import host_platform

    host = host_platform()
    conda, pip = _read_lock(lock, name, host)
    staging = prefix.with_name(f"{prefix.name}.staging-{os.getpid()}")
    try:
        staging.mkdir(parents=True)
        _emit(progress, "conda", total=len(conda), message=f"linking {len(conda)} conda packages")
        _install_conda(conda, staging, prefix, progress, lock)
        python = staging / "bin" / "python"
        if pip:
            from .install_pip import install_pip

            if not python.exists():
                raise EnvctlError(f"the lock has pip packages but no conda python for {host}", file=lock)
            _emit(progress, "pip", total=len(pip), message=f"installing {len(pip)} pip packages")
            install_pip(pip, python=python, staging=staging, final=prefix)
        _emit(progress, "check", message="running the env's python")
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
        _emit(progress, "swap", message=f"swapping the new env into {prefix}")
        old = _swap_in(staging, prefix)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _emit(progress, "done", message=f"{name} ready at {prefix}")
    return state


def _read_lock(lock: Path, name: str, host: str) -> tuple[list[Any], list[PipPackage]]:
    """The lock's conda and pip entries for `host`, through conda-lock's own parser."""
    from conda_lock.lockfile import parse_conda_lock_file

    from .install_pip import PipPackage

    try:
        parsed = parse_conda_lock_file(lock)
    except Exception as exc:  # pydantic/yaml errors: a broken file, not a bug of ours
        raise EnvctlError(f"cannot read the lock: {exc}", file=lock, hint=f"Re-lock with `envctl lock --target {name}`.") from None
    meta = parsed.metadata
    locked_for = (meta.custom_metadata or {}).get("envctl_target")
    if locked_for and locked_for != name:
        raise EnvctlError(f"the lock was made for target '{locked_for}', not '{name}'", file=lock)
    if host not in meta.platforms:
        raise EnvctlError(
            f"the lock for '{name}' covers {', '.join(meta.platforms)}, not this machine's platform {host}; "
            "an env can only be created for the host platform",
            file=lock,
            hint="Add the host's platform to the target's platforms and re-lock, or create it on a matching machine.",
        )
    entries = [p for p in parsed.package if p.platform == host]
    conda = [p for p in entries if p.manager == "conda"]
    pip = [PipPackage(p.name, p.version, p.url, p.hash.sha256 or "") for p in entries if p.manager == "pip"]
    return conda, pip


def _conda_records(entries: list[Any], lock: Path) -> list[Any]:
    """RepoDataRecords for the locked conda entries: the exact locked files, from their channels' repodata.

    Every hash that both the lock and the channel give must agree, and a
    file:// archive is hashed too (rattler 0.28 links local files unhashed).
    """
    import asyncio
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    import rattler

    groups: dict[tuple[str, str], list[Any]] = {}
    for entry in entries:
        channel, subdir, _ = entry.url.split("#", 1)[0].rsplit("/", 2)
        groups.setdefault((channel, subdir), []).append(entry)
    gateway = rattler.Gateway(show_progress=False)
    records = []
    for (channel, subdir), group in groups.items():
        names = sorted({e.name for e in group})
        try:
            found = asyncio.run(gateway.query([channel], [subdir], names, recursive=False))
        except Exception as exc:
            raise EnvctlError(f"cannot read the repodata of {channel}/{subdir}: {exc}", file=lock) from None
        by_file = {r.file_name: r for per_source in found for r in per_source}
        for entry in group:
            url = entry.url.split("#", 1)[0]
            filename = url.rsplit("/", 1)[1]
            record = by_file.get(filename) or by_file.get(unquote(filename))
            if record is None:
                raise EnvctlError(
                    f"conda package {entry.name} {entry.version}: {filename} is no longer in {channel}/{subdir}",
                    file=lock, hint="Re-lock the target against the channel as it is now.",
                )
            checked = False
            for kind in ("sha256", "md5"):
                expected, actual = (getattr(entry.hash, kind) or "").lower(), getattr(record, kind)
                if expected and actual:
                    _check_hash(entry, "the channel's " + kind, expected, actual.hex(), url, lock)
                    checked = True
            if not checked:
                raise EnvctlError(f"conda package {entry.name} {entry.version}: no hash to check against the lock", file=lock)
            if url.startswith("file:") and entry.hash.sha256:
                path = Path(url2pathname(urlparse(url).path))
                try:
                    actual_sha = _sha256_file(path)
                except OSError as exc:
                    raise EnvctlError(f"conda package {entry.name}: cannot read {path}: {exc.strerror}", file=lock) from None
                _check_hash(entry, "the archive's sha256", entry.hash.sha256.lower(), actual_sha, str(path), lock)
            records.append(record)
    return records


def _check_hash(entry: Any, what: str, expected: str, actual: str, where: str, lock: Path) -> None:
    if expected != actual:
        raise EnvctlError(
            f"conda package {entry.name} {entry.version}: {what} does not match the lock "
            f"(expected {expected}, actual {actual}; {where}). Nothing was changed.",
            file=lock, hint="The lock is the source of truth: re-lock if the package changed on purpose.", exit_code=1,
        )


def _install_conda(entries: list[Any], staging: Path, prefix: Path, progress: Progress | None, lock: Path) -> None:
    if not entries:
        return
    import asyncio

    import rattler

    records = _conda_records(entries, lock)

    class Reporter(rattler.InstallerReporter):
        total = done = 0

        def on_transaction_start(self, total_operations: int) -> None:
            self.total = total_operations

        def on_transaction_operation_complete(self, operation: int) -> None:
            self.done += 1
            _emit(progress, "conda-package", done=self.done, total=self.total, transient=True,
                  message=f"linked {self.done}/{self.total} conda packages")

    try:
        asyncio.run(rattler.install(
            records,
            target_prefix=staging,
            # Files are patched with the final path, so the env works once renamed there.
            alternative_target_prefix=prefix,
            installed_packages=[],  # fresh folder: nothing to scan
            show_progress=False,
            reporter=Reporter() if progress is not None else None,
        ))
    except Exception as exc:
        raise EnvctlError(f"linking the conda packages of the lock failed: {exc}", file=lock, exit_code=1) from None


def _check_python(python: Path) -> str:
    from .install_pip import clean_env

    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", "import sys; print(sys.version)"],
            env=clean_env(), capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvctlError(f"the new env's python does not run: {exc}", exit_code=1) from None
    if proc.returncode != 0:
        raise EnvctlError(f"the new env's python does not run: {proc.stderr.strip()[-2000:]}", exit_code=1)
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
