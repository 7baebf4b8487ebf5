"""The conda part of a create: the lock's entries, records rebuilt from them, linked by py-rattler.

Records are looked up again in the locked channel's repodata and must carry
the lock's hashes; what conda-lock's parser read is cached per lock sha256 so
later envs of the same lock skip importing conda-lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envctl.core.errors import EnvBroken, EnvctlError
from envctl.core.hashing import sha256_file
from envctl.core.progress import Progress, emit
from envctl.lock.lockfile import Lock
from envctl.lock.records import LockedPackage


def read_lock_entries(lock: Lock, name: str, host: str) -> tuple[list[LockedPackage], list[LockedPackage]]:
    """The lock's conda and pip entries for `host`, the lock accepted by its format's own tools."""
    contents = lock.verified()
    locked_for = contents.info.target
    if locked_for and locked_for != name:
        raise EnvctlError(f"the lock was made for target '{locked_for}', not '{name}'", file=lock.path)
    if host not in contents.info.platforms:
        raise EnvctlError(
            f"the lock for '{name}' covers {', '.join(contents.info.platforms)}, not this machine's platform {host}; "
            "an env can only be created for the host platform",
            file=lock.path,
            hint="Add the host's platform to the target's platforms and re-lock, or create it on a matching machine.",
        )
    return contents.for_platform(host, "conda"), contents.for_platform(host, "pip")


def conda_records(entries: list[Any], lock: Path) -> list[Any]:
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
            found = asyncio.run(gateway.query([channel], [rattler.Subdir(subdir)], names, recursive=False))
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
                expected, actual = (getattr(entry, kind) or "").lower(), getattr(record, kind)
                if expected and actual:
                    _check_hash(entry, "the channel's " + kind, expected, actual.hex(), url, lock)
                    checked = True
            if not checked:
                raise EnvctlError(f"conda package {entry.name} {entry.version}: no hash to check against the lock", file=lock)
            if url.startswith("file:") and entry.sha256:
                path = Path(url2pathname(urlparse(url).path))
                try:
                    actual_sha = sha256_file(path)
                except OSError as exc:
                    raise EnvctlError(f"conda package {entry.name}: cannot read {path}: {exc.strerror}", file=lock) from None
                _check_hash(entry, "the archive's sha256", entry.sha256.lower(), actual_sha, str(path), lock)
            records.append(record)
    return records


def _check_hash(entry: Any, what: str, expected: str, actual: str, where: str, lock: Path) -> None:
    if expected != actual:
        raise EnvBroken(
            f"conda package {entry.name} {entry.version}: {what} does not match the lock "
            f"(expected {expected}, actual {actual}; {where}). Nothing was changed.",
            file=lock, hint="The lock is the source of truth: re-lock if the package changed on purpose.",
        )


def install_conda(entries: list[Any], staging: Path, prefix: Path, progress: Progress | None, lock: Path) -> None:
    if not entries:
        return
    import asyncio

    import rattler

    records = conda_records(entries, lock)

    class Reporter(rattler.InstallerReporter):
        total = done = 0
        names: dict[int, str] = {}
        sizes: dict[int, int] = {}

        def on_populate_cache_start(self, operation: int, package_name: str) -> int:
            self.names[operation] = package_name
            return operation

        def on_download_start(self, cache_entry: int) -> int:
            return cache_entry

        def on_download_progress(self, download_idx: int, progress_bytes: int, total: int | None) -> None:
            self.sizes[download_idx] = progress_bytes
            emit(progress, "download", key=("conda", download_idx), name=self.names.get(download_idx, "?"),
                 done=progress_bytes, total=total)

        def on_download_completed(self, download_idx: int) -> None:
            emit(progress, "download", key=("conda", download_idx), name=self.names.get(download_idx, "?"),
                 done=self.sizes.get(download_idx, 0), total=self.sizes.get(download_idx), finished=True)

        def on_transaction_start(self, total_operations: int) -> None:
            self.total = total_operations

        def on_transaction_operation_complete(self, operation: int) -> None:
            self.done += 1
            emit(progress, "conda-package", done=self.done, total=self.total, transient=True,
                  message=f"linked {self.done}/{self.total} conda packages")

    try:
        asyncio.run(rattler.install(
            records,
            target_prefix=staging,
            # Files are patched with the final path, so the env works once renamed there.
            alternative_target_prefix=prefix,
            installed_packages=[],  # fresh folder: nothing to scan
            show_progress=False,
            # rattler's InstallerReporter is a Protocol whose hooks have no defaults in its stubs; rattler
            # calls only the hooks a reporter defines, so the ones left out here are not needed.
            reporter=Reporter() if progress is not None else None,  # type: ignore[abstract]
        ))
    except Exception as exc:
        raise EnvBroken(f"linking the conda packages of the lock failed: {exc}", file=lock) from None
