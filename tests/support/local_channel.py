"""Build a small local conda channel for envctl's tests (no network, no conda).

No conda channel is reachable from the test machines, so the tests use this
channel (as a ``file://`` URL) wherever users would use conda-forge.  It holds:

* ``python`` for linux-64: a real, relocatable CPython made from the host
  interpreter (``sys.base_prefix``): the binary, libpython and the stdlib only,
  with the binary's RPATH set to ``$ORIGIN/../lib`` by patchelf.
* ``pip`` (noarch: python), unpacked from the wheel that ``ensurepip`` bundles.
* ``python`` metadata-only stand-ins for linux-aarch64 and osx-arm64, so that
  targets for those platforms can be *locked* (never installed) here, and
  ``envctl-arch-probe``, which exists for linux-aarch64 only.
* ``python_abi``, ``cuda-version`` (11.8 / 12.4 / 12.9, constraining
  ``__cuda`` the way conda-forge's does), ``envctl-gpu-probe`` (needs
  ``__cuda``) and ``libprotobuf`` 4.25.3 / 6.31.1: tiny synthetic packages that
  exercise the solver's constraints and virtual packages.

Packages are written as ``.tar.bz2`` with ``tarfile`` (py-rattler 0.28 can read
but not write packages) and indexed with py-rattler's own ``index_fs``.

The result is cached (building copies and bz2-compresses ~40 MB) under a key
of the interpreter and this file's source.  Usage::

    from support.local_channel import build_local_channel, channel_url  # tests/ on sys.path
    channel = build_local_channel()          # Path, built once, then cached
    rattler.solve(sources=[channel_url(channel)], ...)

or ``python tests/support/local_channel.py [DEST]``, which prints the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import marshal
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["build_local_channel", "channel_url", "default_channel_dir", "channel_version", "BUILD", "PY_VERSION", "PY_MM",
           "PY_TAG"]

CACHE_ENV = "ENVCTL_TEST_CHANNEL_CACHE"
READY_MARKER = ".envctl-channel-ready"  # written last, holds the cache key
BUILD = "h_envctl_0"
TIMESTAMP_MS = 1_700_000_000_000  # fixed, so records are identical across builds
PY_VERSION = "%d.%d.%d" % sys.version_info[:3]
PY_MM = "%d.%d" % sys.version_info[:2]
PY_TAG = "cp%d%d" % sys.version_info[:2]
SUBDIRS = ("noarch", "linux-64", "linux-aarch64", "osx-arm64")
_ARCH = {  # subdir -> (index.json "platform", "arch")
    "linux-64": ("linux", "x86_64"),
    "linux-aarch64": ("linux", "aarch64"),
    "osx-arm64": ("osx", "arm64"),
}

# Parts of the stdlib nobody's env needs: tests (~125 MB), GUI, and build
# leftovers (libpython3.11.a is 44 MB).  Matched against path components.
_SKIP_DIRS = {"__pycache__", "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo"}
_SKIP_FILE_PREFIXES = ("_test", "_tkinter", "xxlimited", "_xxtestfuzz", "_ctypes_test")
_SKIP_FILES = {"libpython%s.a" % PY_MM, "python.o"}


@dataclass(frozen=True)
class Link:
    """A symlink to place in a package payload (``target`` is relative)."""

    target: str


Payload = dict[str, "bytes | Path | Link"]  # path in package -> content


# --------------------------------------------------------------------------
# Cache location and atomic, locked materialisation


def _cache_key() -> str:
    """Key over what the channel's content depends on: interpreter and this file."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    h.update(os.path.realpath(sys.base_prefix).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def default_channel_dir() -> Path:
    """``$ENVCTL_TEST_CHANNEL_CACHE/channel-<key>`` or ``~/.cache/envctl-tests/channel-<key>``.

    The variable names the cache *root*, so a changed interpreter or builder
    gets a new key instead of silently reusing a stale channel.
    """
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "envctl-tests"
    return Path(root).expanduser().resolve() / f"channel-{_cache_key()}"


def channel_url(channel: Path) -> str:
    """The ``file://`` URL of a channel directory, as rattler.solve accepts it."""
    return Path(channel).resolve().as_uri()


