"""Can this machine run a target? The one answer that create, certify, status,
doctor, run, export and the whole-matrix run all use.

A target runs here when this machine is one of its platforms and, for a GPU
execution provider, an NVIDIA GPU is present (nvidia-smi or a Jetson's L4T)
whose driver supports the target's CUDA major. Otherwise the target is
"lock-only" here: its lock can still be solved and checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from envctl.host.facts import cached_host_facts
from envctl.host.platform import host_platform
from envctl.matrix.loader import Target

# Execution providers that need an NVIDIA GPU (TensorRT runs on top of CUDA).
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def needs_gpu(target: Target) -> bool:
    return target.execution_provider in GPU_PROVIDERS


@dataclass(frozen=True)
class Runnability:
    """Whether a target runs here; when not, why (short) and what would change that (advice)."""

    runs_here: bool
    reason: str | None = None  # "lock-only: ...", as certificates record it
    advice: str | None = None  # one paragraph for a refusal: why, and what to do

    def __bool__(self) -> bool:
        return self.runs_here


def _major(version: str) -> int:
    head = str(version).split(".")[0]
    return int(head) if head.isdigit() else 0


def pack_advice(target: Target) -> str:
    """The way to a machine that cannot build the env or run envctl (a JetPack 5 board's Python 3.8):
    pack it here, install it there with sh. Windows has no sh: there, only create works."""
    if not [p for p in target.platforms if not p.startswith("win-")]:
        return ""
    bundle = f"{target.name}.sh"
    return (f"; or, where that machine cannot run envctl (a Jetson on JetPack 5 has Python 3.8), pack the env here "
            f"with `envctl pack --target {target.name} --out {bundle}` and install it there with "
            f"`sh {bundle} --prefix DIR` (it needs only sh and tar)")


def runnability(target: Target, facts: dict | None = None) -> Runnability:
    """Can this host run `target`? `facts` (from host_facts) are read only when a GPU matters,
    so the answer for a CPU target costs no nvidia-smi call."""
    host = (facts or {}).get("platform") or host_platform()
    lock_only = f"or `envctl lock {target.name}` to make and check its lock here without an env"
    if host not in target.platforms:
        where = " or ".join(target.platforms)
        return Runnability(
            False, f"lock-only: the target runs on {', '.join(target.platforms)}, this host is {host}",
            f"target '{target.name}' runs on {where}, and this machine is {host}. "
            f"Run `envctl create --target {target.name}` on a {where} machine{pack_advice(target)}, {lock_only}.")
    if not needs_gpu(target):
        return Runnability(True)
    facts = facts if facts is not None and "has_nvidia_gpu" in facts else cached_host_facts()
    cuda = target.cuda or "?"
    if not facts.get("has_nvidia_gpu"):
        return Runnability(
            False, f"lock-only: the target needs {target.execution_provider} (CUDA {cuda}), this host has no NVIDIA GPU",
            f"target '{target.name}' needs {target.execution_provider} (CUDA {cuda}), and this machine has no NVIDIA "
            f"GPU (no nvidia-smi, no Jetson L4T). Run it on a machine with an NVIDIA driver for CUDA {cuda} or newer, "
            f"{lock_only}.")
    driver = (facts.get("nvidia") or {}).get("driver_cuda") or ""
    if driver and target.cuda and _major(driver) < _major(target.cuda):
        return Runnability(
            False, f"lock-only: the target needs CUDA {target.cuda}, this host's NVIDIA driver supports CUDA {driver} at most",
            f"target '{target.name}' needs CUDA {target.cuda}, and this machine's NVIDIA driver supports CUDA "
            f"{driver} at most. Upgrade the driver to one for CUDA {target.cuda} or newer, {lock_only}.")
    return Runnability(True)
