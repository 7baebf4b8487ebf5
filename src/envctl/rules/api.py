"""Compatibility rules: what a matrix target cannot do, found before any download.

Semantics (the contract `envctl matrix check` prints):

* A version spec admits a set of KNOWN release lines: the major.minor lines in
  `facts.py` it `contains` (probing each line's first and last patch and every
  version the spec names, so an exact local build such as torch
  "2.1.0a0+41361538.nv23.06" lands on the 2.1 line).
* torch, onnx and onnxruntime candidates are narrowed by the target's Python
  where the facts give wheel Python ranges: a solver cannot pick a release
  without a wheel for that Python. Only when nothing is left is that a finding
  (an error from pip; a warning from a conda channel, whose builds may cover
  other Pythons than PyPI's).
* A rule over packages A x B looks at every candidate combination. If EVERY
  combination breaks: "error" when all facts used are confirmed, else
  "warning". If only SOME break: a "warning" naming the safe bound.
* Facts read from PyPI wheels (Python ranges, declared protobuf floors,
  onnxruntime-gpu CUDA/cuDNN) only warn where the package comes from a source
  they may not describe (a conda channel, a Jetson wheel index). Messages on
  unconfirmed facts say "UNCONFIRMED".
* A spec that admits no known release gives one "not-yet-known" warning and
  is not checked; never an error.
* Packages left unset count as what rendering adds (`implied_requirements`:
  onnxscript for the dynamo exporter, numpy<2 for old onnxruntime/torch),
  else as any version.
* The "dynamo" exporter means `torch.onnx.export(..., dynamo=True)`.

Rules are registered in `RULES` with an id; most are declarative `line_rule`
entries (judge each candidate line of one package against a fact), the rest
small functions. Each has a one-line description (`describe_rules()`).
"""

from __future__ import annotations

from functools import lru_cache

from envctl.rules import ruleset  # noqa: F401 - registers the rules
from envctl.matrix.loader import Matrix, Target
from envctl.rules.engine import RULES, Finding, Implied, RuleContext, admitted  # admitted is public

__all__ = ["Finding", "Implied", "admitted", "check_target", "check_matrix", "implied_requirements", "describe_rules"]


# --- public API ----------------------------------------------------------------
def describe_rules() -> list[tuple[str, str]]:
    """(rule id, one-line description) in check order; an id may have several entries (one per case)."""
    return [(rule.id, rule.description) for rule in RULES]


@lru_cache(maxsize=256)
def _judged(target: Target) -> RuleContext:
    """The target's context with every rule run once. A render asks for the implied packages and
    the blocking findings, and the pipeline asks before rendering: one judgement serves them all
    (a Target is frozen, so the answer cannot go stale)."""
    ctx = RuleContext(target)
    for rule in RULES:
        ctx.rule = rule.id
        rule.check(ctx)
    return ctx


def check_target(target: Target) -> list[Finding]:
    return list(_judged(target).out)


def check_matrix(matrix: Matrix) -> dict[str, list[Finding]]:
    return {name: check_target(target) for name, target in matrix.targets.items()}


def implied_requirements(target: Target) -> list[Implied]:
    return list(_judged(target).implied)
