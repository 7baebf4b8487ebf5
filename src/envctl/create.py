"""Create stage: install a target's conda-lock lockfile into a real environment.

No solving and no conda/mamba: the conda part is linked by py-rattler from
records rebuilt out of the lock's own URLs and hashes, the pip part by
`uv pip install --no-deps --require-hashes` (install_pip.py).

Safety: the env is built in `<prefix>.staging-<pid>` beside the final prefix,
with the final path patched in, and swapped in only when complete (one atomic
renameat2(RENAME_EXCHANGE) on Linux). A create killed at any point leaves the
previous env (or none); the next create removes leftovers. Creates of one
prefix are serialized by flock on `<prefix>.lock`.

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
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .atomic import ensure_inside, write_bytes_atomic, write_text_atomic
from .errors import EnvctlError

if TYPE_CHECKING:
    from .install_pip import PipPackage
    from .matrix import Target

__all__ = ["CreateResult", "create_env", "default_prefix", "env_in_use", "env_state", "verify_files", "STATE_FILE"]

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
    _check_name(name)
    lock = _lock_file(root, name)
    if not lock.is_file():
        raise EnvctlError(f"no lock for target '{name}': {lock} does not exist", hint=f"Run `envctl lock --target {name}`.")
    if prefix is None:
        # .envctl (or .envctl/envs) may be a symlink committed into the project: never build through it.
        prefix = ensure_inside(root, default_prefix(root, name), "env prefix")
    else:
        prefix = Path(os.path.abspath(prefix))  # the user's explicit choice, wherever it is
    lock_sha = _sha256_file(lock)
    try:
        return _create_locked(root, name, lock, lock_sha, prefix, force, progress, started)
    except OSError as exc:  # a full disk, a read-only or missing parent, a file where a folder should be
        raise _os_error(prefix, exc) from None


def _check_name(name: str) -> None:
    """The matrix admits only plain names; an API caller's `../x` must not become a path either."""
    from .atomic import SAFE_NAME

    if not isinstance(name, str) or not SAFE_NAME.match(name):
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
    }.get(exc.errno)
    return EnvctlError(
        f"cannot create the env at {prefix}: {exc.strerror or exc}{where}. "
        "Nothing was swapped in: the previous env (if any) is unchanged.",
        hint=hint, exit_code=1,
    )


