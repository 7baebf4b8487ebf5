"""Resolve a target's pip part for one platform: exact wheel URLs and sha256s.

The resolver is `uv pip compile`, for two reasons:

* It resolves for a *foreign* platform correctly: `--python-platform` sets the
  whole marker environment (`platform_machine`, `sys_platform`, ...) and the
  wheel tags. `pip install --dry-run --platform` evaluates environment markers
  against the running interpreter, so an aarch64 lock made on x86-64 would
  pull in x86-only dependencies.
* It is hermetic: with `--no-config` and the UV_* resolution variables
  removed, only the target's own `pip_options` decide where wheels come from,
  so the same environment.yml locks the same way on every machine. pip would
  add whatever `pip.conf` or PIP_* says on the locking machine.

Packages the conda part installs are pinned to conda's versions (a
constraint) with empty static metadata (uv's `dependency-metadata`), and are
left out of the result.

One compile writes `pylock.toml` (PEP 751: URL and hashes per wheel); a second,
served from uv's cache, writes requirements.txt with `# via` annotations,
which give the dependency edges that pylock.toml leaves out.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from envctl.core.hashing import sha256_file
from envctl.core.process import run_tied, signal_text, uv_binary
from envctl.lock.records import LockedPackage

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (requires-python >= 3.10): the same parser, from PyPI
    import tomli as tomllib

# conda package name -> PyPI name, where they differ. Anything else is taken
# to have the same (normalised) name on both sides.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-opencv": "opencv-python",
    "matplotlib-base": "matplotlib",
    "msgpack-python": "msgpack",
    "python-flatbuffers": "flatbuffers",
    "onnxruntime-cpp": "onnxruntime",
    "tensorflow-base": "tensorflow",
    "python-tzdata": "tzdata",
    "sentencepiece-python": "sentencepiece",
}

# Manylinux levels uv accepts in --python-platform (uv 0.5 .. 0.13).
_UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "osx-64": "x86_64", "osx-arm64": "arm64", "win-64": "amd64"}
# UV_* variables that change *what* is resolved; the rest (cache, TLS,
# timeouts, concurrency) only change how, and are kept.
_UV_RESOLUTION_VARS = re.compile(
    r"^UV_(INDEX.*|DEFAULT_INDEX|EXTRA_INDEX_URL|FIND_LINKS|NO_INDEX|CONSTRAINT|OVERRIDE|BUILD_CONSTRAINT"
    r"|PRERELEASE|RESOLUTION|EXCLUDE_NEWER.*|TORCH_BACKEND|PYTHON|CONFIG_FILE|NO_CONFIG|EXTRA_.*|REQUIRE_HASHES|NO_BINARY.*|ONLY_BINARY.*)\Z"
)


class PipResolveError(Exception):
    """The pip part cannot be resolved; the message carries uv's explanation."""


@dataclass(frozen=True)
class PipOptionsSpec:
    """Where wheels come from (the `envctl.pip_options` block of environment.yml)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()


def conda_to_pypi(name: str) -> str:
    return canonicalize_name(CONDA_TO_PYPI.get(name, name))


def uv_platform(platform: str, virtual: dict[str, str]) -> tuple[str, dict[str, str]]:
    """uv's --python-platform for a conda platform, plus environment it needs."""
    if platform.startswith("linux-"):
        glibc = virtual.get("__glibc", "2.17").split(".")
        minor = int(glibc[1]) if len(glibc) > 1 and glibc[1].isdigit() else 17
        fits = [m for m in _UV_MANYLINUX if m <= minor]
        if not fits:
            raise PipResolveError(f"__glibc {'.'.join(glibc)} is older than manylinux2014 (2.17); no wheel can be chosen")
        arch = "x86_64" if platform == "linux-64" else "aarch64"
        return f"{arch}-manylinux_2_{fits[-1]}", {}
    if platform.startswith("osx-"):
        arch = "aarch64" if platform == "osx-arm64" else "x86_64"
        # uv reads the macOS floor from this variable (default: oldest non-EOL macOS).
        return f"{arch}-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": virtual.get("__osx", "11.0")}
    if platform == "win-64":
        return "x86_64-pc-windows-msvc", {}
    raise PipResolveError(f"no pip platform is known for conda platform '{platform}'")


