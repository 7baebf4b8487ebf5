"""What a lock must hold to count as a lock: its parsed packages checked against what it claims.

A lock cut short just before an entry, or with `package: []`, still has its
metadata intact (conda-lock writes metadata first), so comparing recorded
hashes alone calls it fresh and `create` builds an empty env. Here the lock is
checked against itself and its spec:

* (the format, when it parses the bytes: conda_lock_format.py) every entry is
  plain one-line strings, for one of the lock's platforms, from conda or pip,
  with a URL of the shape its installer needs and a hash; no package appears
  twice for one platform; no platform is empty;
* every platform's recorded content hash is the one envctl computes from the
  spec hash, channels and virtual packages;
* every package the spec asks for (conda dependency names, pip requirement
  names) is locked for every platform, and so is every dependency a locked
  package records (a lock cut short just before a dependency's entry);
* every locked package is reachable from what the spec asks for through the
  locked records' dependencies (conda and pip alike): a package nothing asked
  for (an entry added by hand, a lock of another spec spliced in) is refused.
  A solver and pip's resolver only ever lock that closure.

What the records themselves claim (a dependency edited out of a record
together with the package) cannot be seen in the lock alone; create checks
the built env against the packages' own metadata (create/closure.py).

Used by `check_locks` (lock --check, status, create through the pipeline)
and by create itself before anything is linked.
"""

from __future__ import annotations

import re
from typing import Callable

from envctl.lock.records import LockDocument, content_hash

_NAME_END = re.compile(r"[\s=<>!~\[;@(]")


def conda_name(spec: str) -> str:
    """The package name of a conda match spec ('conda-forge::numpy >=1.26' -> 'numpy')."""
    spec = spec.strip().split("::", 1)[-1]
    return _NAME_END.split(spec, 1)[0].lower()


def pip_name(requirement: str) -> str | None:
    """The canonical name of a pip requirement, or None where markers may leave it out on some platform."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None
    return None if req.marker is not None else canonicalize_name(req.name)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_dependencies(doc: LockDocument) -> str | None:
    """A locked package whose recorded dependency is not locked for its platform (an entry cut away)."""
    have: dict[str, set[str]] = {}
    for pkg in doc.packages:
        have.setdefault(pkg.platform, set()).add(_norm(pkg.name))
    for pkg in doc.packages:
        for dep in pkg.dependency_names:
            name = _norm(dep.split("[", 1)[0])
            if name and not name.startswith("__") and name not in have[pkg.platform]:
                return (f"{pkg.name} needs {dep}, which the lock does not have for {pkg.platform} "
                        "(an entry was cut away?)")
    return None


def missing_specs(doc: LockDocument, conda: list[str], pip: list[str]) -> str | None:
    """The first spec of the environment.yml with no locked package on some platform, as a reason; or None."""
    from packaging.utils import canonicalize_name

    have: dict[tuple[str, str], set[str]] = {}
    for pkg in doc.packages:
        name = pkg.name.lower() if pkg.manager == "conda" else canonicalize_name(pkg.name)
        have.setdefault((pkg.platform, pkg.manager), set()).add(name)
    for platform in doc.header.platforms:
        for spec in conda:
            name = conda_name(spec)
            if name and not name.startswith("__") and name not in have.get((platform, "conda"), set()):
                return f"the spec asks for {name} (conda) but the lock has no {name} for {platform} (cut short?)"
        for requirement in pip:
            pip_wanted = pip_name(requirement)
            if pip_wanted and pip_wanted not in have.get((platform, "pip"), set()):
                return (f"the spec asks for {pip_wanted} (pip) but the lock has no {pip_wanted} for {platform} "
                        "(cut short?)")
    return None


def _requested_name(requirement: str) -> str | None:
    """The name a pip requirement asks for, with or without markers (a root of the lock's closure)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _norm(Requirement(requirement).name)
    except InvalidRequirement:
        return None


def unrequested_packages(doc: LockDocument, conda: list[str], pip: list[str]) -> str | None:
    """A locked package that nothing the spec asks for needs, on some platform, as a reason; or None."""
    roots = {_norm(conda_name(spec)) for spec in conda} | {n for n in map(_requested_name, pip) if n}
    for platform in doc.header.platforms:
        records: dict[str, list] = {}
        for pkg in doc.for_platform(platform):
            records.setdefault(_norm(pkg.name), []).append(pkg)
        reached: set[str] = set()
        pending = [name for name in roots if name in records]
        while pending:
            name = pending.pop()
            if name in reached:
                continue
            reached.add(name)
            for pkg in records[name]:
                pending.extend(n for n in (_norm(d.split("[", 1)[0]) for d in pkg.dependency_names) if n in records)
        extra = sorted(set(records) - reached)
        if extra:
            names = ", ".join(f"{records[n][0].name} ({records[n][0].manager})" for n in extra[:5])
            return (f"the lock has {names} for {platform}, which nothing the spec asks for needs "
                    "(an entry added by hand, or a lock made from another spec?)")
    return None


def content_hash_problem(doc: LockDocument, spec_hash: str | None, virtual_for: Callable[[str], dict[str, str]]) -> str | None:
    """A platform whose recorded content hash is not the one its spec, channels and virtual packages give."""
    if not doc.content_hashes:
        return "the lock has no content hash per platform"
    for platform in doc.header.platforms:
        expected = content_hash(spec_hash or "", list(doc.header.channels), platform, virtual_for(platform))
        if doc.content_hashes.get(platform) != expected:
            return f"the content hash recorded for {platform} is not the one its spec, channels and virtual packages give"
    return None
