"""Check every linked file against its package's own hashes.

Both installers hardlink from writable caches; a file edited in place there
would reach every new env. conda's paths.json and a wheel's RECORD say what
each file must be; a ledger of verified inodes keeps warm creates fast.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from envctl.core.atomic import write_bytes_atomic
from envctl.core.errors import EnvctlError
from envctl.core.hashing import file_digest
from envctl.core.paths import cache_home

STATE_FILE = Path("conda-meta") / "envctl-state.json"


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


class _Ledger:
    """Files already hashed and found right, by (device, inode) -> (size, mtime_ns, digest).

    Files hardlinked from a package cache keep their inode, so a second env of
    the same lock hashes only files whose inode, size or mtime changed (an
    in-place edit changes the mtime; a replaced file has a new inode).
    """

    MAX_ENTRIES = 250_000  # about ten torch envs' worth; beyond it, only what this run saw is kept

    def __init__(self) -> None:
        self.path = cache_home() / "verified-files-v1.json"
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


def _digest_matches(path: str | Path, digest: str) -> bool:
    import base64

    if ":" in digest:
        algo, _, expected = digest.partition(":")
        return file_digest(path, algo).hex() == expected.lower()
    algo, _, expected = digest.partition("=")
    return base64.urlsafe_b64encode(file_digest(path, algo)).rstrip(b"=").decode() == expected.rstrip("=")


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
    for bad_path in bad:
        package, cache_dir = owner[str(bad_path)]
        shown = os.path.relpath(bad_path, base) if str(bad_path).startswith(base + os.sep) else str(bad_path)
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
