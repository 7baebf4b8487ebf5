"""The pip part of a lock: exact wheels, hash-checked, no resolution.

`uv pip install --no-deps --require-hashes` installs exactly the locked
URLs (file:// included) and hardlinks from uv's cache, so a second env of
the same lock costs almost no disk. The env is built in a staging folder, so
uv writes the *staging* interpreter into console-script shebangs;
`rewrite_shebangs` points them at the final prefix before the swap.

Before that rewrite, every installed file is checked against its wheel's
RECORD (`verify_pip`): uv checks the wheel's sha256 when it downloads it, not
the unpacked files it later hardlinks out of its cache, so a cache file changed
since would otherwise go into every new env unnoticed.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from envctl.core.errors import EnvBroken, EnvctlError
from envctl.core.process import run_tied, signal_text, uv_binary, without_host_python
from envctl.lock.records import LockedPackage

# uv's wording (0.5 ... 0.13): "Hash mismatch for `name @ url`\n\n Expected:\n  sha256:..\n\n Computed:\n  sha256:.."
_HASH_MISMATCH = re.compile(
    r"Hash mismatch for `(?P<req>[^`]+)`\s*Expected:\s*(?P<expected>\S+)\s*Computed:\s*(?P<actual>\S+)",
    re.S,
)


def requirements_text(packages: list[LockedPackage]) -> str:
    lines = []
    for pkg in packages:
        if not pkg.sha256:
            raise EnvctlError(
                f"pip package {pkg.name} {pkg.version} has no sha256 in the lock; refusing to install it unchecked",
                hint="Re-lock the target (`envctl lock`).",
            )
        # A URL fragment (#sha256=...) would fight the --hash option.
        url = pkg.url.split("#", 1)[0]
        lines.append(f"{pkg.name} @ {url} --hash=sha256:{pkg.sha256}")
    return "\n".join(lines) + "\n"


def install_pip(packages: list[LockedPackage], *, python: Path, staging: Path, final: Path) -> None:
    """Install `packages` into the env whose interpreter is `python` (inside `staging`).

    Raises EnvctlError naming package, expected and actual hash when a wheel
    does not match the lock.
    """
    if not packages:
        return
    # Inside staging, so a killed create leaves nothing elsewhere; removed before the swap.
    reqs = staging / ".envctl-requirements.txt"
    reqs.write_text(requirements_text(packages), encoding="utf-8")
    cmd = [
        uv_binary(), "pip", "install",
        "--python", str(python),
        "--no-deps",            # the lock already holds the full, solved set
        "--require-hashes",
        "--no-index",           # every entry is a direct URL; never ask an index
        "--no-build",           # a locked sdist would run arbitrary build code
        "--no-config",          # a stray uv.toml must not change what goes in
        "--break-system-packages",  # this is our own fresh env, not a system one
        "-r", str(reqs),
    ]
    try:
        proc = run_tied(cmd, env=without_host_python(), capture_output=True, text=True, errors="replace")
    finally:
        reqs.unlink(missing_ok=True)
    if proc.returncode != 0:
        output = proc.stderr or proc.stdout
        if proc.returncode < 0:
            output = (output or "") + f"\nuv was killed by {signal_text(-proc.returncode)}"
        raise pip_error(output, packages)
    verify_pip(staging, packages)
    rewrite_shebangs(staging, final)


def verify_pip(staging: Path, packages: list[LockedPackage]) -> None:
    """Check the files uv installed into `staging` against their RECORDs; CorruptFiles if any differ."""
    from packaging.utils import canonicalize_name

    from envctl.create.verify import CorruptFiles, FileCheck, verify_files

    wanted = {canonicalize_name(p.name) for p in packages}
    checks: list[FileCheck] = []
    owner: dict[str, str] = {}
    join, normpath = os.path.join, os.path.normpath
    for record in sorted(staging.glob("lib/python*/site-packages/*.dist-info/RECORD")):
        info = record.parent
        try:
            if (info / "INSTALLER").read_text(encoding="utf-8").strip() != "uv":
                continue  # conda's own packages (pip) are checked by the conda side
            rows = list(csv.reader(record.read_text(encoding="utf-8").splitlines()))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        name = canonicalize_name(info.name[: -len(".dist-info")].rsplit("-", 1)[0])
        if name not in wanted:
            continue
        site = str(info.parent)
        for row in rows:
            # path,sha256=<urlsafe b64, no padding>,size ; RECORD itself and INSTALLER carry no hash
            if len(row) < 2 or not row[0] or not row[1].startswith(("sha256=", "sha384=", "sha512=")):
                continue
            path = normpath(join(site, row[0]))
            size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
            checks.append((path, row[1], size))
            owner[path] = name
    bad = verify_files(checks)
    if not bad:
        return
    found: dict[str, list[str]] = {}
    for bad_path in bad:
        found.setdefault(owner[str(bad_path)], []).append(os.path.relpath(bad_path, staging))

    def evict() -> None:
        run_tied([uv_binary(), "cache", "clean", *sorted(found)], env=without_host_python(),
                 capture_output=True, text=True, errors="replace")

    raise CorruptFiles("pip", found, evict)


def pip_error(output: str, packages: list[LockedPackage]) -> EnvctlError:
    match = _HASH_MISMATCH.search(output)
    if match:
        req = match["req"]
        name = req.split("@", 1)[0].strip()
        url = req.split("@", 1)[1].strip() if "@" in req else ""
        expected = match["expected"].removeprefix("sha256:")
        actual = match["actual"].removeprefix("sha256:")
        return EnvBroken(
            f"pip package {name}: the wheel's sha256 does not match the lock "
            f"(expected {expected}, actual {actual}; {url}). Nothing was changed.",
            hint="The lock is the source of truth: re-lock (`envctl lock`) if the wheel changed on purpose.",
        )
    tail = "\n".join(output.strip().splitlines()[-15:])
    return EnvBroken(
        f"installing the {len(packages)} pip package(s) of the lock failed; uv said:\n{tail}",
    )


def rewrite_shebangs(staging: Path, final: Path) -> int:
    """Point scripts under staging/bin that name the staging folder at `final`.

    uv writes `#!<staging>/bin/python` (or, for long paths, a /bin/sh
    trampoline naming it on line 2); both spellings of the staging path
    (as given and resolved) are replaced. Returns the number of files changed.
    """
    bindir = staging / "bin"
    if not bindir.is_dir():
        return 0
    olds = {str(staging) + "/", os.path.realpath(staging) + "/"}
    olds_b = sorted((o.encode() for o in olds), key=len, reverse=True)
    new_b = (str(final) + "/").encode()
    changed = 0
    for entry in os.scandir(bindir):
        if not entry.is_file(follow_symlinks=False):
            continue
        with open(entry.path, "rb") as handle:
            head = handle.read(2)
            if head != b"#!":
                continue
            data = head + handle.read()
        if not any(o in data for o in olds_b):
            continue
        for old in olds_b:
            data = data.replace(old, new_b)
        mode = entry.stat(follow_symlinks=False).st_mode
        # Write a new file rather than in place: the old inode may be hardlinked into uv's cache.
        tmp = entry.path + ".envctl-tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, entry.path)
        changed += 1
    return changed
