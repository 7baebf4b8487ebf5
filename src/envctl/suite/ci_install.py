"""How generated CI installs envctl: from source, never by a bare name from an index.

The PyPI name `envctl` belongs to an unrelated project, and any bare name
resolved against an index can be taken over by whoever publishes a matching
version there. So a generated workflow installs envctl from one of:

1. the checked-out repository, when the project is envctl's own (or lives
   inside it): a path such as `.` or `../..`;
2. a VCS URL pinned to a full commit, `envctl-onnx @ git+URL@<40 hex>`:
   taken from how the running envctl was installed (PEP 610
   `direct_url.json`), or given with `--install`;
3. a local path given with `--install` (e.g. a vendored copy in the repo).

Anything else is refused with a clear error naming `--install`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from envctl.core.errors import EnvctlError

__all__ = ["DIST_NAME", "install_spec", "check_install_spec"]

DIST_NAME = "envctl-onnx"  # pyproject's [project].name; the command and the import package stay `envctl`
_COMMIT = re.compile(r"@[0-9a-f]{40}(#.*)?$")
_EXAMPLE = f'"{DIST_NAME} @ git+https://github.com/<org>/<repo>@<full commit sha>" or a path such as ./tools/envctl'


def _is_path(spec: str) -> bool:
    return spec in (".", "..") or spec.startswith(("./", "../", "/")) or bool(re.match(r"^[A-Za-z]:[\\/]", spec))


def check_install_spec(spec: str) -> str:
    """`spec` if it installs from source (a path, or a VCS URL pinned to a commit); else EnvctlError."""
    spec = spec.strip()
    if not spec:
        raise EnvctlError(f"--install is empty: give {_EXAMPLE}.")
    if _is_path(spec):
        return spec
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        req = None
    url = req.url if req is not None else (spec if "://" in spec else None)
    if url is None:
        raise EnvctlError(
            f"--install {spec!r} names a package for pip to look up in an index; CI would install whatever "
            f"that index serves under the name (PyPI's `envctl` is an unrelated project). "
            f"Install envctl from its source instead: {_EXAMPLE}.")
    if url.startswith("git+") and not _COMMIT.search(url):
        raise EnvctlError(
            f"--install {spec!r}: a git URL must pin a full commit (…@<40 hex digits>), "
            f"so CI installs the reviewed code and not whatever the branch or tag points at now.")
    if not url.startswith(("git+", "file:")) and "#sha256=" not in url:
        raise EnvctlError(
            f"--install {spec!r}: an archive URL must carry its hash (#sha256=…), or use {_EXAMPLE}.")
    return spec


def _own_checkout(project: Path, checkout: Path) -> Path | None:
    """The folder, at or above the project and inside the checkout, whose pyproject is envctl's."""
    project = project.absolute()
    for folder in (project, *project.parents):
        try:
            text = (folder / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            text = ""
        if re.search(rf'^name\s*=\s*"{re.escape(DIST_NAME)}"\s*$', text, re.M):
            return folder
        if folder == checkout:
            break
    return None


def _installed_from_vcs() -> str | None:
    """`envctl-onnx @ git+URL@commit` when the running envctl was installed from a VCS URL (PEP 610)."""
    from importlib import metadata

    try:
        raw = metadata.distribution(DIST_NAME).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        info = json.loads(raw or "null")
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    vcs = info.get("vcs_info") or {}
    commit, url = vcs.get("commit_id", ""), info.get("url", "")
    if vcs.get("vcs") != "git" or not re.fullmatch(r"[0-9a-f]{40}", commit) or url.startswith("file:"):
        return None
    sub = info.get("subdirectory")
    return f"{DIST_NAME} @ git+{url}@{commit}" + (f"#subdirectory={sub}" if sub else "")


def install_spec(project: Path, checkout: Path, given: str | None = None) -> str:
    """What a generated job pip-installs, run from the project folder (see the module docstring)."""
    if given is not None:
        return check_install_spec(given)
    own = _own_checkout(project, checkout)
    if own is not None:
        rel = Path(os.path.relpath(own, project.absolute())).as_posix()
        return "." if rel == "." else rel if rel.startswith("..") else f"./{rel}"
    pinned = _installed_from_vcs()
    if pinned is not None:
        return pinned
    raise EnvctlError(
        "cannot tell where CI should install envctl from: this is not envctl's own repository, and the "
        "envctl running here was not installed from a git URL pinned to a commit. "
        f"Pass --install with {_EXAMPLE}.")