def _is_ready(path: Path, key: str) -> bool:
    marker = path / READY_MARKER
    return marker.is_file() and marker.read_text().strip() == key


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so concurrent builders (pytest-xdist, two sessions) wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _materialise(target: Path, key: str, produce) -> Path:
    """Make ``target`` by ``produce(tmpdir)`` in a temp sibling, then rename it in.

    Readers never see a half-built channel: the directory appears complete
    (with its marker) or not at all.
    """
    if _is_ready(target, key):
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _is_ready(target, key):  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            produce(tmp)
            (tmp / READY_MARKER).write_text(key + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp made it 0700
            if target.exists():  # a stale channel or an empty dir: move aside, then delete
                if not (target / READY_MARKER).exists() and any(target.iterdir()):
                    raise FileExistsError(f"{target} exists and is not a channel; refusing to replace it")
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, old / "x")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_local_channel(dest: Path | None = None) -> Path:
    """Return the path of a ready, indexed local conda channel (cached).

    Without ``dest`` the channel lives in the cache (see
    :func:`default_channel_dir`).  With ``dest`` it is copied there from the
    cache (built first if needed), so tests may own and modify their copy.
    """
    key = _cache_key()
    cached = _materialise(default_channel_dir(), key, _build_channel)
    if dest is None:
        return cached
    dest = Path(dest).expanduser().resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _materialise(dest, key, lambda tmp: shutil.copytree(cached, tmp, symlinks=True, dirs_exist_ok=True))


# --------------------------------------------------------------------------
# Writing conda packages


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_package(
    channel: Path,
    subdir: str,
    name: str,
    version: str,
    payload: Payload,
    *,
    depends: list[str] | None = None,
    constrains: list[str] | None = None,
    noarch: str | None = None,
    link_json: dict | None = None,
    placeholder: str | None = None,
    license: str = "BSD-3-Clause",
) -> Path:
    """Write ``<channel>/<subdir>/<name>-<version>-<BUILD>.tar.bz2``.

    ``info/paths.json`` lists every payload file with its sha256 and size,
    which rattler checks when it extracts into its package cache.  Text files
    that contain ``placeholder`` (the host prefix) are marked for prefix
    replacement, as conda-build does, so e.g. ``_sysconfigdata`` names the
    env's prefix once installed.
    """
    index = {
        "name": name,
        "version": version,
        "build": BUILD,
        "build_number": 0,
        "subdir": subdir,
        "depends": depends or [],
        "constrains": constrains or [],
        "license": license,
        "timestamp": TIMESTAMP_MS,
    }
    if subdir in _ARCH:
        index["platform"], index["arch"] = _ARCH[subdir]
    if noarch:
        index["noarch"] = noarch
    paths, contents = [], {}
    for rel in sorted(payload):
        item = payload[rel]
        if isinstance(item, Link):
            # conda-build records a softlink with the hash and size of its target.
            data = payload[str(Path(rel).parent / item.target)]
            data = data.read_bytes() if isinstance(data, Path) else data
            entry = {"_path": rel, "path_type": "softlink"}
        else:
            data = contents[rel] = item.read_bytes() if isinstance(item, Path) else item
            entry = {"_path": rel, "path_type": "hardlink"}
            if placeholder and b"\0" not in data and placeholder.encode() in data:
                entry.update(file_mode="text", prefix_placeholder=placeholder)
        entry.update(sha256=_sha256(data), size_in_bytes=len(data))
        paths.append(entry)
    info: dict[str, bytes] = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(p["_path"] + "\n" for p in paths).encode(),
        "info/about.json": json.dumps({"summary": f"envctl test fixture: {name}"}).encode(),
    }
    if link_json:
        info["info/link.json"] = json.dumps(link_json, indent=2).encode()

    out = channel / subdir / f"{name}-{version}-{BUILD}.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2", compresslevel=6) as tar:
        for rel, data in [*info.items(), *((r, payload[r]) for r in sorted(payload))]:
            ti = tarfile.TarInfo(rel)
            ti.mtime = TIMESTAMP_MS // 1000
            if isinstance(data, Link):
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, data.target, 0o777
                tar.addfile(ti)
                continue
            if isinstance(data, Path):
                ti.mode = 0o755 if os.access(data, os.X_OK) else 0o644
                data = contents[rel]
            else:
                ti.mode = 0o644
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return out


