"""The built env holds every dependency its packages declare, by the packages' own metadata.

The lock check (lock/lockcheck.py) proves the lock is closed under the
dependencies its records list. A record can lie, though: a package removed
from a lock together with the lines naming it in its dependents' records
leaves a lock that is closed and complete on paper, and an env that fails at
import. So before the swap, the staging env is checked against what the
installed packages themselves declare, read from files whose hashes were
already verified:

* conda: each `conda-meta/*.json` record's `depends` (rattler writes them
  from the package's own index.json) must name an installed package;
* pip: each installed distribution's `Requires-Dist` whose markers hold in
  this env (evaluated with the env's own interpreter facts) must be installed
  at a version its specifier allows.

A gap is an EnvctlError and the previous env stays; nothing is swapped in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from envctl.core.errors import EnvBroken, EnvctlError
from envctl.create.envrecords import conda_records, distributions

# PEP 508's marker environment, computed by the env's interpreter (standard library only).
_MARKER_PROBE = """
import json, os, platform, sys
i = sys.implementation.version
v = f"{i.major}.{i.minor}.{i.micro}" + ("" if i.releaselevel == "final" else i.releaselevel[0] + str(i.serial))
print(json.dumps({"implementation_name": sys.implementation.name, "implementation_version": v,
  "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
  "platform_system": platform.system(), "platform_version": platform.version(),
  "python_full_version": platform.python_version(), "platform_python_implementation": platform.python_implementation(),
  "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform}))
"""


def _conda_name(spec: str) -> str:
    from envctl.lock.lockcheck import conda_name

    return conda_name(spec)


def _refuse(message: str) -> None:
    raise EnvBroken(f"the new env is unreadable: {message}")


def conda_gaps(prefix: Path) -> list[str]:
    """'<package> needs <spec>, which is not installed' for each conda dependency with no installed package."""
    records = conda_records(prefix, warn=_refuse)
    installed = {r.name.lower() for r in records}
    gaps = []
    for record in records:
        for spec in record.depends:
            name = _conda_name(spec)
            if name and not name.startswith("__") and name not in installed:
                gaps.append(f"{record.name} (conda) needs {spec}, which is not installed")
    return gaps


def marker_environment(python: Path) -> dict[str, str]:
    from envctl.core.process import without_host_python
    from envctl.core.limits import parse_json

    try:
        proc = subprocess.run([str(python), "-I", "-c", _MARKER_PROBE], env=without_host_python(), capture_output=True,
                              text=True, errors="replace", timeout=120)
        data = parse_json(proc.stdout.strip().splitlines()[-1], "env's marker facts") if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, IndexError, EnvctlError):
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise EnvBroken(f"the new env's python ({python}) did not report its platform facts")
    return data


def pip_gaps(prefix: Path, markers: dict[str, str]) -> list[str]:
    """'<dist> needs <requirement>, ...' for each declared dependency of a pip-installed package that is
    missing or at a version it excludes (conda's own python packages answer to their conda records)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    dists = [d for site in sorted(Path(prefix).glob("lib/python*/site-packages")) for d in distributions(site, _refuse)]
    versions = {canonicalize_name(d.name): d.version for d in dists}
    conda_owned = set().union(*(r.dist_folders() for r in conda_records(prefix, warn=_refuse)))
    gaps = []
    for dist in (d for d in dists if d.folder not in conda_owned):
        for text in dist.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                gaps.append(f"{dist.name} declares an unreadable requirement {text!r}")
                continue
            if req.marker is not None and not req.marker.evaluate(dict(markers, extra="")):
                continue
            have = versions.get(canonicalize_name(req.name))
            if have is None:
                gaps.append(f"{dist.name} (pip) needs {req}, which is not installed")
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                gaps.append(f"{dist.name} (pip) needs {req}, but {req.name} {have} is installed")
    return gaps


def check_closure(staging: Path, lock: Path) -> None:
    """EnvctlError when the env in `staging` lacks a dependency one of its packages declares."""
    gaps = conda_gaps(staging)
    python = staging / "bin" / "python"
    if python.exists() and any(staging.glob("lib/python*/site-packages/*.dist-info")):
        gaps += pip_gaps(staging, marker_environment(python))
    if gaps:
        more = f" (and {len(gaps) - 3} more)" if len(gaps) > 3 else ""
        raise EnvBroken(
            f"the lock is not the whole env: {'; '.join(gaps[:3])}{more}. Nothing was swapped in: "
            "the previous env (if any) is unchanged.",
            file=lock,
            hint="The lock's records leave out what these packages need (edited by hand?): re-lock with `envctl lock`.")
