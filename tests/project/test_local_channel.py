"""The local test channel works with py-rattler the way conda-forge would.

These tests pin down what the rest of the suite relies on: the channel solves
and installs a working, relocated python + pip, and its synthetic packages make
the solver honour (or reject) ``__cuda`` and foreign subdirs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import rattler
from rattler import GenericVirtualPackage, PackageName, Version
from rattler.exceptions import SolverError
from rattler.package import BuildString

from support.local_channel import BUILD, PY_MM, PY_VERSION, build_local_channel, channel_url, default_channel_dir


def _cuda(version: str) -> GenericVirtualPackage:
    return GenericVirtualPackage(PackageName("__cuda"), Version(version), BuildString("0"))


def _solve(channel: Path, specs: list[str], platform: str = "linux-64", virtual=()) -> dict[str, str]:
    """Solve and return {name: version}."""
    records = asyncio.run(
        rattler.solve(
            sources=[channel_url(channel)],
            specs=specs,
            platforms=[platform, "noarch"],
            virtual_packages=list(virtual),
        )
    )
    return {r.name.normalized: str(r.version) for r in records}


def _clean_env() -> dict[str, str]:
    """The host's environment minus what would make the env's python use the host's files."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_channel_layout(local_channel: Path) -> None:
    for subdir in ("noarch", "linux-64", "linux-aarch64", "osx-arm64"):
        assert (local_channel / subdir / "repodata.json").is_file(), subdir
    assert (local_channel / "linux-64" / f"python-{PY_VERSION}-{BUILD}.tar.bz2").exists()
    assert build_local_channel() == local_channel == default_channel_dir()


def test_copy_to_dest(local_channel: Path, tmp_path: Path) -> None:
    dest = build_local_channel(tmp_path / "chan")
    assert dest == (tmp_path / "chan").resolve()
    assert sorted(p.name for p in (dest / "noarch").iterdir()) == sorted(
        p.name for p in (local_channel / "noarch").iterdir()
    )
    assert build_local_channel(dest) == dest  # second call: already there


@pytest.mark.slow
def test_python_and_pip_install_and_run(local_channel: Path, tmp_path: Path) -> None:
    records = asyncio.run(
        rattler.solve(
            sources=[channel_url(local_channel)],
            specs=[f"python {PY_MM}.*", "pip"],
            platforms=["linux-64", "noarch"],
            virtual_packages=[],
        )
    )
    assert {r.name.normalized for r in records} == {"python", "pip"}
    prefix = tmp_path / "env"
    # Package cache beside the channel, so it follows $ENVCTL_TEST_CHANNEL_CACHE
    # and warm runs skip the bz2 extraction.  (rattler checks the cached copy's
    # sha256, so a rebuilt channel would not be served stale files anyway.)
    cache = local_channel.parent / f"{local_channel.name}-rattler-cache"
    asyncio.run(rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False))

    py = prefix / "bin" / "python"
    out = subprocess.run(
        [str(py), "-c", "import sys, ssl, sqlite3, ctypes, json; print(sys.version); print(sys.prefix)"],
        env=_clean_env(), capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.splitlines()
    assert out[0].startswith(PY_VERSION + " ")
    assert Path(out[1]) == prefix  # found its own prefix, not the host's

    pip = subprocess.run(
        [str(py), "-m", "pip", "--version"], env=_clean_env(), capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert str(prefix / "lib" / f"python{PY_MM}" / "site-packages" / "pip") in pip
    assert (prefix / "bin" / "pip").exists()  # entry point from link.json


def test_gpu_probe_needs_cuda(local_channel: Path) -> None:
    assert "envctl-gpu-probe" in _solve(local_channel, ["envctl-gpu-probe"], virtual=[_cuda("11.8")])
    with pytest.raises(SolverError, match="__cuda"):
        _solve(local_channel, ["envctl-gpu-probe"])


def test_cuda_version_constrains_driver(local_channel: Path) -> None:
    # rattler.solve parses spec *strings* strictly: "cuda-version 12.9" is an
    # InvalidMatchSpecError there, so spell the operator out.
    with pytest.raises(SolverError, match="__cuda"):
        _solve(local_channel, ["cuda-version ==12.9"], virtual=[_cuda("11.8")])
    assert _solve(local_channel, ["cuda-version ==12.9"], virtual=[_cuda("12.9")])["cuda-version"] == "12.9"
    # No __cuda at all (a CPU box): the constraint does not apply.
    assert _solve(local_channel, ["cuda-version ==12.9"])["cuda-version"] == "12.9"
    # The highest cuda-version the driver allows is chosen.
    assert _solve(local_channel, ["cuda-version"], virtual=[_cuda("12.4")])["cuda-version"] == "12.4"


def test_libprotobuf_versions(local_channel: Path) -> None:
    assert _solve(local_channel, ["libprotobuf <5"])["libprotobuf"] == "4.25.3"
    assert _solve(local_channel, ["libprotobuf"])["libprotobuf"] == "6.31.1"


@pytest.mark.parametrize("platform", ["linux-aarch64", "osx-arm64"])
def test_foreign_platform_locks_on_this_host(local_channel: Path, platform: str) -> None:
    specs = [f"python {PY_MM}.*", "pip"] + (["envctl-arch-probe"] if platform == "linux-aarch64" else [])
    records = asyncio.run(
        rattler.solve(sources=[channel_url(local_channel)], specs=specs, platforms=[platform, "noarch"])
    )
    subdirs = {r.name.normalized: r.subdir for r in records}
    assert subdirs["python"] == platform
    assert subdirs["pip"] == "noarch"
    if platform == "linux-aarch64":
        assert subdirs["envctl-arch-probe"] == "linux-aarch64"
    else:
        with pytest.raises(SolverError):
            _solve(local_channel, ["envctl-arch-probe"], platform=platform)