def _create_locked(root: Path, name: str, lock: Path, lock_sha: str, prefix: Path, force: bool,
                   progress: Progress | None, started: float) -> CreateResult:
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
def _prefix_lock(prefix: Path, progress: Progress | None, *, shared: bool = False) -> Iterator[bool]:
    """Hold flock on <prefix>.lock; yields True when another process had it first.

    create takes it exclusively; a certification running the env takes it
    shared (env_in_use), so a create of the same prefix waits until the smoke
    run is over instead of swapping the env away under it.
    """
    path = prefix.with_name(prefix.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a new inode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            holder = "a create" if shared else "another create or a certification"
            _emit(progress, "waiting", lock=str(path), message=f"{holder} holds {path}; waiting")
            fcntl.flock(fd, mode)
            waited = True
        yield waited
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def env_in_use(prefix: Path, progress: Progress | None = None) -> Iterator[bool]:
    """Keep creates of `prefix` from swapping it while the block runs (a shared flock).

    Where the lock file cannot be made (a read-only env outside envctl's
    control) nothing can create there either, so the block just runs.
    """
    try:
        cm = _prefix_lock(Path(os.path.abspath(prefix)), progress, shared=True)
        waited = cm.__enter__()
    except OSError:
        yield False
        return
    try:
        yield waited
    finally:
        cm.__exit__(None, None, None)


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
    conda, pip = _read_lock(lock, name, host, lock_sha)
    staging = prefix.with_name(f"{prefix.name}.staging-{os.getpid()}")
    try:
        _link_verified(conda, pip, lock, host, staging, prefix, progress)
        python = staging / "bin" / "python"
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


def _link_verified(conda: list[Any], pip: list[PipPackage], lock: Path, host: str, staging: Path, prefix: Path,
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
            shutil.rmtree(staging, ignore_errors=True)
            keys = {(corrupt.manager, name) for name in corrupt.packages}
            if keys <= evicted:
                raise EnvctlError(
                    f"{corrupt.describe()}, even after evicting them from the package cache and fetching them "
                    "again; refusing to install unverified files. Nothing was changed.",
                    file=lock, exit_code=1,
                    hint="The package does not match its own file list: re-lock, or report it to the channel/index.",
                ) from None
            _emit(progress, "refetch", manager=corrupt.manager, packages=sorted(corrupt.packages),
                  message=f"{corrupt.describe()}; evicting them from the cache and fetching them again")
            corrupt.evict()
            evicted |= keys
            found.append(corrupt.describe())
        except EnvctlError as exc:
            if found:
                exc.message = f"{'; '.join(found)}. They were evicted, but fetching them again failed: {exc.message}"
            raise


def _link(conda: list[Any], pip: list[PipPackage], lock: Path, host: str, staging: Path, prefix: Path,
          progress: Progress | None) -> None:
    """Install both parts into a fresh `staging` and verify every linked file; CorruptFiles on a mismatch."""
    staging.mkdir(parents=True)
    _emit(progress, "conda", total=len(conda), message=f"linking {len(conda)} conda packages")
    _install_conda(conda, staging, prefix, progress, lock)
    _emit(progress, "verify", manager="conda", transient=True, message="checking the linked conda files against their packages")
    verify_conda(staging)
    python = staging / "bin" / "python"
    if pip:
        from .install_pip import install_pip

        if not python.exists():
            raise EnvctlError(f"the lock has pip packages but no conda python for {host}", file=lock)
        _emit(progress, "pip", total=len(pip), message=f"installing {len(pip)} pip packages")
        install_pip(pip, python=python, staging=staging, final=prefix)


@dataclass(frozen=True)
class _Hashes:
    md5: str | None
    sha256: str | None


@dataclass(frozen=True)
class CondaEntry:
    """One locked conda package, as conda-lock's parser read it."""

    name: str
    version: str
    url: str
    hash: _Hashes


PLAN_VERSION = 1


def _plan_path(lock_sha: str) -> Path:
    return _cache_home() / "plans" / f"{lock_sha}.json"


def _parse_plan(lock: Path, lock_sha: str, name: str) -> dict[str, Any]:
    """What conda-lock's own parser reads in the lock, as plain data.

    Importing conda_lock costs most of a second, more than linking a whole
    env from warm caches; the result is therefore kept under envctl's cache,
    keyed by the sha256 of the lock's bytes, so the next env of the same lock
    (another prefix, a --force rebuild) skips it. A changed lock has another
    sha256 and is parsed afresh.
    """
    path = _plan_path(lock_sha)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        if plan.get("plan_version") == PLAN_VERSION and plan.get("lock_sha256") == lock_sha:
            return plan
    except (OSError, ValueError, AttributeError):
        pass
    from conda_lock.lockfile import parse_conda_lock_file

    data = lock.read_bytes()
    if hashlib.sha256(data).hexdigest() != lock_sha:
        raise EnvctlError("the lock changed while it was being read; run the command again", file=lock)
    try:
        parsed = parse_conda_lock_file(lock)
    except Exception as exc:  # pydantic/yaml errors: a broken file, not a bug of ours
        raise EnvctlError(f"cannot read the lock: {exc}", file=lock, hint=f"Re-lock with `envctl lock --target {name}`.") from None
    if hashlib.sha256(lock.read_bytes()).hexdigest() != lock_sha:
        raise EnvctlError("the lock changed while it was being read; run the command again", file=lock)
    meta = parsed.metadata
    plan = {
        "plan_version": PLAN_VERSION,
        "lock_sha256": lock_sha,
        "target": (meta.custom_metadata or {}).get("envctl_target"),
        "platforms": list(meta.platforms),
        "packages": [
            {"platform": p.platform, "manager": p.manager, "name": p.name, "version": p.version, "url": p.url,
             "md5": p.hash.md5, "sha256": p.hash.sha256}
            for p in parsed.package
        ],
    }
    try:
        write_bytes_atomic(path, json.dumps(plan, separators=(",", ":")).encode())
    except EnvctlError:
        pass  # an unwritable cache only costs the next create the parse again
    return plan


def _read_lock(lock: Path, name: str, host: str, lock_sha: str) -> tuple[list[CondaEntry], list[PipPackage]]:
    """The lock's conda and pip entries for `host`, through conda-lock's own parser."""
    from .install_pip import PipPackage

    plan = _parse_plan(lock, lock_sha, name)
    locked_for = plan["target"]
    if locked_for and locked_for != name:
        raise EnvctlError(f"the lock was made for target '{locked_for}', not '{name}'", file=lock)
    if host not in plan["platforms"]:
        raise EnvctlError(
            f"the lock for '{name}' covers {', '.join(plan['platforms'])}, not this machine's platform {host}; "
            "an env can only be created for the host platform",
            file=lock,
            hint="Add the host's platform to the target's platforms and re-lock, or create it on a matching machine.",
        )
    entries = [p for p in plan["packages"] if p["platform"] == host]
    conda = [CondaEntry(p["name"], p["version"], p["url"], _Hashes(p["md5"], p["sha256"]))
             for p in entries if p["manager"] == "conda"]
    pip = [PipPackage(p["name"], p["version"], p["url"], p["sha256"] or "") for p in entries if p["manager"] == "pip"]
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


# ---------------------------------------------------------------- verifying what was linked

# (path, digest, size or None) for one file a package says it holds; the digest is
# "sha256:<hex>" (conda's paths.json) or "sha256=<urlsafe base64>" (a wheel's RECORD).
FileCheck = tuple["str | Path", str, "int | None"]


class CorruptFiles(Exception):
    """Linked files that differ from their package's own hashes; knows how to evict the packages."""

    def __init__(self, manager: str, packages: dict[str, list[str]], evict: Callable[[], None]) -> None:
        super().__init__(manager, packages)
        self.manager = manager
        self.packages = packages  # package -> files that did not match
        self._evict = evict

    def describe(self) -> str:
        shown = "; ".join(f"{pkg}: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" for pkg, files in sorted(self.packages.items()))
        return f"{self.manager} files in the package cache differ from their packages' own hashes ({shown})"

    def evict(self) -> None:
        self._evict()


def _cache_home() -> Path:
    base = os.environ.get("ENVCTL_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envctl"


class _Ledger:
    """Files already hashed and found right, by (device, inode) -> (size, mtime_ns, digest).

    Files hardlinked from a package cache keep their inode, so a second env of
    the same lock hashes only files whose inode, size or mtime changed (an
    in-place edit changes the mtime; a replaced file has a new inode).
    """

    MAX_ENTRIES = 250_000  # about ten torch envs' worth; beyond it, only what this run saw is kept

    def __init__(self) -> None:
        self.path = _cache_home() / "verified-files-v1.json"
        self.entries: dict[str, list] = {}
        self.added: dict[str, list] = {}
        self.used: set[str] = set()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("entries"), dict):
                self.entries = data["entries"]
        except (OSError, ValueError):
            pass

    @staticmethod
    def _key(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}"

    def known(self, st: os.stat_result, digest: str) -> bool:
        key = self._key(st)
        if self.entries.get(key) == [st.st_size, st.st_mtime_ns, digest]:
            self.used.add(key)
            return True
        return False

    def add(self, st: os.stat_result, digest: str) -> None:
        if st.st_nlink > 1:  # shared with a cache: worth remembering; a private copy is never seen again
            self.added[self._key(st)] = [st.st_size, st.st_mtime_ns, digest]

    def save(self) -> None:
        if not self.added and len(self.entries) <= self.MAX_ENTRIES:
            return
        try:  # merge with what other creates added meanwhile; best effort, a lost entry is only re-hashed
            current = json.loads(self.path.read_text(encoding="utf-8")).get("entries", {})
            if not isinstance(current, dict):
                current = {}
        except (OSError, ValueError, AttributeError):
            current = {}
        if len(current) + len(self.added) > self.MAX_ENTRIES:
            current = {k: v for k, v in current.items() if k in self.used}
        current.update(self.added)
        try:
            write_bytes_atomic(self.path, json.dumps({"version": 1, "entries": current}, separators=(",", ":")).encode())
        except EnvctlError:
            pass


def _digest_file(path: str | Path, algo: str) -> bytes:
    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(handle, algo).digest()
        digest = hashlib.new(algo)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
        return digest.digest()


def _digest_matches(path: str | Path, digest: str) -> bool:
    import base64

    if ":" in digest:
        algo, _, expected = digest.partition(":")
        return _digest_file(path, algo).hex() == expected.lower()
    algo, _, expected = digest.partition("=")
    return base64.urlsafe_b64encode(_digest_file(path, algo)).rstrip(b"=").decode() == expected.rstrip("=")


def verify_files(checks: list[FileCheck]) -> list[Path]:
    """The files in `checks` that are missing, not regular files, or differ in size or digest."""
    from concurrent.futures import ThreadPoolExecutor

    ledger = _Ledger()
    bad: list = []
    todo: list = []
    for path, digest, size in checks:
        try:
            st = os.lstat(path)
        except OSError:
            bad.append(path)
            continue
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
            bad.append(path)
        elif not ledger.known(st, digest):
            todo.append((path, digest, st))

    def check(item: tuple[Path, str, os.stat_result]) -> Path | None:
        path, digest, st = item
        try:
            if not _digest_matches(path, digest):
                return path
        except (OSError, ValueError):  # unreadable, or an algorithm hashlib does not know
            return path
        ledger.add(st, digest)
        return None

    if todo:
        # hashlib releases the GIL on large buffers: a few threads keep the disk and the cores busy.
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) + 2)) as pool:
            bad.extend(p for p in pool.map(check, todo, chunksize=64) if p is not None)
    ledger.save()
    return [Path(p) for p in bad]


