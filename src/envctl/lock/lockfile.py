"""The one place a lock is read: its bytes once per command, hashed once, parsed by its format.

Every stage that reads a lock (create, certify, doctor, status, env export)
comes here. `load_lock(path)` reads the file and hashes it; the result is
kept for the rest of the process while the file's identity (device, inode,
size, mtime, ctime: what git's index trusts) is unchanged, so the staleness
check, create and certify of one command share one read. A lock rewritten
in between (an atomic rename is a new inode) is read afresh.

The format (lock/records.py's LockFormat; conda-lock's today, in
conda_lock_format.py) gets bytes, never a path. Its own tools' check (for
conda-lock: its parser, whose import costs about half a second) runs only
when a lock is used to build; the parsed packages are then kept under
envctl's cache keyed by the sha256 of the bytes, so the next command that
reads the same lock skips both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from envctl.core.atomic import write_bytes_atomic
from envctl.core.errors import EnvctlError, FileMissing
from envctl.core.hashing import sha256_digest
from envctl.core.paths import TargetRef, cache_home, locks_dir, target_name
from envctl.lock.conda_lock_format import CondaLockFormat
from envctl.lock.records import (LockDocument, LockedPackage, LockFormat, LockFormatError, LockHeader, LockInfo,
                                 content_hash)

__all__ = ["Lock", "LockInfo", "LockedPackage", "content_hash", "load_lock", "lock_format", "lock_path",
           "read_lock", "read_lock_meta", "source_path"]

PLAN_VERSION = 3
FORMAT: LockFormat = CondaLockFormat()  # the format envctl writes; a second one would be chosen here by suffix
_HINT = "Re-lock it with `envctl lock`."


def lock_format() -> LockFormat:
    return FORMAT


def lock_path(root: Path, target: TargetRef) -> Path:
    """<root>/locks/<target><the format's suffix>."""
    return locks_dir(root) / f"{target_name(target)}{FORMAT.suffix}"


class Lock:
    """One lock file as read: its bytes, their digest, and (parsed on first use) its header and packages."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data = path, data
        self.sha256 = sha256_digest(data)  # "sha256:<hex>"
        self._header: LockHeader | None = None
        self._document: LockDocument | None = None
        self._verified = False

    @property
    def hex(self) -> str:
        return self.sha256.split(":", 1)[1]

    @property
    def info(self) -> LockInfo:
        if self._header is None:
            self._header = self._formatted(FORMAT.read_header, "")
        return LockInfo.of(self.path, self.sha256, self._header)

    def document(self) -> LockDocument:
        """Every package, the format's structure checked (fast: no conda-lock import)."""
        if self._document is None:
            cached = _cached(self.hex)  # parsed and verified by an earlier command
            self._verified = cached is not None
            self._document = cached or self._formatted(FORMAT.parse, "cannot use the lock: ")
            self._header = self._document.header
        return self._document

    def verified(self) -> "Lock":
        """This lock, also accepted by its format's own tools (what `conda-lock install` and micromamba read)."""
        document = self.document()
        if not self._verified:
            self._formatted(FORMAT.verify, "")
            _store(self.hex, document)
            self._verified = True
        return self

    def for_platform(self, platform: str, manager: str | None = None) -> list[LockedPackage]:
        return self.document().for_platform(platform, manager)

    def _formatted(self, call, prefix: str) -> Any:
        try:
            return call(self.data)
        except LockFormatError as exc:
            raise EnvctlError(prefix + exc.problem, file=self.path, key=exc.key, hint=_HINT) from None


_MEMO: dict[Path, tuple[tuple[int, ...], Lock]] = {}
READS = {"count": 0}  # lock files read from disk in this process (tests count reads per command)


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_lock(path: Path) -> Lock:
    """The lock at `path`, read and hashed once while the file stays the same; EnvctlError naming it otherwise."""
    from envctl.core.limits import MAX_LOCK_BYTES, read_regular

    path = Path(path)
    key = Path(os.path.abspath(path))
    ident = _identity(path)
    memo = _MEMO.get(key)
    if memo is not None and ident is not None and memo[0] == ident:
        return memo[1]
    try:
        data = read_regular(path, MAX_LOCK_BYTES, "lock")  # a regular file under the cap, or a clear error
    except FileMissing:
        raise EnvctlError("no lock file here; run `envctl lock`", file=path) from None
    READS["count"] += 1
    lock = Lock(path, data)
    if ident is not None and _identity(path) == ident:  # unchanged while it was read: safe to keep
        _MEMO[key] = (ident, lock)
    return lock


def remember(path: Path, data: bytes) -> Lock:
    """The lock just written at `path` from `data`: later readers in this process need not read it back."""
    lock = Lock(Path(path), data)
    ident = _identity(Path(path))
    if ident is not None:
        _MEMO[Path(os.path.abspath(path))] = (ident, lock)
    return lock


def read_lock_meta(path: Path) -> LockInfo:
    """envctl's fields of a lock, read fast (no conda_lock or rattler import)."""
    return load_lock(path).info


def read_lock(path: Path) -> Lock:
    """Every package of the lock at `path`, checked by its format and its format's tools; EnvctlError naming
    the file when it is not a usable lock."""
    return load_lock(path).verified()


def _plan_path(hex_digest: str) -> Path:
    return cache_home() / "plans" / f"{hex_digest}.json"


def _store(hex_digest: str, document: LockDocument) -> None:
    header = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(document.header).items()}
    plan = {"plan_version": PLAN_VERSION, "lock_sha256": hex_digest, "header": header,
            "content_hashes": document.content_hashes, "packages": [p.to_json() for p in document.packages]}
    try:
        write_bytes_atomic(_plan_path(hex_digest), json.dumps(plan, separators=(",", ":")).encode())
    except EnvctlError:
        pass  # an unwritable cache only costs the next reader the parse again


def _cached(hex_digest: str) -> LockDocument | None:
    try:
        plan = json.loads(_plan_path(hex_digest).read_text(encoding="utf-8"))
        if plan.get("plan_version") != PLAN_VERSION or plan.get("lock_sha256") != hex_digest:
            return None
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in plan["header"].items()}
        header = LockHeader(**fields)
        return LockDocument(header, tuple(LockedPackage.from_json(p) for p in plan["packages"]),
                            dict(plan["content_hashes"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def source_path(lock: Path, env: Path) -> str:
    """The spec's path relative to the lock's folder, as lock formats record their sources."""
    return Path(os.path.relpath(env.resolve(), lock.parent.resolve())).as_posix()
