"""The lock stage: envs/<target>/environment.yml -> locks/<target>.conda-lock.yml.

For every platform of the target, the conda part is solved with py-rattler
against the target's virtual packages (never the host's: a CUDA target locks
on a CPU-only runner, a CPU target gets no `__cuda`), then the pip part is
resolved for that platform and the Python the conda solution holds. Both go
into one conda-lock file, written only when every platform succeeded, by an
atomic rename: an interrupted lock leaves the previous file as it was.

`read_lock_meta` and `check_locks` import neither the format's own tools nor rattler, so
freshness checks stay fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from envctl import __version__
from envctl.core.atomic import ensure_inside, write_bytes_atomic
from envctl.core.errors import EnvctlError, SolveFailed, WriteFailed
from envctl.core.limits import read_project_text
from envctl.core.paths import env_file
from envctl.core.progress import Progress
from envctl.lock.lockfile import load_lock, lock_format, lock_path, read_lock_meta, remember, source_path
from envctl.lock.records import LockedPackage, LockInfo, LockRequest, PlatformLock, content_hash
from envctl.matrix.loader import Target
from envctl.lock.render import recorded_target_hash, spec_hash

__all__ = [
    "LockInfo", "LockResult", "PlatformStats", "StaleLock",
    "check_locks", "lock_path", "lock_target", "read_lock_meta",
]


@dataclass(frozen=True)
class PlatformStats:
    platform: str
    conda_packages: int
    pip_packages: int
    solve_seconds: float
    pip_seconds: float


@dataclass(frozen=True)
class LockResult:
    target: str
    path: Path
    platforms: tuple[str, ...]
    stats: dict[str, PlatformStats]
    changed: bool  # False when the new lock is byte-identical to the old one
    sha256: str  # of the written file, as read_lock_meta reports it
    warnings: tuple[str, ...] = ()  # e.g. why the lock will not work on another machine

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {p: {"conda": s.conda_packages, "pip": s.pip_packages} for p, s in self.stats.items()}

    @property
    def seconds(self) -> dict[str, dict[str, float]]:
        return {p: {"solve": s.solve_seconds, "pip": s.pip_seconds} for p, s in self.stats.items()}


@dataclass(frozen=True)
class StaleLock:
    target: str
    reason: str
    kind: str = "stale"  # missing | stale | unreadable | unrendered
    path: str | None = None


@dataclass
class _EnvSpec:
    channels: list[str]
    platforms: list[str]
    conda: list[str]
    pip: list[str]
    pip_options: dict[str, Any] = field(default_factory=dict)


def _str_list(value: Any, what: str, path: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EnvctlError(f"'{what}' must be a list of strings", file=path, key=what)
    return list(value)


# What envctl's lock stage reads from an environment.yml; any other key (conda's `variables:`,
# `prefix:`) would be silently left out of the lock, so it is refused.
ENV_KEYS = ("name", "channels", "platforms", "dependencies", "envctl", "pip-repositories")


def _known_keys(mapping: dict, known: tuple[str, ...], path: Path, where: str) -> None:
    from envctl.core.errors import did_you_mean

    for key in mapping:
        if key not in known:
            line = mapping.line_of(key) if hasattr(mapping, "line_of") else None
            raise EnvctlError(f"unknown key '{where}{key}': envctl's lock would leave it out.{did_you_mean(str(key), known)}",
                              file=path, line=line, key=f"{where}{key}",
                              hint=f"An environment.yml here takes {', '.join(known)}; change the matrix and run `envctl render`.")


def _read_spec(path: Path, text: str) -> _EnvSpec:
    from envctl.core.yamlsource import parse_yaml

    doc = parse_yaml(text, path, "environment.yml")
    if not isinstance(doc, dict):
        raise EnvctlError("an environment.yml must be a mapping", file=path)
    _known_keys(doc, ENV_KEYS, path, "")
    if isinstance(doc.get("envctl"), dict):
        _known_keys(doc["envctl"], ("pip_options",), path, "envctl.")
        if isinstance(doc["envctl"].get("pip_options"), dict):
            from envctl.matrix.fields import PIP_OPTION_KEYS

            _known_keys(doc["envctl"]["pip_options"], PIP_OPTION_KEYS, path, "envctl.pip_options.")
    conda: list[str] = []
    pip: list[str] = []
    dependencies = doc.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise EnvctlError("'dependencies' must be a list", file=path, key="dependencies")
    for item in dependencies:
        if isinstance(item, str):
            conda.append(item)
        elif isinstance(item, dict) and set(item) == {"pip"}:
            pip.extend(_str_list(item["pip"], "dependencies.pip", path))
        else:
            raise EnvctlError(f"unexpected dependency entry {item!r}", file=path, key="dependencies")
    block = doc.get("envctl") or {}
    options = (block.get("pip_options") if isinstance(block, dict) else None) or {}
    if not isinstance(options, dict):
        raise EnvctlError("'envctl.pip_options' must be a mapping", file=path, key="envctl.pip_options")
    return _EnvSpec(
        channels=_str_list(doc.get("channels"), "channels", path),
        platforms=_str_list(doc.get("platforms"), "platforms", path),
        conda=conda,
        pip=pip,
        pip_options=options,
    )


def _virtual(target: Target, platform: str) -> dict[str, str]:
    from envctl.host.platform import virtual_packages

    return virtual_packages(target, platform)


def _solve(target: Target, platform: str, channels: list[str], specs: list[str], virtual: dict[str, str], env_path: Path):
    import asyncio

    import rattler
    from rattler import BuildString, GenericVirtualPackage, MatchSpec, PackageName, Version

    parsed = []
    for spec in specs:
        try:
            parsed.append(MatchSpec(spec, strict=True))
        except Exception as exc:  # rattler's InvalidMatchSpecError and friends
            raise EnvctlError(f"'{spec}' is not a valid conda match spec: {exc}", file=env_path, key="dependencies") from None
    try:
        vps = [GenericVirtualPackage(PackageName(n), Version(v), BuildString("0")) for n, v in virtual.items()]
    except Exception as exc:  # a bad name or version in the target's virtual_packages
        raise EnvctlError(f"target '{target.name}': invalid virtual package for {platform}: {exc}", key="virtual_packages") from None
    try:
        records = asyncio.run(
            rattler.solve(
                sources=channels,
                specs=parsed,
                platforms=[rattler.Subdir(platform), rattler.Subdir("noarch")],
                virtual_packages=vps,
                # Solve against exactly these channels (a mirror or air-gapped
                # channel must not be widened by CEP-42 channel relations).
                channel_relations="disabled",
            )
        )
    except Exception as exc:  # SolverError, GatewayError (unreachable channel), ...
        from rattler.exceptions import SolverError

        what = "cannot be solved for" if isinstance(exc, SolverError) else "cannot be locked: reading the channels failed for"
        vp_text = ", ".join(f"{n}={v}" for n, v in virtual.items()) or "none"
        raise SolveFailed(
            f"target '{target.name}' {what} {platform} "
            f"(channels: {', '.join(channels)}; virtual packages: {vp_text}):\n{str(exc).strip()}",
            file=env_path,
        ) from None
    return sorted(records, key=lambda r: r.name.normalized)


def _conda_dependencies(depends: list[str]) -> tuple[tuple[str, str], ...]:
    """`name version [build]` match specs as (name, version spec) pairs, one per name."""
    out: dict[str, list[str]] = {}
    for dep in depends:
        parts = dep.split()
        if not parts:
            continue
        specs = out.setdefault(parts[0], [])
        if len(parts) > 1 and parts[1] not in specs:
            specs.append(parts[1])
    return tuple((name, ",".join(specs)) for name, specs in out.items())


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def _locked_conda(platform: str, records) -> list[LockedPackage]:
    """rattler's solution as the lock's records."""
    return [LockedPackage(platform=platform, manager="conda", name=rec.name.normalized, version=str(rec.version),
                          url=str(rec.url), md5=_hex(rec.md5), sha256=_hex(rec.sha256), build=str(rec.build),
                          dependencies=_conda_dependencies(list(rec.depends))) for rec in records]


def _provided(records) -> dict[str, str]:
    """PyPI name -> version of the Python packages the conda solution installs."""
    from envctl.lock.pip_resolve import conda_to_pypi

    out = {}
    for rec in records:
        deps = {d.split()[0] for d in rec.depends if d.split()}
        if rec.noarch.python or deps & {"python", "python_abi"}:
            out[conda_to_pypi(rec.name.normalized)] = str(rec.version)
    return out


def _resolve_pip(target: Target, platform: str, spec: _EnvSpec, records, virtual, root: Path, env_path: Path):
    from envctl.lock.pip_resolve import PipOptionsSpec, PipResolveError, resolve

    python = next((r for r in records if r.name.normalized == "python"), None)
    if python is None:
        raise SolveFailed(
            f"target '{target.name}' has a pip part but its conda solution for {platform} has no python",
            file=env_path,
        )
    opts = spec.pip_options
    options = PipOptionsSpec(
        index_url=opts.get("index_url"),
        extra_index_urls=tuple(opts.get("extra_index_urls") or ()),
        find_links=tuple(opts.get("find_links") or ()),
    )
    try:
        return resolve(
            spec.pip, platform=platform, python_version=str(python.version), virtual=virtual,
            options=options, provided=_provided(records), base=root,
        )
    except PipResolveError as exc:
        raise SolveFailed(
            f"the pip part of target '{target.name}' cannot be resolved for {platform} "
            f"(python {python.version}):\n{exc}",
            file=env_path,
        ) from None
    except OSError as exc:  # its scratch folder: a full or read-only temp dir
        raise SolveFailed(
            f"the pip part of target '{target.name}' cannot be resolved for {platform}: "
            f"{exc.strerror or exc} ({exc.filename or 'temp folder'})",
            file=env_path,
        ) from None


def lock_target(root: Path, target: Target, *, channels: list[str] | None = None, progress: Progress | None = None) -> LockResult:
    """Solve every platform of `target` and write locks/<target>.conda-lock.yml atomically."""
    root = Path(root)
    emit = progress or (lambda event, **info: None)
    env_path = env_file(root, target)
    try:
        text = read_project_text(env_path, what="environment.yml")
    except FileNotFoundError:
        raise EnvctlError(f"target '{target.name}' is not rendered yet; run `envctl render {target.name}`", file=env_path) from None
    if recorded_target_hash(env_path) != target.definition_hash():
        raise SolveFailed(
            f"this file was rendered from another definition of target '{target.name}'; "
            f"run `envctl render {target.name}` before locking",
            file=env_path,
        )
    spec = _read_spec(env_path, text)
    use_channels = list(channels) if channels else spec.channels
    if not use_channels:
        raise EnvctlError("no conda channels to solve against", file=env_path, key="channels")
    if not spec.platforms:
        raise EnvctlError("no platforms to lock for", file=env_path, key="platforms")
    s_hash = spec_hash(text)
    path = ensure_inside(root, lock_path(root, target), "lock file")

    planned: list[PlatformLock] = []
    stats: dict[str, PlatformStats] = {}
    for platform in spec.platforms:
        virtual = _virtual(target, platform)
        emit("solve", target=target.name, platform=platform, transient=True,
             message=f"{target.name}: solving conda packages for {platform}")
        started = time.monotonic()
        records = _solve(target, platform, use_channels, spec.conda, virtual, env_path)
        solve_s = time.monotonic() - started
        emit("solved", target=target.name, platform=platform, packages=len(records), seconds=solve_s,
             message=f"{target.name} {platform}: {len(records)} conda packages in {solve_s:.1f}s")
        pip_pkgs, pip_s = [], 0.0
        if spec.pip:
            emit("pip", target=target.name, platform=platform, transient=True,
                 message=f"{target.name}: resolving pip packages for {platform}")
            pip_pkgs, pip_s = _resolve_pip(target, platform, spec, records, virtual, root, env_path)
            emit("pip-resolved", target=target.name, platform=platform, packages=len(pip_pkgs), seconds=pip_s,
                 message=f"{target.name} {platform}: {len(pip_pkgs)} pip packages in {pip_s:.1f}s")
        planned.append(PlatformLock(platform, (*_locked_conda(platform, records), *pip_pkgs),
                                    content_hash(s_hash, use_channels, platform, virtual)))
        stats[platform] = PlatformStats(platform, len(records), len(pip_pkgs), solve_s, pip_s)

    request = LockRequest(target=target.name, target_hash=target.definition_hash(), spec_hash=s_hash,
                          envctl_version=__version__, channels=use_channels, source=source_path(path, env_path),
                          source_text=text, platforms=planned)
    try:
        data = lock_format().write(request, path.name)
    except OSError as exc:  # conda-lock's writer works in a private temp folder
        raise WriteFailed(f"cannot write the lock for '{target.name}': {exc.strerror or exc}") from None
    ensure_inside(root, path, "lock file")
    changed = not path.exists() or load_lock(path).data != data
    if changed:
        write_bytes_atomic(path, data)
    info = remember(path, data).info
    warnings = _portability(target.name, planned)
    for warning in warnings:
        emit("warning", target=target.name, message=warning)
    emit("written", target=target.name, path=str(path), changed=changed,
         message=f"{target.name}: {'wrote' if changed else 'unchanged'} {path}")
    return LockResult(target.name, path, tuple(spec.platforms), stats, changed, info.sha256, warnings)


def _portability(name: str, planned: list[PlatformLock]) -> tuple[str, ...]:
    """Why this lock would not install on another machine: packages from file:// locations of this one."""
    local = sorted({pkg.url for plat in planned for pkg in plat.packages if pkg.url.startswith("file:")})
    if not local:
        return ()
    folders = sorted({url.rsplit("/", 1)[0] for url in local})
    return (f"the lock of '{name}' is not portable: {len(local)} package(s) come from local paths of this machine "
            f"({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''}); another machine needs the same files at "
            "the same paths. Serve them from a channel or index URL to share the lock.",)