def _platform_tags(platform: str, virtual: dict[str, str]) -> list[str]:
    """Platform tags a wheel may carry on `platform`, best first."""
    from packaging.tags import mac_platforms

    arch = _ARCH[platform]
    if platform.startswith("linux-"):
        glibc = virtual.get("__glibc", "2.17").split(".")
        minor = int(glibc[1]) if len(glibc) > 1 and glibc[1].isdigit() else 17
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for m in range(minor, 4, -1):
            tags.append(f"manylinux_2_{m}_{arch}")
            if m in legacy:
                tags.append(f"{legacy[m]}_{arch}")
        return tags + [f"linux_{arch}"]
    if platform.startswith("osx-"):
        osx_major, _, osx_minor = virtual.get("__osx", "11.0").partition(".")
        return list(mac_platforms((int(osx_major), int(osx_minor.split(".")[0] or 0)), arch))
    return ["win_amd64"]


def _tag_rank(platform: str, virtual: dict[str, str], python_version: str) -> dict[str, int]:
    from packaging.tags import compatible_tags, cpython_tags

    major, minor = (int(p) for p in python_version.split(".")[:2])
    plats = _platform_tags(platform, virtual)
    abi = f"cp{major}{minor}"
    ordered = [*cpython_tags((major, minor), [abi], plats), *compatible_tags((major, minor), abi, plats)]
    return {str(tag): i for i, tag in reversed(list(enumerate(ordered)))}


