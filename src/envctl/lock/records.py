"""The lock's typed records and the format interface: what every lock format reads and writes.

Nothing here knows a file layout. A format (conda_lock_format.py today) turns
bytes into a `LockDocument` and a `LockRequest` into bytes; lockfile.py reads
a lock's bytes once and hands them to the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from envctl.core.hashing import sha256_text


class LockFormatError(ValueError):
    """Bytes that are not a whole lock of a format: `problem` in words, `key` the entry or field at fault."""

    def __init__(self, problem: str, key: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.key = problem, key


@dataclass(frozen=True)
class LockHeader:
    """envctl's fields of a lock, as its format records them (read without parsing the packages)."""

    target: str | None
    target_hash: str | None
    spec_hash: str | None
    envctl_version: str | None
    platforms: tuple[str, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True)
class LockInfo(LockHeader):
    """A lock's header, where it was read from and the digest of its bytes."""

    path: Path
    sha256: str  # "sha256:<hex>" of the file's bytes: what certificates and env states record

    @classmethod
    def of(cls, path: Path, sha256: str, header: LockHeader) -> "LockInfo":
        return cls(**vars(header), path=path, sha256=sha256)

    @property
    def hex(self) -> str:
        return self.sha256.split(":", 1)[-1]


@dataclass(frozen=True)
class LockedPackage:
    """One package of one platform, as the lock pins it: the one record of a locked package.

    The solver and the pip resolver produce it, a format writes and reads it,
    create installs from it. `dependencies` are (name, version spec) pairs as
    resolved for this platform (conda match-spec versions, PEP 440 for pip).
    """

    platform: str
    manager: str  # "conda" | "pip"
    name: str
    version: str
    url: str
    md5: str | None = None
    sha256: str | None = None
    build: str | None = None
    dependencies: tuple[tuple[str, str], ...] = ()

    @property
    def dependency_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dependencies)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "manager": self.manager, "name": self.name, "version": self.version,
                "url": self.url, "md5": self.md5, "sha256": self.sha256, "build": self.build,
                "dependencies": [list(pair) for pair in self.dependencies]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LockedPackage":
        deps = tuple((str(n), str(s)) for n, s in data.get("dependencies") or ())
        return cls(**{k: v for k, v in data.items() if k != "dependencies"}, dependencies=deps)


@dataclass(frozen=True)
class LockDocument:
    """A whole lock, parsed: its header, every package, and each platform's recorded input hash."""

    header: LockHeader
    packages: tuple[LockedPackage, ...]
    content_hashes: dict[str, str]

    def for_platform(self, platform: str, manager: str | None = None) -> list[LockedPackage]:
        return [p for p in self.packages if p.platform == platform and (manager is None or p.manager == manager)]


@dataclass(frozen=True)
class PlatformLock:
    """One platform's solution, ready to be written."""

    platform: str
    packages: tuple[LockedPackage, ...]  # conda first, then pip
    content_hash: str

    def of(self, manager: str) -> list[LockedPackage]:
        return [p for p in self.packages if p.manager == manager]


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


class LockFormat(Protocol):
    """What a lock format provides (the conda-lock one: conda_lock_format.CondaLockFormat).

    Bytes in, bytes out: the caller reads and hashes the file once. A format
    checks the structure of what it parses and raises LockFormatError naming
    the entry or key at fault.
    """

    name: str
    suffix: str  # of the file name: locks/<target><suffix>

    def read_header(self, data: bytes) -> LockHeader: ...

    def parse(self, data: bytes) -> LockDocument: ...

    def verify(self, data: bytes) -> None: ...  # the format's own tools accept it (may be slow)

    def write(self, request: LockRequest, file_name: str) -> bytes: ...

    def environment_lines(self, data: bytes, platform: str, kind: str) -> list[str]: ...  # `envctl env export`


def content_hash(spec_hash: str, channels: list[str], platform: str, virtual: dict[str, str]) -> str:
    """Per-platform input hash: spec, channels, virtual packages (a lock's per-platform `content_hash`).

    conda-lock computes its own value from its own parse of the spec, so
    `conda-lock --check-input-hash` will treat an envctl lock as needing a
    relock; envctl's freshness check uses the recorded spec hash instead.
    """
    canonical = json.dumps(
        {"spec": spec_hash, "channels": channels, "platform": platform, "virtual_packages": virtual},
        sort_keys=True, separators=(",", ":"),
    )
    return sha256_text(canonical)
