"""Compatibility rules (PLACEHOLDER: being written; API is fixed).

API used by render, cli and doctor:
  Finding, Implied, check_target(target) -> list[Finding],
  check_matrix(matrix) -> dict[str, list[Finding]],
  implied_requirements(target) -> list[Implied]
"""

from __future__ import annotations

from dataclasses import dataclass

from .matrix import Matrix, Target
from .versions import Spec


@dataclass(frozen=True)
class Finding:
    target: str
    severity: str  # "error" (cannot work) or "warning" (risky, unconfirmed, not yet known)
    rule: str
    message: str
    source: str
    remedy: str = ""


@dataclass(frozen=True)
class Implied:
    package: str
    spec: Spec
    reason: str
    source: str


def check_target(target: Target) -> list[Finding]:
    return []


def check_matrix(matrix: Matrix) -> dict[str, list[Finding]]:
    return {name: check_target(t) for name, t in matrix.targets.items()}


def implied_requirements(target: Target) -> list[Implied]:
    out = []
    if "dynamo" in target.exporters:
        out.append(Implied("onnxscript", Spec.parse(">=0.6.0"), "placeholder", ""))
    return out
