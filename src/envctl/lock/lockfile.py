"""The lock: typed records, the format interface, and the one place a lock is read.

Every stage that reads a lock (create, certify, doctor, status, env export)
comes here. A lock format (today conda-lock's, in conda_lock_format.py) is one
module implementing `LockFormat`; a `pixi.lock` writer/reader would be another.

Reading all packages goes through the format's full parser, which can be slow
(conda-lock's import costs most of a second, more than linking a whole env
from warm caches); the result is kept under envctl's cache keyed by the
sha256 of the lock's bytes, so the next reader of the same lock skips it. A
changed lock has another sha256 and is parsed afresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from envctl.core.atomic import write_bytes_atomic
from envctl.core.errors import EnvctlError, FileMissing
from envctl.core.hashing import sha256_bytes
from envctl.core.paths import cache_home

PLAN_VERSION = 2


@dataclass(frozen=True)
class LockInfo:
    """What envctl needs from a lock without parsing its packages."""

    path: Path
    target: str | None
    target_hash: str | None
    spec_hash: str | None
    envctl_version: str | None
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    sha256: str  # "sha256:<hex>" of the file's bytes: what a certificate records

    @property
    def hex(self) -> str:
        return self.sha256.split(":", 1)[-1]


@dataclass(frozen=True)
class LockedPackage:
    """One package of one platform, as the lock pins it."""

    platform: str
    manager: str  # "conda" | "pip"
    name: str
    version: str
    url: str
    md5: str | None = None
    sha256: str | None = None
    build: str | None = None


@dataclass(frozen=True)
class PlatformLock:
    """One platform's solution, ready to be written."""

    platform: str
    conda: list[Any]  # rattler RepoDataRecord
    pip: list[Any]  # pip_resolve.PipPackage
    content_hash: str


@dataclass(frozen=True)
class LockRequest:
    """Everything a format needs to write one target's lock."""

    target: str
    target_hash: str
    spec_hash: str
    envctl_version: str
    channels: list[str]
    source: str  # the rendered spec, relative to the lock's folder
    source_text: str
    platforms: list[PlatformLock]


@dataclass(frozen=True)
class LockContents:
    info: LockInfo
    packages: tuple[LockedPackage, ...]

    def for_platform(self, platform: str, manager: str | None = None) -> list[LockedPackage]:
        return [p for p in self.packages if p.platform == platform and (manager is None or p.manager == manager)]


class LockFormat(Protocol):
    """What a lock format provides (the conda-lock one: conda_lock_format.CondaLockFormat)."""

    name: str
    suffix: str

    def read_meta(self, path: Path) -> LockInfo: ...

    def read_packages(self, path: Path) -> tuple[LockInfo, list[LockedPackage]]: ...

    def write(self, request: LockRequest, file_name: str) -> bytes: ...


def lock_format() -> LockFormat:
    from envctl.lock.conda_lock_format import CondaLockFormat

    return CondaLockFormat()


def read_lock_meta(path: Path) -> LockInfo:
    """envctl's fields of a lock, read fast (no conda_lock or rattler import)."""
    return lock_format().read_meta(Path(path))


def read_lock_bytes(path: Path) -> bytes:
    """A lock file's bytes; EnvctlError naming it when it is missing or unreadable."""
    from envctl.core.limits import MAX_LOCK_BYTES, read_regular

    try:
        return read_regular(Path(path), MAX_LOCK_BYTES, "lock")  # a regular file under the cap, or a clear error
    except FileMissing:
        raise EnvctlError("no lock file here; run `envctl lock`", file=path) from None


def _plan_path(sha: str) -> Path:
    return cache_home() / "plans" / f"{sha}.json"


def read_lock(path: Path, *, expect_sha256: str | None = None) -> LockContents:
    """Every package of the lock at `path`; EnvctlError naming the file when it is not a readable lock.

    `expect_sha256` (bare hex) guards against the file changing under a reader
    that already hashed it.
    """
    path = Path(path)
    data = read_lock_bytes(path)
    sha = sha256_bytes(data)
    if expect_sha256 and sha != expect_sha256:
        raise EnvctlError("the lock changed while it was being read; run the command again", file=path)
    cached = _cached(sha, path)
    if cached is not None:
        return cached
    _check_structure(path, data)
    info, packages = lock_format().read_packages(path)
    if info.hex != sha:
        raise EnvctlError("the lock changed while it was being read; run the command again", file=path)
    contents = LockContents(info, tuple(packages))
    plan = {"plan_version": PLAN_VERSION, "lock_sha256": sha, "info": _info_json(info),
            "packages": [asdict(p) for p in packages]}
    try:
        write_bytes_atomic(_plan_path(sha), json.dumps(plan, separators=(",", ":")).encode())
    except EnvctlError:
        pass  # an unwritable cache only costs the next reader the parse again
    return contents


def _check_structure(path: Path, data: bytes) -> None:
    """Entries, duplicates, empty platforms (lockcheck.py), before the format's parser, whose errors say little."""
    from envctl.core.limits import short
    from envctl.lock.lockcheck import parse, structure_problem

    try:
        problem = structure_problem(parse(data))
    except Exception as exc:  # YAML errors: a broken file
        problem = f"unreadable YAML ({short(str(exc), 300) or type(exc).__name__})"
    if problem:
        raise EnvctlError(f"cannot use the lock: {problem}", file=path, hint="Re-lock it with `envctl lock`.")


def _info_json(info: LockInfo) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(info).items() if k != "path"}


def _cached(sha: str, path: Path) -> LockContents | None:
    try:
        plan = json.loads(_plan_path(sha).read_text(encoding="utf-8"))
        if plan.get("plan_version") != PLAN_VERSION or plan.get("lock_sha256") != sha:
            return None
        info = plan["info"]
        return LockContents(
            LockInfo(path=path, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in info.items()}),
            tuple(LockedPackage(**p) for p in plan["packages"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def content_hash(spec_hash: str, channels: list[str], platform: str, virtual: dict[str, str]) -> str:
    """Per-platform input hash: spec, channels, virtual packages (conda-lock's `content_hash` slot).

    conda-lock computes its own value from its own parse of the spec, so
    `conda-lock --check-input-hash` will treat an envctl lock as needing a
    relock; envctl's freshness check uses the recorded spec hash instead.
    """
    canonical = json.dumps(
        {"spec": spec_hash, "channels": channels, "platform": platform, "virtual_packages": virtual},
        sort_keys=True, separators=(",", ":"),
    )
    return sha256_bytes(canonical.encode())


def source_path(lock: Path, env: Path) -> str:
    """The spec's path relative to the lock's folder, as lock formats record their sources."""
    import os

    return Path(os.path.relpath(env.resolve(), lock.parent.resolve())).as_posix()
