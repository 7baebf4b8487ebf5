"""Faults under create: a read-only prefix, a full disk or a file size limit while an env is
built, and a package cache changed on disk (or a package that does not match its own file list).

Everything is real: disks are really full (a small tmpfs, or RLIMIT_FSIZE where mounting is not
allowed), caches are really edited. After each fault the previous env must be what it was,
nothing half-built may be left, and a package whose files differ from their hashes is never installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envctl.cli.exitcodes import exit_code
from envctl.core.errors import EnvctlError
from envctl.create.build import create_env, env_state
from envctl.host.platform import host_platform
from support import lockfactory as lf
from support.diskfaults import mounted_tmpfs, read_only_bind
from support.faults import child_env, leftovers, limit_file_size, run_env_python
from support.local_channel import PY_MM

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]


def test_read_only_prefix_keeps_the_previous_env(small_lock, tmp_path):
    folder = tmp_path / "envs"
    prefix = folder / "env"
    create_env(small_lock, "small", prefix=prefix)
    before = env_state(prefix)
    with read_only_bind(folder):
        with pytest.raises(EnvctlError) as err:
            create_env(small_lock, "small", prefix=prefix, force=True)
        assert "Read-only file system" in str(err.value) and exit_code(err.value) == 1, str(err.value)
        assert env_state(prefix) == before
        assert run_env_python(prefix, "import pip; print('ok')") == "ok"
    assert leftovers(prefix) == []


@pytest.fixture(scope="module")
def small_lock(tmp_path_factory, local_channel):
    """A conda-only lock (python, pip): an 80 MB env, small enough for a tmpfs."""
    root = tmp_path_factory.mktemp("small")
    lf.write_lock(root / "locks" / "small.conda-lock.yml", target="small", channel=local_channel,
                  platforms=["linux-64"], packages=lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"]))
    return root


def test_full_disk_during_create_keeps_the_previous_env(small_lock, tmp_path):
    disk = tmp_path / "disk"
    with mounted_tmpfs(disk, "130m"):
        prefix = disk / "env"
        first = create_env(small_lock, "small", prefix=prefix)  # copied, not hardlinked: another filesystem
        assert first.size_bytes > 60 * 2**20
        before = env_state(prefix)
        with pytest.raises(EnvctlError) as err:
            create_env(small_lock, "small", prefix=prefix, force=True)  # a second copy cannot fit
        assert "No space left on device" in str(err.value), str(err.value)
        assert exit_code(err.value) == 1
        assert env_state(prefix) == before
        assert run_env_python(prefix, "import json, pip; print('ok')") == "ok"
        assert leftovers(prefix) == []  # the half-built staging folder is gone, its space free again
        assert shutil.disk_usage(disk).free > 40 * 2**20


def test_file_size_limit_during_create_keeps_the_previous_env(small_lock, tmp_path):
    """Where no tmpfs can be mounted: RLIMIT_FSIZE makes big writes fail (EFBIG) as a full disk would."""
    prefix = tmp_path / "env"
    create_env(small_lock, "small", prefix=prefix)
    before = env_state(prefix)
    code = (
        "import sys; from pathlib import Path; from envctl.create import create_env; from envctl.core.errors import EnvctlError\n"
        "from envctl.cli.exitcodes import exit_code\n"
        "try:\n"
        f"    create_env(Path({str(small_lock)!r}), 'small', prefix=Path({str(prefix)!r}), force=True)\n"
        "except EnvctlError as exc:\n"
        "    print('ENVCTL-ERROR', exc); sys.exit(exit_code(exc))\n"
    )
    # An empty package cache: extracting python's archive writes files of many MB.
    env = child_env(RATTLER_CACHE_DIR=str(tmp_path / "rattler"), ENVCTL_CACHE_DIR=str(tmp_path / "envctl"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_file_size(2 * 2**20))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "ENVCTL-ERROR" in out and "File too large" in out, out
    assert env_state(prefix) == before
    assert run_env_python(prefix, "import pip; print('ok')") == "ok"
    assert leftovers(prefix) == []


# ---------------------------------------------------------------- a changed package cache


@pytest.fixture
def private_caches(tmp_path, monkeypatch):
    for var, name in (("RATTLER_CACHE_DIR", "rattler"), ("UV_CACHE_DIR", "uv"), ("ENVCTL_CACHE_DIR", "envctl")):
        monkeypatch.setenv(var, str(tmp_path / "caches" / name))
    return tmp_path / "caches"


def _copy_channel(src: Path, dest: Path, entries) -> None:
    for subdir in ("linux-64", "noarch"):
        (dest / subdir).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / subdir / "repodata.json", dest / subdir)
    for entry in entries:
        subdir, filename = entry.url.rsplit("/", 2)[-2:]
        shutil.copy(src / subdir / filename, dest / subdir / filename)


def _mixed_lock(root: Path, channel: Path, local_channel: Path) -> Path:
    conda = lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"])
    _copy_channel(local_channel, channel, conda)
    conda = lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"])
    pip = lf.pip_entries(lf.pip_report(["six==1.17.0"]), "linux-64")
    return lf.write_lock(root / "locks" / "mixed.conda-lock.yml", target="mixed", channel=channel,
                         platforms=["linux-64"], packages=conda + pip)


def _edit_in_place(path: Path) -> None:
    """What an editor that keeps hardlinks does (vim's backupcopy=auto): same inode, new bytes."""
    with open(path, "r+b") as handle:
        head = handle.read(8)
        handle.seek(0)
        handle.write(b"#EDITED\n" if head != b"#EDITED\n" else b"#AGAIN!\n")


PIP_INIT = f"lib/python{PY_MM}/site-packages/pip/__init__.py"
SIX = f"lib/python{PY_MM}/site-packages/six.py"


def test_changed_cache_files_are_detected_and_refetched(private_caches, tmp_path, local_channel):
    root = tmp_path / "project"
    _mixed_lock(root, tmp_path / "channel", local_channel)
    first = create_env(root, "mixed", prefix=tmp_path / "env1")
    originals = {rel: (first.prefix / rel).read_bytes() for rel in (PIP_INIT, SIX)}
    for rel in (PIP_INIT, SIX):
        # Both installers hardlink from their caches: editing env1's file edits the cached one too.
        assert (first.prefix / rel).stat().st_nlink >= 2
        _edit_in_place(first.prefix / rel)

    events: list[tuple[str, dict]] = []
    second = create_env(root, "mixed", prefix=tmp_path / "env2", progress=lambda event, **info: events.append((event, info)))
    refetched = {info["manager"]: info["packages"] for event, info in events if event == "refetch"}
    assert set(refetched) == {"conda", "pip"}, events
    assert any(p.startswith("pip-") for p in refetched["conda"]) and refetched["pip"] == ["six"]
    for rel, data in originals.items():
        assert (second.prefix / rel).read_bytes() == data, f"{rel} came from the changed cache"
    assert run_env_python(second.prefix, "import six, pip; print('ok')") == "ok"

    events.clear()
    third = create_env(root, "mixed", prefix=tmp_path / "env3", progress=lambda event, **info: events.append((event, info)))
    assert not [e for e, _ in events if e == "refetch"], "the refetched cache is clean"
    assert (third.prefix / SIX).read_bytes() == originals[SIX]


def _break_package(channel: Path, subdir: str, filename: str, member: str) -> None:
    """Rewrite one file inside a channel's archive, leaving its info/paths.json as it was; re-index that entry.

    The archive then matches the (new) repodata and lock hashes, but not its own file list.
    """
    import bz2
    import hashlib
    import io
    import tarfile

    archive = channel / subdir / filename
    out = io.BytesIO()
    with tarfile.open(archive, "r:bz2") as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None
            if info.name == member:
                data = b"# not what paths.json says\n" + data
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    blob = bz2.compress(out.getvalue())
    archive.write_bytes(blob)
    repodata_path = channel / subdir / "repodata.json"
    repodata = json.loads(repodata_path.read_text())
    record = repodata["packages"][filename]
    record.update(sha256=hashlib.sha256(blob).hexdigest(), md5=hashlib.md5(blob, usedforsecurity=False).hexdigest(), size=len(blob))
    repodata_path.write_text(json.dumps(repodata))


def test_package_that_does_not_match_its_own_file_list_is_refused(private_caches, tmp_path, local_channel):
    """Refetching cannot help when the package itself is broken: refused, and nothing appears at the prefix."""
    channel = tmp_path / "channel"
    conda = lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"])
    _copy_channel(local_channel, channel, conda)
    pip_file = next(e.url.rsplit("/", 1)[1] for e in conda if e.name == "pip")
    _break_package(channel, "noarch", pip_file, "site-packages/pip/__init__.py")
    root = tmp_path / "project"
    lf.write_lock(root / "locks" / "broken.conda-lock.yml", target="broken", channel=channel, platforms=["linux-64"],
                  packages=lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"]))
    events: list[str] = []
    with pytest.raises(EnvctlError) as err:
        create_env(root, "broken", prefix=tmp_path / "env", progress=lambda event, **info: events.append(event))
    message = str(err.value)
    assert events.count("refetch") == 1, events  # evicted and fetched once more, then refused
    assert "differ from their packages' own hashes" in message and "pip/__init__.py" in message, message
    assert "even after evicting them" in message and "refusing to install unverified files" in message, message
    assert not (tmp_path / "env").exists() and leftovers(tmp_path / "env") == []
