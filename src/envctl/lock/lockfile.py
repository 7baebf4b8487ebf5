"""Lock files in conda-lock's unified format, and envctl's fast reader.

Writing goes through conda-lock's own models and `write_conda_lock_file`, so a
team's locks also work with `conda-lock install` and `micromamba create -f`.
Reading for freshness checks (`read_lock_meta`) parses only the metadata block
with plain YAML: importing conda_lock costs about half a second, too much for a
no-op `status` or `create`.

The file is deterministic: packages and their dependencies are sorted by
conda-lock's writer, no creation time, git user or absolute path is recorded,
and `content_hash` is derived from the inputs. Locking the same spec against
the same channel contents and indexes gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from envctl.core.errors import EnvctlError

if TYPE_CHECKING:
    from envctl.lock.pip_resolve import PipPackage

# Keys envctl keeps in conda-lock's `metadata.custom_metadata` (which conda-lock's parser keeps).
KEY_TARGET = "envctl_target"
KEY_TARGET_HASH = "envctl_target_hash"
KEY_SPEC_HASH = "envctl_spec_hash"
KEY_VERSION = "envctl_version"


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


@dataclass(frozen=True)
class PlatformLock:
    """One platform's solution, ready to be written."""

    platform: str
    conda: list[Any]  # rattler RepoDataRecord
    pip: list["PipPackage"]
    content_hash: str


def _conda_dependencies(depends: list[str]) -> dict[str, str]:
    """`name version [build]` strings as conda-lock records them: name -> version spec."""
    out: dict[str, list[str]] = {}
    for dep in depends:
        parts = dep.split()
        if not parts:
            continue
        specs = out.setdefault(parts[0], [])
        if len(parts) > 1 and parts[1] not in specs:
            specs.append(parts[1])
    return {name: ",".join(specs) for name, specs in out.items()}


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def build_lockfile(
    *,
    platforms: list[PlatformLock],
    channels: list[str],
    source: str,
    source_text: str,
    custom: dict[str, str],
):
    """A conda-lock `Lockfile` (v2 model) for all platforms of one target."""
    # conda_lock.lockfile must be imported before conda_lock.models (circular import otherwise).
    from conda_lock.lockfile.v2prelim.models import (
        HashModel,
        InputMeta,
        LockedDependency,
        Lockfile,
        LockMeta,
    )

    packages = []
    for plat in platforms:
        for rec in plat.conda:
            md5 = _hex(rec.md5)
            if not md5:
                raise EnvctlError(f"the channel gives no md5 for {rec.url}; conda-lock requires one for conda packages", exit_code=1)
            packages.append(
                LockedDependency(
                    name=rec.name.normalized,
                    version=str(rec.version),
                    manager="conda",
                    platform=plat.platform,
                    dependencies=_conda_dependencies(list(rec.depends)),
                    url=rec.url,
                    hash=HashModel(md5=md5, sha256=_hex(rec.sha256)),
                    build=str(rec.build),
                    categories={"main"},
                )
            )
        for pkg in plat.pip:
            packages.append(
                LockedDependency(
                    name=pkg.name,
                    version=pkg.version,
                    manager="pip",
                    platform=plat.platform,
                    # Edges as resolved for this platform; the installer takes exact
                    # URLs with --no-deps, so no version ranges are needed here.
                    dependencies={dep: "*" for dep in pkg.dependencies},
                    url=pkg.url,
                    hash=HashModel(sha256=pkg.sha256),
                    categories={"main"},
                )
            )
    meta = LockMeta(
        content_hash={p.platform: p.content_hash for p in platforms},
        channels=channels,
        platforms=[p.platform for p in platforms],
        sources=[source],
        # Both digests: the writer drops a None md5, and the parser then rejects
        # the entry (md5 is a required field), even for conda-lock's own files.
        inputs_metadata={
            source: InputMeta(
                md5=hashlib.md5(source_text.encode()).hexdigest(),
                sha256=hashlib.sha256(source_text.encode()).hexdigest(),
            )
        },
        custom_metadata=dict(sorted(custom.items())),
    )
    return Lockfile(package=packages, metadata=meta)


def render_lockfile(lockfile, name: str) -> bytes:
    """The bytes conda-lock's writer produces for `lockfile` saved as `name`.

    The writer puts the file's own name into its help text, so it writes into
    a private folder under the final name; the caller then moves the bytes
    into place atomically (a temp file name would leak into the text).
    """
    from conda_lock.lockfile import write_conda_lock_file

    tmp = Path(tempfile.mkdtemp(prefix="envctl-lock-"))
    try:
        path = tmp / name
        write_conda_lock_file(lockfile, path, metadata_choices=None)
        return path.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_lockfile(path: Path):
    """Full parse through conda-lock (slow import); EnvctlError if it is not a lock."""
    from conda_lock.lockfile import parse_conda_lock_file

    try:
        return parse_conda_lock_file(Path(path))
    except FileNotFoundError:
        raise EnvctlError("no lock file here; run `envctl lock`", file=path) from None
    except Exception as exc:  # conda-lock raises pydantic, yaml and its own errors
        raise EnvctlError(f"not a valid conda-lock file: {exc}", file=path) from None


def _metadata_block(text: str) -> str:
    """The YAML up to the top-level `package:` key (conda-lock writes metadata first)."""
    cut = text.find("\npackage:")
    return text if cut < 0 else text[: cut + 1]


def read_lock_meta(path: Path) -> LockInfo:
    """envctl's fields of a lock, read fast (no conda_lock or rattler import)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EnvctlError("no lock file here; run `envctl lock`", file=path) from None
    except OSError as exc:
        raise EnvctlError(f"cannot read the lock: {exc.strerror}", file=path) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(_metadata_block(data.decode("utf-8")), Loader=loader)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnvctlError(f"not a conda-lock file (unreadable YAML: {exc})", file=path) from None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise EnvctlError("not a conda-lock file (no `metadata` mapping)", file=path)
    custom = meta.get("custom_metadata") or {}
    channels = tuple(c.get("url", "") if isinstance(c, dict) else str(c) for c in meta.get("channels") or [])
    return LockInfo(
        path=path,
        target=custom.get(KEY_TARGET),
        target_hash=custom.get(KEY_TARGET_HASH),
        spec_hash=custom.get(KEY_SPEC_HASH),
        envctl_version=custom.get(KEY_VERSION),
        platforms=tuple(meta.get("platforms") or ()),
        channels=channels,
        sha256="sha256:" + hashlib.sha256(data).hexdigest(),
    )


def content_hash(spec_hash: str, channels: list[str], platform: str, virtual: dict[str, str]) -> str:
    """Per-platform input hash (conda-lock's `content_hash` slot): spec, channels, virtual packages.

    conda-lock computes its own value from its own parse of the spec, so
    `conda-lock --check-input-hash` will treat an envctl lock as needing a
    relock; envctl's freshness check uses `envctl_spec_hash` instead.
    """
    canonical = json.dumps(
        {"spec": spec_hash, "channels": channels, "platform": platform, "virtual_packages": virtual},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def source_path(lock: Path, env: Path) -> str:
    """The spec's path relative to the lock's folder, as conda-lock records `sources`."""
    return Path(os.path.relpath(env.resolve(), lock.parent.resolve())).as_posix()