def verify_conda(prefix: Path) -> None:
    """Check the conda files linked into `prefix` against each package's paths.json; CorruptFiles if any differ.

    Files rewritten with the prefix at link time are checked at their source
    in the package cache (their hash in the env is, by design, a new one).
    """
    checks: list[FileCheck] = []
    owner: dict[str, tuple[str, str]] = {}  # file -> (package, cache dir)
    meta = prefix / "conda-meta"
    base = str(prefix)
    join = os.path.join
    for record_file in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        if record_file.name == STATE_FILE.name:
            continue
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        cache_dir = record.get("extracted_package_dir") or ""
        package = f"{record.get('name')}-{record.get('version')}-{record.get('build')}"
        for entry in (record.get("paths_data") or {}).get("paths", []):
            sha = entry.get("sha256")
            if entry.get("path_type") != "hardlink" or not sha:
                continue  # symlinks, entry points and pyc files are made at link time
            if entry.get("prefix_placeholder"):
                if not cache_dir:
                    continue
                # size_in_bytes is the patched size here; the sha256 is the package's own
                path, size = join(cache_dir, entry["_path"]), None
                if not os.path.exists(path):
                    continue  # a noarch file moved at link time: its source is under another name
            else:
                path, size = join(base, entry["_path"]), entry.get("size_in_bytes")
            checks.append((path, f"sha256:{sha}", size))
            owner[path] = (package, cache_dir)
    bad = verify_files(checks)
    if not bad:
        return
    packages: dict[str, list[str]] = {}
    dirs: set[str] = set()
    for path in bad:
        package, cache_dir = owner[str(path)]
        shown = os.path.relpath(path, base) if str(path).startswith(base + os.sep) else str(path)
        packages.setdefault(package, []).append(shown)
        if cache_dir:
            dirs.add(cache_dir)

    def evict() -> None:
        for folder in dirs:
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.unlink(folder + ".lock")
            except OSError:
                pass

    raise CorruptFiles("conda", packages, evict)
