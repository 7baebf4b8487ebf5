"""conda-lock's unified lock format: the one lock format envctl writes and reads today.

Writing goes through conda-lock's own models and `write_conda_lock_file`, so a
team's locks also work with `conda-lock install` and `micromamba create -f`.
Reading has two speeds: `read_meta` parses only the metadata block with plain
YAML (importing conda_lock costs about half a second, too much for a no-op
`status` or `create`); `read_packages` goes through conda-lock's own parser.

The file is deterministic: packages and their dependencies are sorted by
conda-lock's writer, no creation time, git user or absolute path is recorded,
and `content_hash` is derived from the inputs. Locking the same spec against
the same channel contents and indexes gives the same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from envctl.core.errors import EnvctlError, SolveFailed
from envctl.lock.lockfile import LockedPackage, LockInfo, LockRequest, PlatformLock, read_lock_bytes

# Keys envctl keeps in conda-lock's `metadata.custom_metadata` (which conda-lock's parser keeps).
KEY_TARGET = "envctl_target"
KEY_TARGET_HASH = "envctl_target_hash"
KEY_SPEC_HASH = "envctl_spec_hash"
KEY_VERSION = "envctl_version"


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
                raise SolveFailed(f"the channel gives no md5 for {rec.url}; conda-lock requires one for conda packages")
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
        pinned = {pkg.name: pkg.version for pkg in plat.pip}
        for pkg in plat.pip:
            packages.append(
                LockedDependency(
                    name=pkg.name,
                    version=pkg.version,
                    manager="pip",
                    platform=plat.platform,
                    # Edges as resolved for this platform, pinned to what was resolved. A PEP 440
                    # specifier, never conda's "*": py-rattler (pixi's lock reader) parses pip
                    # dependencies as PEP 508 requirements and rejects "name *".
                    dependencies={dep: f"=={pinned[dep]}" if dep in pinned else ">=0" for dep in pkg.dependencies},
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
                md5=hashlib.md5(source_text.encode(), usedforsecurity=False).hexdigest(),
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
        from envctl.core.limits import short

        raise EnvctlError(f"not a valid conda-lock file: {short(str(exc), 500) or type(exc).__name__}", file=path) from None


def _metadata_block(text: str) -> str:
    """The YAML up to the top-level `package:` key (conda-lock writes metadata first)."""
    cut = text.find("\npackage:")
    return text if cut < 0 else text[: cut + 1]


def read_meta(path: Path) -> LockInfo:
    """envctl's fields of a lock, read fast (no conda_lock or rattler import)."""
    path = Path(path)
    data = read_lock_bytes(path)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(_metadata_block(data.decode("utf-8")), Loader=loader)  # noqa: S506 - a SafeLoader
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


def read_packages(path: Path) -> tuple[LockInfo, list[LockedPackage]]:
    """Every locked package, through conda-lock's own parser (what conda-lock and micromamba read)."""
    info = read_meta(path)
    parsed = parse_lockfile(path)
    return info, [LockedPackage(platform=p.platform, manager=p.manager, name=p.name, version=str(p.version),
                                url=p.url, md5=p.hash.md5, sha256=p.hash.sha256,
                                build=getattr(p, "build", None) or None) for p in parsed.package]


class CondaLockFormat:
    """conda-lock files behind the LockFormat interface (lock/lockfile.py)."""

    name = "conda-lock"
    suffix = ".conda-lock.yml"

    def read_meta(self, path: Path) -> LockInfo:
        return read_meta(path)

    def read_packages(self, path: Path) -> tuple[LockInfo, list[LockedPackage]]:
        return read_packages(path)

    def write(self, request: LockRequest, file_name: str) -> bytes:
        lockfile = build_lockfile(
            platforms=request.platforms, channels=request.channels, source=request.source,
            source_text=request.source_text,
            custom={KEY_TARGET: request.target, KEY_TARGET_HASH: request.target_hash,
                    KEY_SPEC_HASH: request.spec_hash, KEY_VERSION: request.envctl_version})
        return _envctl_header(render_lockfile(lockfile, file_name), request.target, file_name)


def _envctl_header(data: bytes, target: str, file_name: str) -> bytes:
    """conda-lock's writer heads the file with `conda-lock lock --update` advice; envctl's own command
    is what regenerates it (from envs/matrix.yaml), so the header says that instead."""
    text = data.decode("utf-8")
    body = text[text.index("version:"):] if text.startswith("#") and "\nversion:" in text else text
    header = (
        "# This lock file was generated by envctl in conda-lock's format. DO NOT EDIT!\n"
        "#\n"
        "# It pins every package (with checksums) of target '" + target + "' for each platform it lists.\n"
        "# Regenerate it after changing envs/matrix.yaml:\n"
        "#     envctl lock " + target + "\n"
        "# Build the env from it:\n"
        "#     envctl create --target " + target + " --locked\n"
        "# Without envctl (conda-lock or micromamba):\n"
        "#     conda-lock install -n YOURENV " + file_name + "\n"
    )
    return (header + body).encode("utf-8")
