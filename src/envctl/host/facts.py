"""Facts about the machine a certificate was made on.

Read from the OS, never assumed: nvidia-smi where it exists, and on Jetson
boards (which have no nvidia-smi) the L4T release file and the CUDA version
file, as NVIDIA documents them.
"""

from __future__ import annotations

import functools
import os
from typing import Any
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path

from envctl.host.platform import host_platform

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
CUDA_VERSION_FILES = (Path("/usr/local/cuda/version.json"), Path("/usr/local/cuda/version.txt"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi() -> dict | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, errors="replace", timeout=20, check=True,
        ).stdout
        header = subprocess.run([exe], capture_output=True, text=True, errors="replace", timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {"error": "nvidia-smi is present but failed"}
    gpus = [dict(zip(("name", "driver"), (p.strip() for p in line.split(",")))) for line in out.splitlines() if line.strip()]
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {"gpus": gpus, "driver_cuda": match.group(1) if match else None}


def _jetson() -> dict | None:
    try:
        text = TEGRA_RELEASE.read_text()
    except OSError:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    info = {"l4t": f"R{match.group(1)}.{match.group(2)}" if match else text.strip()[:80]}
    for path in CUDA_VERSION_FILES:
        try:
            found = re.search(r"(\d+\.\d+(\.\d+)?)", path.read_text())
        except OSError:
            continue
        if found:
            info["cuda"] = found.group(1)
            break
    return info


def solver_virtual_packages() -> dict[str, str]:
    """The virtual packages py-rattler detects here (__glibc, __cuda, __osx, ...): what a solve on this
    machine would see, so host checks agree with the solver. Empty when rattler cannot tell."""
    try:
        import rattler

        found = [v.into_generic() for v in rattler.VirtualPackage.detect()]
    except Exception:  # detection reads libcuda and system files; a failure only costs the cross-check
        return {}
    return {str(getattr(g.name, "normalized", g.name)): str(g.version) for g in found}


def host_facts() -> dict:
    libc, libc_version = platform.libc_ver()
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": host_platform(),
        "os": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "libc": f"{libc} {libc_version}".strip() or None,
    }
    nvidia = _nvidia_smi()
    jetson = _jetson()
    facts["nvidia"] = nvidia
    facts["jetson"] = jetson
    facts["has_nvidia_gpu"] = bool((nvidia and nvidia.get("gpus")) or jetson)
    virtual = solver_virtual_packages()
    facts["virtual_packages"] = virtual
    # The driver's CUDA as the solver sees it (libcuda), when nvidia-smi's header did not say.
    if virtual.get("__cuda") and nvidia is not None and not nvidia.get("driver_cuda"):
        nvidia["driver_cuda"] = virtual["__cuda"]
    if virtual.get("__cuda") and nvidia is None and not jetson:
        facts["nvidia"] = {"gpus": [], "driver_cuda": virtual["__cuda"]}
        facts["has_nvidia_gpu"] = True  # a CUDA driver that rattler finds is a GPU envctl can use
    return facts


@functools.lru_cache(maxsize=1)
def cached_host_facts() -> dict:
    """host_facts() once per process: several targets ask whether a GPU is here."""
    return host_facts()
