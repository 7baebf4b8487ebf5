"""Conda platforms and the virtual packages a target is solved against.

Virtual packages are taken from the *target*, never from the machine that
locks: a CUDA target locks on a CPU-only runner, and a CPU target gets no
`__cuda` (no implicit CUDA, unlike conda-lock's default `__cuda=11.4`).
"""

from __future__ import annotations

import platform
import sys

from envctl.matrix.loader import Target

# Floors a target assumes unless it overrides them with `virtual_packages`.
# glibc 2.28 is manylinux_2_28, what current PyTorch and onnxruntime wheels
# need (https://peps.python.org/pep-0600/); macOS 11 is the first arm64 macOS.
DEFAULT_VIRTUAL = {
    "linux-64": {"__unix": "0", "__linux": "5.10", "__glibc": "2.28"},
    "linux-aarch64": {"__unix": "0", "__linux": "5.10", "__glibc": "2.28"},
    "osx-arm64": {"__unix": "0", "__osx": "11.0"},
    "osx-64": {"__unix": "0", "__osx": "10.15"},
    "win-64": {"__win": "0"},
}


def virtual_packages(target: Target, platform_name: str) -> dict[str, str]:
    """Virtual packages (name -> version) to solve `target` for `platform_name`."""
    packages = dict(DEFAULT_VIRTUAL[platform_name])
    if target.cuda and not platform_name.startswith("osx"):
        packages["__cuda"] = target.cuda
    packages.update(dict(target.virtual_packages))
    return dict(sorted(packages.items()))


def host_platform() -> str:
    """The conda platform name of this machine."""
    machine = platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64"}.get(machine, machine)
    if sys.platform.startswith("linux"):
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return f"osx-{arch}"
    if sys.platform == "win32":
        return f"win-{arch}"
    return f"{sys.platform}-{arch}"
