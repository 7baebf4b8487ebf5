"""The host as envctl sees it agrees with the solver (py-rattler), and one check answers "can it run here"."""

from __future__ import annotations

import rattler

from envctl.host.facts import host_facts, solver_virtual_packages
from envctl.host.platform import host_platform
from envctl.host.runnable import runnability
from envctl.matrix.loader import load_matrix


def test_platform_agrees_with_rattler():
    assert host_platform() == str(rattler.Platform.current())


def test_facts_carry_what_the_solver_detects():
    facts = host_facts()
    assert facts["virtual_packages"] == solver_virtual_packages()
    assert "__unix" in facts["virtual_packages"] or "__win" in facts["virtual_packages"]
    if facts["virtual_packages"].get("__cuda"):
        assert facts["has_nvidia_gpu"]


def test_runnability_follows_platform_and_gpu(tmp_path):
    shipped = load_matrix(__import__("pathlib").Path(__file__).resolve().parents[2] / "envs" / "matrix.yaml")
    facts = {"platform": "linux-64", "has_nvidia_gpu": False}
    cpu = runnability(shipped.targets["linux-cpu"], facts)
    assert cpu.runs_here and cpu.reason is None
    gpu = runnability(shipped.targets["linux-cuda12"], facts)
    assert not gpu and "no NVIDIA GPU" in gpu.reason and "envctl lock linux-cuda12" in gpu.advice
    old_driver = runnability(shipped.targets["linux-cuda12"],
                             {"platform": "linux-64", "has_nvidia_gpu": True, "nvidia": {"driver_cuda": "11.4"}})
    assert not old_driver and "11.4" in old_driver.reason
    elsewhere = runnability(shipped.targets["macos-arm64-cpu"], facts)
    assert not elsewhere and "osx-arm64" in elsewhere.reason
