"""What a lock must hold to count as a lock: checked against what it claims, without conda-lock.

A lock cut short just before an entry, or with `package: []`, still has its
metadata intact (conda-lock writes metadata first), so comparing recorded
hashes alone calls it fresh and `create` builds an empty env. Here the lock is
checked against itself and its spec:

* every package entry is a mapping of plain, one-line strings, for one of the
  lock's platforms, from conda or pip, with a URL of the shape its installer
  needs (a conda URL ends in <channel>/<subdir>/<file>; a newline in a pip
  URL would be a second requirements line);
* no package appears twice for one platform;
* every platform has entries, and its `content_hash` is the one envctl
  computes from the spec hash, channels and virtual packages;
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
from typing import Any

import yaml

from envctl.core.limits import control_char, short

_CONDA_FILE = re.compile(r"[^/]+\.(conda|tar\.bz2)")
_NAME_END = re.compile(r"[\s=<>!~\[;@(]")


def _problem_in_entry(entry: Any, index: int, platforms: tuple[str, ...]) -> str | None:
    where = f"package entry {index + 1}"
    if not isinstance(entry, dict):
        return f"{where} is not a mapping"
    for key in ("name", "version", "manager", "platform", "url"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"{where} has no '{key}' string (got {short(value)})"
        found = control_char(value)
        if found:
            return f"{where}: '{key}' {short(value)} contains {found}"
    name = entry["name"]
    if entry["manager"] not in ("conda", "pip"):
        return f"{where} ({name}): manager {short(entry['manager'])} is neither conda nor pip"
    if entry["platform"] not in platforms:
        return f"{where} ({name}): platform {short(entry['platform'])} is not one of the lock's platforms"
    url = entry["url"].split("#", 1)[0]
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url) or " " in url:
        return f"{where} ({name}): url {short(entry['url'])} is not a URL"
    if entry["manager"] == "conda" and (url.count("/") < 4 or not _CONDA_FILE.fullmatch(url.rsplit("/", 1)[1])):
        return f"{where} ({name}): conda url {short(entry['url'])} does not end in <channel>/<subdir>/<package file>"
    hashes = entry.get("hash")
    if not isinstance(hashes, dict):
        hashes = {}
    if entry["manager"] == "pip" and not (isinstance(hashes.get("sha256"), str) and hashes["sha256"]):
        return f"pip package {name} {entry['version']} has no sha256 in the lock; refusing to install it unchecked"
    if not any(isinstance(v, str) and v for v in hashes.values()):
        return f"{where} ({name} {entry['version']}) has no hash in the lock"
    return None


def structure_problem(doc: Any) -> str | None:
    """Why the parsed lock `doc` cannot be a whole lock (entries, duplicates, empty platforms), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return "not a conda-lock file (no `metadata` mapping)"
    platforms = doc["metadata"].get("platforms")
    if not isinstance(platforms, list) or not platforms or not all(isinstance(p, str) for p in platforms):
        return "the lock names no platforms"
    packages = doc.get("package")
    if not isinstance(packages, list):
        return "the lock has no `package` list"
    seen: set[tuple[str, str, str]] = set()
    counts = dict.fromkeys(platforms, 0)
    for index, entry in enumerate(packages):
        problem = _problem_in_entry(entry, index, tuple(platforms))
        if problem:
            return problem
        key = (entry["platform"], entry["manager"], entry["name"].lower().replace("_", "-"))
        if key in seen:
            return f"{entry['name']} appears twice for {entry['platform']} ({entry['manager']})"
        seen.add(key)
        counts[entry["platform"]] += 1
    empty = [p for p, n in counts.items() if n == 0]
    if empty:
        return f"the lock has no packages for {', '.join(empty)} (cut short?)"
    return None


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