def check_locks(root: Path, targets: Iterable[Target]) -> list[StaleLock]:
    """Targets whose lock is missing, unreadable, or made from another spec.

    The one place "is this lock stale?" is decided (lock --check, --locked,
    the chain's relock, status, pack). A matrix edited since the lock was made
    shows as another definition (the lock records the target's hash), so a
    stale rendered file needs no check of its own here.
    """
    root = Path(root)
    stale: list[StaleLock] = []
    for target in targets:
        path = lock_path(root, target)
        env_path = env_file(root, target)
        if not path.exists():
            stale.append(StaleLock(target.name, f"no lock at {path}", "missing", str(path)))
            continue
        try:
            info = read_lock_meta(path)
        except EnvctlError as exc:
            stale.append(StaleLock(target.name, exc.message, "unreadable", str(path)))
            continue
        try:
            current = spec_hash(read_project_text(env_path, what="environment.yml"))
        except FileNotFoundError:
            stale.append(StaleLock(target.name, f"{env_path} is missing (run `envctl render`)", "unrendered", str(path)))
            continue
        if info.spec_hash != current:
            stale.append(StaleLock(
                target.name,
                f"{env_path} changed since the lock was made (lock: {_short(info.spec_hash)}, now: {_short(current)})",
                "stale", str(path),
            ))
        elif info.target_hash != target.definition_hash() or info.target != target.name:
            stale.append(StaleLock(target.name, "the lock was made from another definition of this target", "stale", str(path)))
        else:
            problem = _body_problem(path, env_path, target, info)
            if problem:
                stale.append(StaleLock(target.name, f"the lock does not hold what it claims: {problem}", "unreadable", str(path)))
    return stale


def _body_problem(path: Path, env_path: Path, target: Target, info: LockInfo) -> str | None:
    """Recorded hashes match; check the body too (a lock cut short keeps its metadata intact)."""
    from envctl.lock.lockcheck import content_hash_problem, missing_dependencies, missing_specs, unrequested_packages

    try:
        doc = load_lock(path).document()
        spec = _read_spec(env_path, read_project_text(env_path, what="environment.yml"))
    except EnvctlError as exc:
        return exc.message.removeprefix("cannot use the lock: ")
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return (content_hash_problem(doc, info.spec_hash, lambda platform: _virtual(target, platform))
            or missing_specs(doc, spec.conda, spec.pip)
            or missing_dependencies(doc)
            or unrequested_packages(doc, spec.conda, spec.pip))


def _short(value: str | None) -> str:
    return "none" if not value else value.split(":", 1)[-1][:12]
