"""`envctl list`: what is installed in an env, read from its files (nothing is run in it).

conda packages from `conda-meta/*.json`; pip packages from the `.dist-info`
folders in site-packages that no conda record owns (a conda package's own
dist-info is listed once, as conda).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.core.limits import MAX_JSON_BYTES, read_project_text


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    manager: str  # "conda" | "pip"
    build: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def installed_packages(prefix: Path) -> list[InstalledPackage]:
    prefix = Path(prefix)
    meta = prefix / "conda-meta"
    if not meta.is_dir() and not any(prefix.glob("lib/python*/site-packages")):
        raise EnvctlError(f"{prefix} is not an env (no conda-meta/, no site-packages)")
    found: list[InstalledPackage] = []
    owned: set[str] = set()
    for record in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        try:
            data = json.loads(read_project_text(record, MAX_JSON_BYTES, "package record"))  # a FIFO here must not hang
        except (OSError, ValueError, EnvctlError):
            continue  # envctl's own state file and anything unreadable are not packages
        if not isinstance(data, dict) or "name" not in data or "version" not in data:
            continue
        found.append(InstalledPackage(str(data["name"]), str(data["version"]), "conda", str(data.get("build", ""))))
        owned.update(part for f in data.get("files", []) for part in str(f).split("/")[:-1]
                     if part.endswith((".dist-info", ".egg-info")))
    for site in sorted(prefix.glob("lib/python*/site-packages")) + sorted(prefix.glob("Lib/site-packages")):
        for dist in metadata.distributions(path=[str(site)]):
            folder = Path(str(getattr(dist, "_path", ""))).name
            name = dist.metadata.get("Name") if dist.metadata else None
            if not name or folder in owned:
                continue
            found.append(InstalledPackage(name, dist.version, "pip"))
    return sorted(found, key=lambda p: (p.name.lower(), p.manager))