def missing_dependencies(doc: dict) -> str | None:
    """A locked package whose recorded dependency is not locked for its platform (an entry cut away)."""
    have: dict[str, set[str]] = {}
    for entry in doc["package"]:
        have.setdefault(entry["platform"], set()).add(_norm(entry["name"]))
    for entry in doc["package"]:
        deps = entry.get("dependencies") or {}
        if not isinstance(deps, dict):
            return f"{entry['name']} ({entry['platform']}): 'dependencies' is not a mapping"
        for dep in deps:
            name = _norm(str(dep).split("[", 1)[0])
            if name and not name.startswith("__") and name not in have[entry["platform"]]:
                return (f"{entry['name']} needs {dep}, which the lock does not have for {entry['platform']} "
                        "(an entry was cut away?)")
    return None


def missing_specs(doc: dict, conda: list[str], pip: list[str]) -> str | None:
    """The first spec of the environment.yml with no locked package on some platform, as a reason; or None."""
    from packaging.utils import canonicalize_name

    have: dict[tuple[str, str], set[str]] = {}
    for entry in doc["package"]:
        name = entry["name"].lower() if entry["manager"] == "conda" else canonicalize_name(entry["name"])
        have.setdefault((entry["platform"], entry["manager"]), set()).add(name)
    for platform in doc["metadata"]["platforms"]:
        for spec in conda:
            name = conda_name(spec)
            if name and not name.startswith("__") and name not in have.get((platform, "conda"), set()):
                return f"the spec asks for {name} (conda) but the lock has no {name} for {platform} (cut short?)"
        for requirement in pip:
            name = pip_name(requirement)
            if name and name not in have.get((platform, "pip"), set()):
                return f"the spec asks for {name} (pip) but the lock has no {name} for {platform} (cut short?)"
    return None


def _requested_name(requirement: str) -> str | None:
    """The name a pip requirement asks for, with or without markers (a root of the lock's closure)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _norm(Requirement(requirement).name)
    except InvalidRequirement:
        return None


def unrequested_packages(doc: dict, conda: list[str], pip: list[str]) -> str | None:
    """A locked package that nothing the spec asks for needs, on some platform, as a reason; or None."""
    roots = {_norm(conda_name(spec)) for spec in conda} | {n for n in map(_requested_name, pip) if n}
    for platform in doc["metadata"]["platforms"]:
        records: dict[str, list[dict]] = {}
        for entry in doc["package"]:
            if entry["platform"] == platform:
                records.setdefault(_norm(entry["name"]), []).append(entry)
        reached: set[str] = set()
        pending = [name for name in roots if name in records]
        while pending:
            name = pending.pop()
            if name in reached:
                continue
            reached.add(name)
            for entry in records[name]:
                deps = entry.get("dependencies") or {}
                pending.extend(n for n in (_norm(str(d).split("[", 1)[0]) for d in deps) if n in records)
        extra = sorted(set(records) - reached)
        if extra:
            names = ", ".join(f"{records[n][0]['name']} ({records[n][0]['manager']})" for n in extra[:5])
            return (f"the lock has {names} for {platform}, which nothing the spec asks for needs "
                    "(an entry added by hand, or a lock made from another spec?)")
    return None


def content_hash_problem(doc: dict, spec_hash: str | None, virtual_for) -> str | None:
    """A platform whose recorded content_hash is not the one its spec, channels and virtual packages give."""
    from envctl.lock.lockfile import content_hash

    meta = doc["metadata"]
    recorded = meta.get("content_hash")
    if not isinstance(recorded, dict):
        return "the lock has no content_hash per platform"
    channels = [c.get("url", "") if isinstance(c, dict) else str(c) for c in meta.get("channels") or []]
    for platform in meta["platforms"]:
        expected = content_hash(spec_hash or "", channels, platform, virtual_for(platform))
        if recorded.get(platform) != expected:
            return f"the content_hash recorded for {platform} is not the one its spec, channels and virtual packages give"
    return None


def parse(data: bytes) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(data.decode("utf-8"), Loader=loader)  # noqa: S506 - a SafeLoader