def choose_wheel(filenames: list[str], platform: str, virtual: dict[str, str], python_version: str) -> str:
    """The wheel an installer would pick for this platform: the best-ranked tag."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    rank = _tag_rank(platform, virtual, python_version)

    def key(name: str) -> tuple[int, str]:
        try:
            tags = parse_wheel_filename(name)[3]
        except InvalidWheelFilename:
            return (sys.maxsize, name)
        return (min((rank.get(str(t), sys.maxsize) for t in tags), default=sys.maxsize), name)

    return min(filenames, key=key)


def _local_sha256(url: str) -> str:
    """sha256 of a local wheel, for find-links entries that come without a hash."""
    return sha256_file(unquote(urlsplit(url).path))


def resolve_location(value: str, base: Path) -> str:
    """A find-links / index location: URLs as they are, local paths made absolute."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    # uv dies with envctl: a killed `envctl lock` leaves no resolver running on.
    proc = run_tied(cmd, cwd=cwd, env=env, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if proc.returncode < 0:
            text = (text + "\n" if text else "") + f"uv was killed by {signal_text(-proc.returncode)}"
        raise PipResolveError(text or f"uv exited with status {proc.returncode}")


def _edges(requirements_txt: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, parents) from uv's `name==version  # via a, b` lines."""
    out: dict[str, tuple[str, set[str]]] = {}
    for line in requirements_txt.splitlines():
        req, _, comment = line.partition("#")
        req = req.strip()
        if not req or req.startswith("-") or "==" not in req:
            continue
        name, _, version = req.partition("==")
        via = comment.strip()
        parents: set[str] = set()
        if via.startswith("via"):
            parents = {str(canonicalize_name(p.strip())) for p in via[3:].split(",") if p.strip() and not p.strip().startswith("-")}
        out[canonicalize_name(name.split("[")[0])] = (version.strip(), parents)
    return out


def resolve(
    requirements: list[str],
    *,
    platform: str,
    python_version: str,
    virtual: dict[str, str],
    options: PipOptionsSpec,
    provided: dict[str, str],
    base: Path,
) -> tuple[list[LockedPackage], float]:
    """Resolve `requirements` for one platform; return (packages, seconds).

    `provided` maps PyPI names the conda part already installs to their
    versions: the resolver must use exactly those, and they are left out of the
    result. Binary wheels only: a lock never builds anything.
    """
    started = time.monotonic()
    for req in requirements:
        if req.strip().startswith("-"):
            raise PipResolveError(f"'{req}' is a pip option, not a requirement; index and find-links settings belong in the target's pip_options")
    python_platform, extra_env = uv_platform(platform, virtual)
    env = {k: v for k, v in os.environ.items() if not _UV_RESOLUTION_VARS.match(k)}
    env.update(extra_env)
    env.setdefault("UV_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory(prefix="envctl-pip-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("".join(r.strip() + "\n" for r in requirements), encoding="utf-8")
        pinned = {name: version for name, version in sorted(provided.items()) if _pep440(version)}
        # Conda's packages are fixed at conda's versions, and their own
        # dependencies are conda's business: static metadata with no
        # requirements stops uv from pulling e.g. PyPI torch's nvidia-* wheels
        # in beside a conda pytorch.
        (work / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in pinned.items()), encoding="utf-8")
        (work / "uv.toml").write_text(
            "".join(
                f"[[dependency-metadata]]\nname = {json.dumps(n)}\nversion = {json.dumps(v)}\nrequires-dist = []\n\n"
                for n, v in pinned.items()
            ),
            encoding="utf-8",
        )
        cmd = [
            uv_binary("resolve the pip part of the target"), "pip", "compile", "requirements.in", "--constraint", "constraints.txt",
            "--python", sys.executable, "--python-version", python_version, "--python-platform", python_platform,
            "--only-binary", ":all:", "--no-config", "--config-file", "uv.toml", "--no-header",
        ]
        if options.index_url:
            cmd += ["--index-url", options.index_url]
        for url in options.extra_index_urls:
            cmd += ["--extra-index-url", url]
        for link in options.find_links:
            cmd += ["--find-links", resolve_location(link, base)]
        # uv insists on this file name for the PEP 751 format.
        _run(cmd + ["--format", "pylock.toml", "-o", "pylock.toml"], work, env)
        _run(cmd + ["--format", "requirements.txt", "--annotation-style", "line", "-o", "requirements.txt"], work, env)
        pylock = tomllib.loads((work / "pylock.toml").read_text(encoding="utf-8"))
        edges = _edges((work / "requirements.txt").read_text(encoding="utf-8"))

    deps: dict[str, set[str]] = {}
    for child, (_, parents) in edges.items():
        for parent in parents:
            deps.setdefault(parent, set()).add(child)
    resolved = []
    for entry in pylock.get("packages", []):
        name = canonicalize_name(entry["name"])
        if name in provided:
            continue
        version = str(entry.get("version", ""))
        if name in edges and edges[name][0] != version:
            # The two compiles disagree only if the index changed in between.
            raise PipResolveError(f"the index changed while resolving ({name} {edges[name][0]} vs {version}); lock again")
        wheels = entry.get("wheels") or []
        if not wheels:
            raise PipResolveError(f"{name} {version} has no binary wheel for {platform} (envctl locks wheels only)")
        by_name = {}
        for wheel in wheels:
            url = wheel.get("url") or (work / wheel["path"]).resolve().as_uri()
            by_name[unquote(url.rsplit("/", 1)[-1].split("#")[0])] = (url, wheel.get("hashes") or {})
        url, hashes = by_name[choose_wheel(sorted(by_name), platform, virtual, python_version)]
        sha256 = hashes.get("sha256") or (_local_sha256(url) if url.startswith("file:") else None)
        if not sha256:
            raise PipResolveError(f"the index gave no sha256 for {url}; envctl locks only hashed wheels")
        resolved.append((name, version, url, sha256))
    pins: dict[str, str] = {name: version for name, version, _, _ in resolved}
    # Edges as resolved for this platform, pinned to what was resolved. A PEP 440 specifier, never
    # conda's "*": py-rattler (pixi's lock reader) parses pip dependencies as PEP 508 requirements.
    packages = [LockedPackage(platform=platform, manager="pip", name=name, version=version, url=url, sha256=sha256,
                              dependencies=tuple((dep, f"=={pins[dep]}" if dep in pins else ">=0")
                                                 for dep in sorted(deps.get(name, ()))))
                for name, version, url, sha256 in resolved]
    return sorted(packages, key=lambda p: p.name), time.monotonic() - started


def _pep440(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True
