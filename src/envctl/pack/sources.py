"""The locked archives of one platform, hash-checked against the lock, as local files.

A `file://` URL is read in place; anything else is looked up in the package
caches (envctl's own archive cache, conda's pkgs folders) and only then
downloaded, into envctl's cache under its sha256. Every file is hashed before
it is used: the lock is the source of truth, whatever cache it came from.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from envctl.core.errors import EnvctlError, PackFailed
from envctl.core.hashing import file_digest, sha256_file
from envctl.create.verify import cache_home


@dataclass(frozen=True)
class Archive:
    """One locked package file, present locally and checked."""

    manager: str  # conda | pip
    name: str
    version: str
    url: str
    sha256: str
    path: Path

    @property
    def filename(self) -> str:
        return unquote(self.url.split("#", 1)[0].rsplit("/", 1)[1])


def md5_file(path: Path) -> str:
    return file_digest(path, "md5").hex()


def archive_cache() -> Path:
    return cache_home() / "archives"


def _cache_candidates(filename: str) -> list[Path]:
    """Where a conda package or wheel may already sit: envctl's cache, conda's package folders."""
    dirs = [p for p in os.environ.get("CONDA_PKGS_DIRS", "").split(",") if p]
    dirs += [str(Path.home() / ".conda" / "pkgs"), "/opt/conda/pkgs"]
    out = [Path(d) / filename for d in dirs]
    return out


def fetch(manager: str, name: str, version: str, url: str, sha256: str | None, md5: str | None, lock: Path,
          progress=None) -> Archive:
    """The locked file for one entry, checked against the lock's sha256 (or md5 when that is all it has).
    A download reports its bytes to `progress` ("download" events: rich's progress display on a terminal)."""
    clean = url.split("#", 1)[0]
    filename = unquote(clean.rsplit("/", 1)[1])
    expected = (sha256 or "").lower()
    if not expected and not md5:
        raise EnvctlError(f"{manager} package {name} {version} has no hash in the lock; refusing to pack it unchecked",
                          file=lock, hint="Re-lock the target (`envctl lock`).")

    def matches(path: Path) -> str | None:
        actual = sha256_file(path)
        if expected:
            return actual if actual == expected else None
        return actual if md5 and md5_file(path) == md5.lower() else None

    if clean.startswith("file:"):
        path = Path(url2pathname(urlparse(clean).path))
        if not path.is_file():
            raise EnvctlError(f"{manager} package {name} {version}: {path} does not exist", file=lock,
                              hint="The lock names a local file that is gone; re-lock against the channel as it is now.")
        actual = matches(path)
        if actual is None:
            raise _mismatch(manager, name, version, expected or md5 or "", sha256_file(path), str(path), lock)
        return Archive(manager, name, version, url, actual, path)

    cached = archive_cache() / (expected or md5 or "x") / filename
    for candidate in [cached, *_cache_candidates(filename)]:
        if candidate.is_file():
            actual = matches(candidate)
            if actual is not None:
                return Archive(manager, name, version, url, actual, candidate)
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=cached.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(clean, timeout=120) as response:  # noqa: S310 (locked URL)
            copy_reporting(response, out, f"{name} {version}", progress)
        actual = matches(Path(tmp))
        if actual is None:
            raise _mismatch(manager, name, version, expected or md5 or "", sha256_file(Path(tmp)), clean, lock)
        os.replace(tmp, cached)
    except OSError as exc:
        raise PackFailed(f"{manager} package {name} {version}: cannot download {clean}: {exc}", file=lock,
                         hint="Pack on a machine that reaches the channel/index, or put the file in a package cache.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Archive(manager, name, version, url, actual, cached)


def copy_reporting(response, out, name: str, progress=None, chunk: int = 1 << 20) -> int:
    """Copy a download to `out`, telling `progress` the bytes so far (and the total, from Content-Length)."""
    try:
        total = int(response.headers.get("Content-Length") or 0) or None
    except (AttributeError, ValueError):
        total = None
    done = 0
    while True:
        block = response.read(chunk)
        if not block:
            break
        out.write(block)
        done += len(block)
        if progress is not None:
            progress("download", key=name, name=name, done=done, total=total)
    if progress is not None:
        progress("download", key=name, name=name, done=done, total=total or done, finished=True)
    return done


def _mismatch(manager: str, name: str, version: str, expected: str, actual: str, where: str, lock: Path) -> EnvctlError:
    return PackFailed(
        f"{manager} package {name} {version}: the file's hash does not match the lock "
        f"(expected {expected}, actual {actual}; {where}). Nothing was packed.",
        file=lock, hint="The lock is the source of truth: re-lock if the package changed on purpose.",
    )
