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

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from envctl.core.errors import SolveFailed
from envctl.core.hashing import md5_text, sha256_text
from envctl.core.limits import control_char, short
from envctl.lock.records import LockDocument, LockedPackage, LockFormatError, LockHeader, LockRequest

SUFFIX = ".conda-lock.yml"

# Keys envctl keeps in conda-lock's `metadata.custom_metadata` (which conda-lock's parser keeps).
KEY_TARGET = "envctl_target"
KEY_TARGET_HASH = "envctl_target_hash"
KEY_SPEC_HASH = "envctl_spec_hash"
KEY_VERSION = "envctl_version"

_CONDA_FILE = re.compile(r"[^/]+\.(conda|tar\.bz2)")


def build_lockfile(request: LockRequest, custom: dict[str, str]):
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
    for plat in request.platforms:
        for pkg in plat.packages:
            if pkg.manager == "conda" and not pkg.md5:
                raise SolveFailed(f"the channel gives no md5 for {pkg.url}; conda-lock requires one for conda packages")
            packages.append(LockedDependency(
                name=pkg.name, version=pkg.version, manager=pkg.manager, platform=plat.platform,
                dependencies=dict(pkg.dependencies), url=pkg.url,
                hash=HashModel(md5=pkg.md5, sha256=pkg.sha256) if pkg.manager == "conda" else HashModel(sha256=pkg.sha256),
                **({"build": pkg.build or ""} if pkg.manager == "conda" else {}),
                categories={"main"},
            ))
    meta = LockMeta(
        content_hash={p.platform: p.content_hash for p in request.platforms},
        channels=request.channels,
        platforms=[p.platform for p in request.platforms],
        sources=[request.source],
        # Both digests: the writer drops a None md5, and the parser then rejects
        # the entry (md5 is a required field), even for conda-lock's own files.
        inputs_metadata={request.source: InputMeta(md5=md5_text(request.source_text),
                                                   sha256=sha256_text(request.source_text))},
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


def _load(text: str) -> Any:
    import yaml  # not at import time: a no-op create compares digests only and never parses

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise LockFormatError(f"not a conda-lock file (unreadable YAML: {short(str(exc), 300)})") from None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockFormatError(f"not a conda-lock file (not UTF-8 text: {exc.reason} at byte {exc.start})") from None


def _metadata_block(text: str) -> str:
    """The YAML up to the top-level `package:` key (conda-lock writes metadata first)."""
    cut = text.find("\npackage:")
    return text if cut < 0 else text[: cut + 1]


def _header(doc: Any) -> LockHeader:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise LockFormatError("not a conda-lock file (no `metadata` mapping)", "metadata")
    custom = meta.get("custom_metadata") or {}
    if not isinstance(custom, dict):
        raise LockFormatError("'metadata.custom_metadata' is not a mapping", "metadata.custom_metadata")
    channels = tuple(c.get("url", "") if isinstance(c, dict) else str(c) for c in meta.get("channels") or [])
    return LockHeader(target=custom.get(KEY_TARGET), target_hash=custom.get(KEY_TARGET_HASH),
                      spec_hash=custom.get(KEY_SPEC_HASH), envctl_version=custom.get(KEY_VERSION),
                      platforms=tuple(meta.get("platforms") or ()), channels=channels)


def _entry_problem(entry: Any, platforms: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(why, key) when one `package` entry is not a whole lock entry, else None."""
    if not isinstance(entry, dict):
        return "is not a mapping", None
    for key in ("name", "version", "manager", "platform", "url"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"has no '{key}' string (got {short(value)})", key
        found = control_char(value)
        if found:
            return f"'{key}' {short(value)} contains {found}", key
    name, manager = entry["name"], entry["manager"]
    if manager not in ("conda", "pip"):
        return f"({name}): manager {short(manager)} is neither conda nor pip", "manager"
    if entry["platform"] not in platforms:
        return f"({name}): platform {short(entry['platform'])} is not one of the lock's platforms", "platform"
    url = entry["url"].split("#", 1)[0]
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url) or " " in url:
        return f"({name}): url {short(entry['url'])} is not a URL", "url"
    if manager == "conda" and (url.count("/") < 4 or not _CONDA_FILE.fullmatch(url.rsplit("/", 1)[1])):
        return f"({name}): conda url {short(entry['url'])} does not end in <channel>/<subdir>/<package file>", "url"
    hashes = entry["hash"] if isinstance(entry.get("hash"), dict) else {}
    if manager == "pip" and not (isinstance(hashes.get("sha256"), str) and hashes["sha256"]):
        return f"pip package {name} {entry['version']} has no sha256 in the lock; refusing to install it unchecked", "hash.sha256"
    if not any(isinstance(v, str) and v for v in hashes.values()):
        return f"({name} {entry['version']}) has no hash", "hash"
    deps = entry.get("dependencies") or {}
    if not isinstance(deps, dict):
        return f"({name}): 'dependencies' is not a mapping", "dependencies"
    return None


def _packages(doc: dict, header: LockHeader) -> tuple[LockedPackage, ...]:
    """Every entry checked (fields, platforms, URLs, hashes, duplicates, no empty platform) and typed."""
    if not header.platforms or not all(isinstance(p, str) for p in header.platforms):
        raise LockFormatError("the lock names no platforms", "metadata.platforms")
    entries = doc.get("package")
    if not isinstance(entries, list):
        raise LockFormatError("the lock has no `package` list", "package")
    seen: set[tuple[str, str, str]] = set()
    counts = dict.fromkeys(header.platforms, 0)
    packages = []
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, header.platforms)
        if problem:
            why, key = problem
            where = "" if why.startswith("pip package") else f"package entry {index + 1} "  # names itself
            raise LockFormatError(where + why, f"package[{index}]" + (f".{key}" if key else ""))
        ident = (entry["platform"], entry["manager"], entry["name"].lower().replace("_", "-"))
        if ident in seen:
            raise LockFormatError(f"{entry['name']} appears twice for {entry['platform']} ({entry['manager']})",
                                  f"package[{index}]")
        seen.add(ident)
        counts[entry["platform"]] += 1
        hashes = entry.get("hash") or {}
        packages.append(LockedPackage(
            platform=entry["platform"], manager=entry["manager"], name=entry["name"], version=entry["version"],
            url=entry["url"], md5=hashes.get("md5") or None, sha256=hashes.get("sha256") or None,
            build=str(entry.get("build") or "") or None,
            dependencies=tuple((str(n), str(s)) for n, s in (entry.get("dependencies") or {}).items())))
    empty = [p for p, n in counts.items() if n == 0]
    if empty:
        raise LockFormatError(f"the lock has no packages for {', '.join(empty)} (cut short?)", "package")
    return tuple(packages)


def conda_lockfile(doc: dict):
    """conda-lock's own model of a parsed lock (its slow import): what conda-lock and micromamba accept."""
    from conda_lock.lockfile import lockfile_v1_to_v2
    from conda_lock.lockfile.v1.models import Lockfile as LockfileV1
    from conda_lock.lockfile.v2prelim.models import Lockfile

    content = dict(doc)
    version = content.pop("version", None)
    try:
        if version == 1:
            return lockfile_v1_to_v2(LockfileV1.model_validate(content))
        if version == 2:
            return Lockfile.model_validate(content)
    except Exception as exc:  # pydantic's ValidationError and friends
        raise LockFormatError(f"not a valid conda-lock file: {short(str(exc), 500) or type(exc).__name__}") from None
    raise LockFormatError(f"not a valid conda-lock file: version {short(version)} (1 or 2 expected)", "version")


class CondaLockFormat:
    """conda-lock files behind the LockFormat interface (lock/records.py)."""

    name = "conda-lock"
    suffix = SUFFIX

    def read_header(self, data: bytes) -> LockHeader:
        """envctl's fields, from the metadata block only (no conda_lock or rattler import)."""
        return _header(_load(_metadata_block(_decode(data))))

    def parse(self, data: bytes) -> LockDocument:
        """Every package, checked entry by entry (plain YAML: no conda_lock import)."""
        doc = _load(_decode(data))
        header = _header(doc)
        packages = _packages(doc, header)
        content_hashes = doc["metadata"].get("content_hash")
        return LockDocument(header, packages, dict(content_hashes) if isinstance(content_hashes, dict) else {})

    def verify(self, data: bytes) -> None:
        """conda-lock's own parser accepts it (what conda-lock and micromamba read): a lock only envctl
        could read is refused before anything is built from it."""
        conda_lockfile(_load(_decode(data)))

    def write(self, request: LockRequest, file_name: str) -> bytes:
        lockfile = build_lockfile(request, {KEY_TARGET: request.target, KEY_TARGET_HASH: request.target_hash,
                                            KEY_SPEC_HASH: request.spec_hash, KEY_VERSION: request.envctl_version})
        return _envctl_header(render_lockfile(lockfile, file_name), request.target, file_name)

    def environment_lines(self, data: bytes, platform: str, kind: str) -> list[str]:
        """The lock as an environment.yml (`env`) or an explicit URL list (`explicit`), by conda-lock's renderer."""
        from conda_lock.conda_lock import render_lockfile_for_platform

        return render_lockfile_for_platform(lockfile=conda_lockfile(_load(_decode(data))), include_dev_dependencies=False,
                                            extras=None, kind=kind, platform=platform,
                                            suppress_warning_for_pip_and_explicit=True)


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
