"""Where a project keeps each stage's files: the one home for these names.

    <root>/envs/matrix.yaml                      the matrix
    <root>/envs/<target>/environment.yml         render
    <root>/envs/<target>/virtual-packages.yml    render (for conda-lock users)
    <root>/locks/<target><format suffix>         lock (its file name: lock/lockfile.lock_path)
    <root>/.envctl/envs/<target>                 create (the env; git-ignored)
    <root>/certs/<target>.json                   certify
    <root>/certs/<target>.device.json            certify --import (a bundle's device certificate)

Functions take a target name or anything with a `.name` (a matrix Target), so
that this module needs nothing from the later stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

ENV_FILE = "environment.yml"
VIRTUAL_PACKAGES_FILE = "virtual-packages.yml"
DEFAULT_MATRIX = Path("envs/matrix.yaml")


class _Named(Protocol):
    @property
    def name(self) -> str: ...  # read-only, so a frozen dataclass (matrix's Target) fits


TargetRef = Union[str, _Named]


def target_name(target: TargetRef) -> str:
    return target if isinstance(target, str) else target.name


_name = target_name


def project_root(matrix_path: Path) -> Path:
    """The project a matrix belongs to: the folder holding envs/ (or the matrix's own folder)."""
    parent = Path(matrix_path).absolute().parent
    return parent.parent if parent.name == "envs" else parent


def env_dir(root: Path, target: TargetRef) -> Path:
    return Path(root) / "envs" / _name(target)


def env_file(root: Path, target: TargetRef) -> Path:
    return env_dir(root, target) / ENV_FILE


def virtual_packages_file(root: Path, target: TargetRef) -> Path:
    return env_dir(root, target) / VIRTUAL_PACKAGES_FILE


def locks_dir(root: Path) -> Path:
    return Path(root) / "locks"


def envs_home(root: Path) -> Path:
    """Where envctl builds envs: <root>/.envctl/envs."""
    return Path(root).absolute() / ".envctl" / "envs"


def default_prefix(root: Path, target: TargetRef) -> Path:
    return envs_home(root) / _name(target)


def state_home(root: Path) -> Path:
    """<root>/.envctl: envctl's own files in a project (envs, caches), git-ignored."""
    return Path(os.path.abspath(root)) / ".envctl"


@dataclass(frozen=True)
class EnvPrefix:
    """Where a target's env goes: the path, and the project it was chosen in.

    Whether the env lives in the project's own state folder (the default,
    .envctl/envs/<target>, or anything else under .envctl/) follows from the
    path itself, never from a flag a caller passes: such a prefix must not
    lead out of the project through a symlink, and .envctl/.gitignore must
    exist before it is built. Any other prefix is the user's explicit choice.
    """

    root: Path
    path: Path

    @classmethod
    def of(cls, root: Path, target: TargetRef, chosen: Path | None = None) -> "EnvPrefix":
        """The prefix `chosen` (default: the target's default prefix), made absolute."""
        path = default_prefix(root, target) if chosen is None else Path(chosen)
        return cls(Path(os.path.abspath(root)), Path(os.path.abspath(path)))

    @property
    def in_project_state(self) -> bool:
        state = state_home(self.root)
        return self.path == state or state in self.path.parents

    def checked(self, action: str = "write") -> Path:
        """The path; one in the project's state folder is refused when a symlink (a committed .envctl ->
        elsewhere) leads it out of the project. Every command that builds or uses an env goes through this."""
        if self.in_project_state:
            from envctl.core.atomic import ensure_inside

            ensure_inside(self.root, self.path, "env prefix", action=action)
        return self.path


def certs_dir(root: Path) -> Path:
    return Path(root) / "certs"


def cert_path(root: Path, target: TargetRef) -> Path:
    return certs_dir(root) / f"{_name(target)}.json"


def device_cert_path(root: Path, target: TargetRef) -> Path:
    """certs/<target>.device.json: a bundle's device certificate, once imported (`certify --import`)."""
    return Path(root) / "certs" / f"{target_name(target)}.device.json"


def env_python(prefix: Path) -> Path:
    """An env's interpreter (conda layout: python.exe at the top on Windows)."""
    import os

    return Path(prefix) / ("python.exe" if os.name == "nt" else "bin/python")


def cache_home() -> Path:
    """envctl's own cache (parsed locks, hash ledgers): $ENVCTL_CACHE_DIR, else the XDG cache."""
    import os

    base = os.environ.get("ENVCTL_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envctl"
