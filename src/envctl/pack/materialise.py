"""Build a target's env for its own platform, on any machine, as a prefix that can be moved.

The conda part is linked by py-rattler for the target platform with the
files patched to a long placeholder prefix (`alternative_target_prefix`), as
conda-build's placeholders work: long enough that a binary prefix can be
replaced in place, NUL-padded, by any shorter install path. The pip part is
installed by uv for the target platform (`--python-platform`,
`--python-version`, `--target site-packages`), so nothing of it has to run
here. Console scripts get the placeholder interpreter in their shebang.
Finally every file that holds the placeholder is recorded, text or binary,
for the installer to rewrite on the device.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envctl.core.errors import EnvctlError, PackFailed
from envctl.pack.sources import Archive, fetch

# 200 bytes: under conda-build's 255-byte placeholder (rattler patches binaries
# with it NUL-padded), and long enough for any sensible install path.
PLACEHOLDER = ("/opt/envctl-bundle/" + "_envctl_placehold" * 12)[:200]
# A file mentioning the materialisation folder itself would break after the move.
MACHINES = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le",
            "osx-arm64": "arm64", "osx-64": "x86_64"}


@dataclass
class Materialised:
    prefix: Path  # where the files are (their contents name PLACEHOLDER)
    platform: str
    python_version: str
    conda: list[Archive]
    pip: list[Archive]
    prefix_files: list[list[str]] = field(default_factory=list)  # [relative path, "text"|"binary"]


def check_platform(lock: Path, platform: str) -> str:
    """The lock's sha256 (hex); refuses a platform the lock does not have, naming the ones it has."""
    from envctl.lock.lockfile import read_lock_meta

    meta = read_lock_meta(lock)
    if platform not in meta.platforms:
        raise EnvctlError(
            f"the lock has no {platform} part; it covers {', '.join(meta.platforms) or 'no platform'}",
            file=lock, hint="Pick one of those with --platform, or add the platform to the target and re-lock.",
        )
    return meta.sha256.split(":", 1)[1]


def materialise(lock: Path, target, platform: str, dest: Path, progress=None) -> Materialised:
    """Link the lock's `platform` part into `dest` (new folder), relocatable; return what went in."""
    from envctl.create.conda_install import conda_records, read_lock_entries
    from envctl.lock.lockfile import load_lock

    check_platform(lock, platform)
    conda, pip = read_lock_entries(load_lock(lock), target.name, platform)
    _say(progress, "fetch", f"checking {len(conda)} conda packages and {len(pip)} wheels against the lock")
    conda_files = [fetch("conda", e.name, e.version, e.url, e.sha256, e.md5, lock, progress) for e in conda]
    pip_files = [fetch("pip", p.name, p.version, p.url, p.sha256, None, lock, progress) for p in pip]
    python = next((e.version for e in conda if e.name == "python"), "")
    dest.mkdir(parents=True)
    if conda:
        _say(progress, "conda", f"linking {len(conda)} conda packages for {platform}")
        _link_conda(conda_records(conda, lock), dest, platform, lock)
    if pip:
        if not python:
            raise EnvctlError(f"the lock has pip packages but no conda python for {platform}", file=lock)
        _say(progress, "pip", f"installing {len(pip)} wheels for {platform} (python {python})")
        _install_pip(pip, pip_files, target, platform, python, dest)
    _clean_conda_meta(dest)
    result = Materialised(dest, platform, python, conda_files, pip_files)
    result.prefix_files = record_prefix_files(dest)
    return result


def _say(progress, event: str, message: str) -> None:
    if progress is not None:
        progress(event, message=message)


def _link_conda(records: list[Any], dest: Path, platform: str, lock: Path) -> None:
    import asyncio

    import rattler

    try:
        asyncio.run(rattler.install(
            records, target_prefix=dest, alternative_target_prefix=PLACEHOLDER,
            platform=rattler.Subdir(platform), installed_packages=[], show_progress=False,
            execute_link_scripts=False,  # they would run on this machine, not the target
        ))
    except Exception as exc:
        raise PackFailed(f"linking the conda packages for {platform} failed: {exc}", file=lock) from None


