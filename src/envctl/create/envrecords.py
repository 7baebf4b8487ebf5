"""What an env says it holds, read as typed records: conda-meta/*.json and pip's dist-info.

An env is data anyone with write access to it controls, so every file here
is read through the capped regular-file reader (a FIFO must not hang, a
huge or deeply nested file must not exhaust memory or the stack) and checked
for types: a record with `"files": 5` or a METADATA that is not UTF-8 is
skipped with a warning naming the file, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Callable

from envctl.core.errors import EnvctlError
from envctl.core.limits import MAX_JSON_BYTES, read_json, read_text, short

Warn = Callable[[str], None]
MAX_METADATA_BYTES = 4 << 20  # a wheel's METADATA is a few KB; long READMEs reach a few hundred KB
DIST_SUFFIXES = (".dist-info", ".egg-info")


def _ignore(_message: str) -> None:
    pass


@dataclass(frozen=True)
class CondaRecord:
    """One conda-meta/<name>-<version>-<build>.json: the fields envctl reads."""

    name: str
    version: str
    build: str
    files: tuple[str, ...]
    path: Path
    channel: str = ""
    depends: tuple[str, ...] = ()  # match specs, from the package's own index.json

    @classmethod
    def from_json(cls, data: Any, path: Path) -> "CondaRecord":
        if not isinstance(data, dict):
            raise EnvctlError("a package record must be a JSON object", file=path)
        for key in ("name", "version"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise EnvctlError(f"'{key}' must be a non-empty string, not {short(data.get(key))}", file=path, key=key)
        build = data.get("build", "")
        if not isinstance(build, str):
            raise EnvctlError(f"'build' must be a string, not {short(build)}", file=path, key="build")
        files = data.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise EnvctlError(f"'files' must be a list of paths, not {short(files)}", file=path, key="files")
        channel = data.get("channel") or ""
        if not isinstance(channel, str):
            raise EnvctlError(f"'channel' must be a string, not {short(channel)}", file=path, key="channel")
        depends = data.get("depends", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise EnvctlError(f"'depends' must be a list of match specs, not {short(depends)}", file=path, key="depends")
        return cls(data["name"], data["version"], build, tuple(files), Path(path), channel, tuple(depends))

    def dist_folders(self) -> set[str]:
        """The dist-info/egg-info folders among this package's files (pip must not list them again)."""
        return {part for f in self.files for part in f.split("/")[:-1] if part.endswith(DIST_SUFFIXES)}


def conda_records(prefix: Path, warn: Warn = _ignore) -> list[CondaRecord]:
    """The env's conda packages; an unreadable or malformed record is skipped with a warning."""
    meta = Path(prefix) / "conda-meta"
    records = []
    for path in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        try:
            data = read_json(path, MAX_JSON_BYTES, "package record")
            if isinstance(data, dict) and "name" not in data and "version" not in data:
                continue  # not a package (envctl's own state file, conda's history json)
            records.append(CondaRecord.from_json(data, path))
        except EnvctlError as exc:
            warn(f"skipped a package record: {exc}")
    return records


@dataclass(frozen=True)
class Distribution:
    """A pip-installed distribution: its `Name:`/`Version:`, the folder they came from, its `Requires-Dist:`."""

    name: str
    version: str
    folder: str
    requires: tuple[str, ...] = ()


def _metadata_file(folder: Path) -> Path:
    return folder / ("METADATA" if folder.name.endswith(".dist-info") else "PKG-INFO")


def distributions(site: Path, warn: Warn = _ignore) -> list[Distribution]:
    """The dist-info/egg-info folders of one site-packages folder; a bad one is skipped with a warning."""
    found: list[Distribution] = []
    try:
        folders = sorted(p for p in Path(site).iterdir() if p.name.endswith(DIST_SUFFIXES) and p.is_dir())
    except OSError as exc:
        warn(f"cannot read {site}: {exc.strerror or exc}")
        return found
    for folder in folders:
        meta = _metadata_file(folder)
        try:
            headers = HeaderParser().parsestr(read_text(meta, MAX_METADATA_BYTES, "package metadata"))
            name, version = headers.get("Name"), headers.get("Version")
            if not isinstance(name, str) or not name.strip():
                raise EnvctlError("no 'Name:' field", file=meta, key="Name")
        except EnvctlError as exc:
            warn(f"skipped a pip package: {exc}")
            continue
        requires = tuple(str(r).strip() for r in headers.get_all("Requires-Dist") or ())
        found.append(Distribution(name.strip(), str(version or "").strip(), folder.name, requires))
    return found
