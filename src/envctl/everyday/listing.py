"""`envctl list`: what is installed in an env, read from its files (nothing is run in it).

conda packages from `conda-meta/*.json`; pip packages from the `.dist-info`
folders in site-packages that no conda record owns (a conda package's own
dist-info is listed once, as conda).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.create.envrecords import Warn, conda_records, distributions


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    manager: str  # "conda" | "pip"
    build: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def installed_packages(prefix: Path, warn: Warn | None = None) -> list[InstalledPackage]:
    """Every package in the env; a malformed record is skipped and reported through `warn`."""
    prefix = Path(prefix)
    meta = prefix / "conda-meta"
    sites = sorted(prefix.glob("lib/python*/site-packages")) + sorted(prefix.glob("Lib/site-packages"))
    if not meta.is_dir() and not sites:
        raise EnvctlError(f"{prefix} is not an env (no conda-meta/, no site-packages)")
    warn = warn or (lambda message: None)
    found: list[InstalledPackage] = []
    owned: set[str] = set()
    for record in conda_records(prefix, warn):
        found.append(InstalledPackage(record.name, record.version, "conda", record.build))
        owned |= record.dist_folders()
    for site in sites:
        for dist in distributions(site, warn):
            if dist.folder not in owned:
                found.append(InstalledPackage(dist.name, dist.version, "pip"))
    return sorted(found, key=lambda p: (p.name.lower(), p.manager))