# --------------------------------------------------------------------------
# The packages


def _find_patchelf() -> str:
    """patchelf from this interpreter's scripts dir (``pip install patchelf``) or PATH."""
    for cand in (Path(sysconfig.get_path("scripts")) / "patchelf", Path(sys.executable).parent / "patchelf"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("patchelf")
    if not found:
        raise RuntimeError("patchelf not found: `pip install patchelf` (see pyproject's test extra)")
    return found


def _python_payload(work: Path) -> Payload:
    """Binary + libpython + stdlib of the host interpreter, relocatable."""
    base = Path(sys.base_prefix).resolve()
    exe = base / "bin" / f"python{PY_MM}"
    if not exe.is_file():
        raise RuntimeError(f"{exe} missing: need a POSIX CPython install (sys.base_prefix)")
    # The pyenv binary has an absolute RPATH to its own prefix; an env must
    # find the libpython that sits beside it instead.
    patched = work / f"python{PY_MM}"
    shutil.copy2(exe, patched)
    subprocess.run([_find_patchelf(), "--set-rpath", "$ORIGIN/../lib", str(patched)], check=True)

    payload: Payload = {
        f"bin/python{PY_MM}": patched,
        "bin/python3": Link(f"python{PY_MM}"),
        "bin/python": Link(f"python{PY_MM}"),
    }
    for lib in sorted((base / "lib").glob("libpython*.so*")):
        payload[f"lib/{lib.name}"] = Link(os.readlink(lib)) if lib.is_symlink() else lib
    stdlib = base / "lib" / f"python{PY_MM}"
    for root, dirs, files in os.walk(stdlib):
        rel_root = Path(root).relative_to(stdlib)
        if rel_root.parts[:1] == ("site-packages",):
            dirs[:] = []  # host packages stay out; README.txt keeps the dir
            files = [f for f in files if f == "README.txt"]
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")) or f in _SKIP_FILES or f.startswith(_SKIP_FILE_PREFIXES):
                continue
            src = Path(root) / f
            rel = f"lib/python{PY_MM}/{(rel_root / f).as_posix()}"
            payload[rel] = Link(os.readlink(src)) if src.is_symlink() else src
            if f.endswith(".py") and not src.is_symlink():
                _add_pyc(payload, rel, src.read_bytes())
    return payload


def _add_pyc(payload: Payload, rel: str, source: bytes) -> None:
    """Add a checked-hash .pyc (PEP 552) for ``rel``.

    Without .pyc files every fresh env recompiles what it imports (pip
    --version: 1.7 s instead of 0.3 s).  Hash-based pycs stay valid whatever
    mtime the installer gives the source, and a prefix-patched source simply
    fails the hash check and is recompiled.
    """
    try:
        code = compile(source, rel, "exec", dont_inherit=True)
    except SyntaxError:  # lib2to3 grammar test data and the like
        return
    header = importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + importlib.util.source_hash(source)
    payload[importlib.util.cache_from_source(rel)] = header + marshal.dumps(code)


def _pip_wheel() -> Path:
    """The pip wheel ensurepip ships: the distro's WHEEL_PKG_DIR copy, else the bundled one.

    ensurepip's helpers for this are private and changed across versions
    (``_get_packages`` in 3.10-3.12, gone in 3.13), so look for the wheel the
    way they all do: ``pip-<version>-*.whl`` matching ``ensurepip.version()``.
    """
    import ensurepip

    version = ensurepip.version()
    folders = [Path(d) for d in (sysconfig.get_config_var("WHEEL_PKG_DIR"),) if d]
    folders.append(Path(ensurepip.__file__).parent / "_bundled")
    for folder in folders:
        found = sorted(folder.glob(f"pip-{version}-*.whl"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no pip {version} wheel in {', '.join(map(str, folders))}")


def _pip_payload() -> tuple[str, Payload]:
    """pip's wheel unpacked into the noarch-python ``site-packages/`` layout."""
    wheel = _pip_wheel()
    version = wheel.name.split("-")[1]
    payload: Payload = {}
    with zipfile.ZipFile(wheel) as zf:
        for zi in zf.infolist():
            if not zi.is_dir():
                rel = f"site-packages/{zi.filename}"
                payload[rel] = zf.read(zi)
                # conda compiles noarch packages when linking, rattler does not;
                # ship this interpreter's pycs so `pip` starts fast in new envs.
                if rel.endswith(".py"):
                    _add_pyc(payload, rel, payload[rel])
    # Tell pip that conda, not pip, owns this install (as conda-forge's pip does).
    payload[f"site-packages/pip-{version}.dist-info/INSTALLER"] = b"conda\n"
    return version, payload


def _marker(name: str, version: str, subdir: str) -> Payload:
    """A one-file payload for metadata-only packages (rattler wants some file)."""
    return {f"share/envctl-fixtures/{name}-{version}-{subdir}.txt": f"{name} {version} {subdir}\n".encode()}


def _build_channel(channel: Path) -> None:
    """Write every package into ``channel`` and index it with rattler."""
    import rattler.index

    for subdir in SUBDIRS:
        (channel / subdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        _write_package(channel, "linux-64", "python", PY_VERSION, _python_payload(Path(work)),
                       placeholder=str(Path(sys.base_prefix).resolve()), license="PSF-2.0")
    for subdir in ("linux-aarch64", "osx-arm64"):  # lockable, never installed here
        _write_package(channel, subdir, "python", PY_VERSION, _marker("python", PY_VERSION, subdir),
                       license="PSF-2.0")
    for subdir in _ARCH:
        _write_package(channel, subdir, "python_abi", PY_MM, _marker("python_abi", PY_MM, subdir),
                       constrains=[f"python {PY_MM}.*"])

    pip_version, pip_payload = _pip_payload()
    _write_package(channel, "noarch", "pip", pip_version, pip_payload, depends=["python >=3.8"],
                   noarch="python", license="MIT", link_json={
                       "noarch": {"type": "python", "entry_points": [
                           "pip = pip._internal.cli.main:main",
                           "pip3 = pip._internal.cli.main:main",
                       ]},
                       "package_metadata_version": 1,
                   })

    # Like conda-forge's cuda-version: installing it needs a driver at least
    # that new (only checked when __cuda is present at all).
    for cuda in ("11.8", "12.4", "12.9"):
        _write_package(channel, "noarch", "cuda-version", cuda, _marker("cuda-version", cuda, "noarch"),
                       noarch="generic", license="LicenseRef-NVIDIA-End-User-License-Agreement",
                       constrains=[f"__cuda >={cuda}", f"cudatoolkit {cuda}|{cuda}.*"])
    # Needs a GPU driver: a solve without the __cuda virtual package fails.
    _write_package(channel, "linux-64", "envctl-gpu-probe", "1.0",
                   _marker("envctl-gpu-probe", "1.0", "linux-64"), depends=["__cuda"])
    for pb in ("4.25.3", "6.31.1"):
        _write_package(channel, "linux-64", "libprotobuf", pb, _marker("libprotobuf", pb, "linux-64"))
    # Exists for linux-aarch64 only: proves a foreign subdir is what got solved.
    _write_package(channel, "linux-aarch64", "envctl-arch-probe", "1.0",
                   _marker("envctl-arch-probe", "1.0", "linux-aarch64"))

    # Plain repodata.json only (no .zst, no shards): the classic layout every
    # conda client (rattler, conda-lock, micromamba) reads from a file:// URL.
    asyncio.run(rattler.index.index_fs(channel, write_zst=False, write_shards=False, force=True))
    # index_fs leaves an empty scratch dir behind; a channel copy need not carry it.
    with contextlib.suppress(OSError):
        (channel / ".tmp").rmdir()


def channel_version(channel: Path, name: str, subdir: str = "noarch") -> str:
    """The version of `name` in the built channel's `subdir` (e.g. the pip ensurepip bundled)."""
    repodata = json.loads((Path(channel) / subdir / "repodata.json").read_text())
    found = {r["version"] for group in ("packages", "packages.conda") for r in repodata.get(group, {}).values()
             if r["name"] == name}
    if len(found) != 1:
        raise LookupError(f"{name} in {channel}/{subdir}: {sorted(found) or 'absent'}")
    return found.pop()


if __name__ == "__main__":
    print(build_local_channel(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
