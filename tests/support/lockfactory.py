"""Write conda-lock.yml files for tests, through conda-lock's own models and writer.

Stands in for the lock stage where a test needs a lock with exact contents
(a tampered hash, a foreign platform) rather than a solve: conda entries are
taken from a local channel's repodata.json, pip entries from
`pip install --dry-run --report` (pip's own configuration supplies
find-links, so the local torch 2.13.0+cpu wheel is picked).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from conda_lock.lockfile import write_conda_lock_file
from conda_lock.lockfile.v1.models import HashModel, LockMeta
from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile
from conda_lock.models.channel import Channel


def channel_entries(channel: Path, platform: str, names: list[str]) -> list[LockedDependency]:
    """Locked conda entries for `names`, the newest of each in <channel>/<platform> or noarch."""
    candidates: dict[str, list[tuple]] = {}
    for subdir in (platform, "noarch"):
        if not (channel / subdir / "repodata.json").exists():
            continue
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            for filename, rec in repodata.get(key, {}).items():
                if rec["name"] in names:
                    candidates.setdefault(rec["name"], []).append((subdir, filename, rec))

    def version_key(item: tuple) -> list:
        return [int(x) if x.isdigit() else -1 for x in item[2]["version"].split(".")]

    chosen = {name: max(found, key=version_key) for name, found in candidates.items()}
    missing = set(names) - set(chosen)
    assert not missing, f"not in the channel for {platform}: {missing}"
    out = []
    for name in names:
        subdir, filename, rec = chosen[name]
        deps = {}
        for dep in rec.get("depends", []):
            dep_name, _, spec = dep.partition(" ")
            deps[dep_name] = spec or "*"
        out.append(LockedDependency(
            name=name, version=rec["version"], manager="conda", platform=platform,
            dependencies=deps, url=f"{channel.as_uri()}/{subdir}/{filename}",
            hash=HashModel(md5=rec.get("md5"), sha256=rec.get("sha256")), build=rec.get("build"),
            categories={"main"},
        ))
    return out


def pip_report(requirements: list[str]) -> list[dict]:
    """pip's resolution of `requirements` for this interpreter: [{name, version, url, sha256}]."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--only-binary=:all:", "--report", str(report), *requirements],
            check=True, capture_output=True, text=True,
        )
        data = json.loads(report.read_text())
    return [
        {
            "name": item["metadata"]["name"],
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"],
            "sha256": item["download_info"]["archive_info"]["hashes"]["sha256"],
            "requires": item["metadata"].get("requires_dist", []),
        }
        for item in data["install"]
    ]


def pip_entries(report: list[dict], platform: str) -> list[LockedDependency]:
    return [
        LockedDependency(
            name=item["name"], version=item["version"], manager="pip", platform=platform,
            dependencies={}, url=item["url"], hash=HashModel(sha256=item["sha256"]), categories={"main"},
        )
        for item in report
    ]


def write_lock(
    path: Path,
    *,
    target: str,
    channel: Path,
    platforms: list[str],
    packages: list[LockedDependency],
) -> Path:
    meta = LockMeta(
        content_hash={p: "test-" + p for p in platforms},
        channels=[Channel(url=channel.as_uri(), used_env_vars=())],
        platforms=platforms,
        sources=[f"envs/{target}/environment.yml"],
        custom_metadata={"envctl_target": target, "envctl_version": "0.1.0"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_conda_lock_file(Lockfile(package=packages, metadata=meta), path, metadata_choices=None)
    return path


def parse(path: Path) -> Lockfile:
    from conda_lock.lockfile import parse_conda_lock_file

    return parse_conda_lock_file(path)


def edit_lock(path: Path, edit) -> Path:
    """Parse `path` with conda-lock, let `edit(lockfile)` change it, write it back with conda-lock."""
    lock = parse(path)
    edit(lock)
    write_conda_lock_file(lock, path, metadata_choices=None)
    return path