def _install_pip(pip: list, files: list[Archive], target, platform: str, python: str, dest: Path) -> None:
    from envctl.core.process import uv_binary, without_host_python
    from envctl.create.pip_install import pip_error, verify_pip
    from envctl.host.platform import virtual_packages
    from envctl.lock.pip_resolve import uv_platform

    mm = ".".join(python.split(".")[:2])
    site = dest / "lib" / f"python{mm}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    reqs = dest.parent / "requirements.txt"
    # The checked local copies, so uv installs exactly the bytes that go into the bundle.
    reqs.write_text("".join(f"{a.name} @ {a.path.as_uri()} --hash=sha256:{a.sha256}\n" for a in files), encoding="utf-8")
    from envctl.lock.pip_resolve import PipResolveError

    try:
        python_platform, extra_env = uv_platform(platform, virtual_packages(target, platform))
    except PipResolveError as exc:
        raise EnvctlError(f"cannot install the pip part for {platform}: {exc}") from None
    cmd = [uv_binary(), "pip", "install", "--python", sys.executable, "--python-platform", python_platform,
           "--python-version", mm, "--target", str(site), "--no-deps", "--require-hashes", "--no-index",
           "--no-build", "--no-config", "-r", str(reqs)]
    proc = subprocess.run(cmd, env=without_host_python() | extra_env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise pip_error(proc.stderr or proc.stdout, pip)
    verify_pip(dest, pip)
    _move_scripts(site, dest, mm)
    _record_locked_urls(site, files)


def _record_locked_urls(site: Path, files: list[Archive]) -> None:
    """direct_url.json names the locked URL, not the packing machine's copy of the wheel."""
    by_file = {a.path.as_uri(): a.url.split("#", 1)[0] for a in files}
    for path in site.glob("*.dist-info/direct_url.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("url") in by_file:
            data["url"] = by_file[data["url"]]
            path.write_text(json.dumps(data), encoding="utf-8")


def _move_scripts(site: Path, dest: Path, mm: str) -> None:
    """uv --target puts console scripts in site-packages/bin: move them to <prefix>/bin, placeholder shebang."""
    scripts = site / "bin"
    if not scripts.is_dir():
        return
    bindir = dest / "bin"
    bindir.mkdir(exist_ok=True)
    moved = set()
    for entry in sorted(scripts.iterdir()):
        data = entry.read_bytes()
        if data.startswith(b"#!"):
            data = _placeholder_shebang(data, mm)
        out = bindir / entry.name
        if out.exists():
            continue  # a conda package already provides it (pip's own `pip`)
        out.write_bytes(data)
        os.chmod(out, 0o755)
        moved.add(entry.name)
    shutil.rmtree(scripts)
    # RECORD paths are relative to site-packages; the scripts now live three levels up.
    for record in site.glob("*.dist-info/RECORD"):
        rows = list(csv.reader(record.read_text(encoding="utf-8").splitlines()))
        changed = False
        for row in rows:
            if row and row[0].startswith("bin/"):
                name = row[0][4:]
                row[0] = f"../../../bin/{name}"
                if name in moved:  # the shebang changed, so the wheel's hash no longer applies
                    row[1:] = ["", ""]
                changed = True
        if changed:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            record.write_text(buf.getvalue(), encoding="utf-8")


def _placeholder_shebang(data: bytes, mm: str) -> bytes:
    """Replace the interpreter line uv wrote (the packing machine's python) with the env's own."""
    interp = f"#!{PLACEHOLDER}/bin/python{mm}".encode()
    lines = data.split(b"\n")
    if lines[0] == b"#!/bin/sh" and len(lines) > 2 and lines[1].startswith(b"'''exec'"):
        return interp + b"\n" + b"\n".join(lines[3:])  # uv's sh trampoline for long paths
    return interp + b"\n" + b"\n".join(lines[1:])


def _clean_conda_meta(dest: Path) -> None:
    """Drop the packing machine's cache paths from conda's records (they mean nothing on the device)."""
    meta = dest / "conda-meta"
    for record_file in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        for key in ("extracted_package_dir", "package_tarball_full_path"):
            if key in record:
                record[key] = None
        if isinstance(record.get("link"), dict):
            record["link"]["source"] = None
        record_file.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def record_prefix_files(prefix: Path) -> list[list[str]]:
    """Every file holding the placeholder, as conda's has_prefix: [path, text|binary]; refuses the build folder."""
    needle = PLACEHOLDER.encode()
    build = [str(prefix).encode(), os.path.realpath(prefix).encode()]
    found: list[list[str]] = []
    for root, dirs, files in os.walk(prefix):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            rel = os.path.relpath(path, prefix)
            for b in build:
                if b in data:
                    raise PackFailed(f"{rel} names the folder the env was built in ({b.decode()}); "
                                     "it would not survive the move")
            if needle in data:
                found.append([rel, "binary" if b"\0" in data else "text"])
    return found
