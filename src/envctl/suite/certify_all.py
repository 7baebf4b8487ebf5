"""Certify many targets in one run: what `envctl certify --all` does in CI.

Per target: render and lock when missing or stale, build the env from its lock
(only where the target can run), certify it, and turn the certificate into an
outcome: passed, failed, xfailed (marked `xfail` and still failing), xpassed
(marked `xfail` but passing: the mark is out of date, so the run fails) or
lock-only (another platform, or a GPU this host lacks: the lock was solved or
found fresh, nothing ran). An error in one target, even an EnvctlError from its
solve, is that target's failure; the others still run.

Drift: every target runs the smoke models on the same seeded inputs and keeps
a fingerprint of ONNX Runtime's outputs (16 sampled values and the mean per
output). `drift()` compares those fingerprints across targets and exporters,
which says how far two version stacks disagree numerically, not only whether
each agrees with its own PyTorch.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, TypedDict

from envctl.certify.certificate import Certificate
from envctl.core.errors import EnvctlError, WriteFailed

OK_OUTCOMES = ("passed", "xfailed", "lock-only")
# Failures of the host-side stages before the smoke run (the runner's classes
# are the protocol's: smoke/envctl_smoke_protocol.py FAILURE_CLASSES): class and remedy by stage.
STAGE_FAILURES = {
    "render": ("rule_error", "run `envctl matrix check {t}` for the rule and its source; fix the target or mark it `xfail`"),
    "lock": ("lock_failure", "read the solver's message; loosen the pin it names or change channels; "
                             "`envctl lock {t}` reproduces it"),
    "create": ("create_failure", "`envctl create --target {t} --force` reproduces it; a hash mismatch means "
                                 "the lock or a package changed: re-lock"),
    "certify": ("certify_failure", "`envctl certify --target {t}` reproduces it"),
}


@dataclass
class TargetResult:
    target: str
    outcome: str  # passed | failed | xfailed | xpassed | lock-only
    seconds: float
    xfail: str | None = None
    reason: str | None = None  # why lock-only
    failure: dict | None = None  # {class, stage, message, remedy}: the first failure
    certificate: Certificate | None = None
    certificate_path: Path | None = None
    models: tuple[str, ...] = ()
    exporters: tuple[str, ...] = ()
    platform: str = ""  # the conda platform of the host it was certified on
    platforms: tuple[str, ...] = ()  # the target's platforms (all lock-only when nothing ran)

    @property
    def runs(self) -> list[dict]:
        return self.certificate.runs if self.certificate else []

    @property
    def worst(self) -> dict | None:
        """Largest max_abs / max_rel against PyTorch over all runs."""
        worst: dict[str, float] = {}
        for run in self.runs:
            for key, value in (run.get("worst") or {}).items():
                if isinstance(value, (int, float)) and value > worst.get(key, -1.0):
                    worst[key] = value
        return worst or None

    def to_json(self) -> dict:
        cert = self.certificate.to_json() if self.certificate else {}
        return {"target": self.target, "outcome": self.outcome, "ok": self.outcome in OK_OUTCOMES,
                "seconds": round(self.seconds, 3), "xfail": self.xfail, "reason": self.reason,
                "failure": self.failure, "worst": self.worst, "versions": cert.get("versions"),
                "lock": cert.get("lock"), "certificate": str(self.certificate_path) if self.certificate_path else None,
                "runs": [{"model": r["model"], "exporter": r["exporter"], "status": r["status"],
                          "failure": r.get("failure"), "worst": r.get("worst")} for r in self.runs]}


@dataclass
class SuiteResult:
    matrix: Path
    targets: list[TargetResult]
    drift: list[dict]
    seconds: float
    written: dict[str, str] = field(default_factory=dict)  # report kind -> path
    fail_on_drift: bool = False
    fail_on_lock_only: bool = False

    @property
    def lock_only(self) -> list[str]:
        return [t.target for t in self.targets if t.outcome == "lock-only"]

    @property
    def drifted(self) -> list[str]:
        """Models whose outputs differ between two targets beyond tolerance (or in shape)."""
        return [entry["model"] for entry in self.drift if entry["above"]]

    @property
    def ok(self) -> bool:
        # Drift is reported, not fatal, unless asked: each target already passed
        # against its own PyTorch, and torch versions may differ on purpose.
        # --fail-on-lock-only: a CI job meant to run a target must not pass having only checked its lock.
        return (all(t.outcome in OK_OUTCOMES for t in self.targets) and not (self.fail_on_drift and self.drifted)
                and not (self.fail_on_lock_only and self.lock_only))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("passed", "failed", "xfailed", "xpassed", "lock-only"), 0)
        for t in self.targets:
            counts[t.outcome] += 1
        return counts

    def to_json(self) -> dict:
        return {"matrix": str(self.matrix), "ok": self.ok, "counts": self.counts(),
                "drifted": self.drifted, "fail_on_drift": self.fail_on_drift,
                "lock_only": self.lock_only, "fail_on_lock_only": self.fail_on_lock_only,
                "seconds": round(self.seconds, 3), "targets": [t.to_json() for t in self.targets],
                "drift": _json_safe(self.drift), "written": self.written}


def outcome_of(result: str, xfail: str | None) -> str:
    """A certificate's result ('passed'/'failed'/'skipped') under the target's xfail mark."""
    if result == "skipped":
        return "lock-only"
    if result == "passed":
        return "xpassed" if xfail else "passed"
    return "xfailed" if xfail else "failed"


def _stage_failure(stage: str, target: str, exc: BaseException) -> dict:
    klass, remedy = STAGE_FAILURES[stage]
    if isinstance(exc, EnvctlError):
        where = exc.where()  # str(exc) would repeat the hint, which is the remedy here
        message = f"{where}: {exc.message}" if where else exc.message
        remedy = exc.hint or remedy.format(t=target)
    else:  # a bug in envctl, not in the target: say so, with where it happened
        klass = "internal_error"
        frames = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" (at {frames[0].filename}:{frames[0].lineno})" if frames else ""
        message = f"{type(exc).__name__}: {exc}{at}"
        remedy = "this is a bug in envctl: please report it with this message"
    return {"class": klass, "stage": stage, "message": message, "remedy": remedy}


class _Common(TypedDict):
    """The TargetResult fields certify_target knows before the chain runs."""

    target: str
    xfail: str | None
    models: tuple[str, ...]
    exporters: tuple[str, ...]
    platform: str
    platforms: tuple[str, ...]


def certify_target(project, target, facts: dict, *, timeout: float | None, emit, lock_mode=None) -> TargetResult:
    """The stage chain for one target (None: the host interpreter); never raises for the target's own errors."""
    from envctl.certify.certify import certify_host
    from envctl.certify.certificate import HOST
    from envctl.pipeline.stages import LockMode, StageFailed, run_chain

    started = time.monotonic()
    name = target.name if target is not None else HOST
    xfail = getattr(target, "xfail", None)
    base = _Common(target=name, xfail=xfail, models=tuple(getattr(target, "models", ())),
                   exporters=tuple(getattr(target, "exporters", ())), platform=str(facts.get("platform") or ""),
                   platforms=tuple(getattr(target, "platforms", ())))
    try:
        if target is None:
            try:
                cert = certify_host(project.root, timeout=timeout, progress=emit, matrix=project.matrix)
            except Exception as exc:
                raise StageFailed("certify", exc) from exc
        else:
            chained = run_chain(project, target, refuse_lock_only=False, reuse_certificate=False, facts=facts,
                                timeout=timeout, lock_mode=lock_mode or LockMode.AUTO, progress=emit).certificate
            assert chained is not None  # run_chain certifies by default: every path that returns sets it
            cert = chained
    except KeyboardInterrupt:
        raise
    except StageFailed as failed:  # one target's error is its failure, never the run's end
        failure = _stage_failure(failed.stage, name, failed.error)
        # A bug in envctl is never the failure an xfail mark expects.
        expected = xfail if failure["class"] != "internal_error" else None
        return TargetResult(outcome=outcome_of("failed", expected), seconds=time.monotonic() - started,
                            failure=failure, **base)
    if target is None:
        base["models"] = tuple((cert.spec or {}).get("models", ()))
        base["exporters"] = tuple((cert.spec or {}).get("exporters", ()))
    return TargetResult(outcome=outcome_of(cert.result.value, xfail), seconds=time.monotonic() - started,
                        reason=cert.reason, failure=cert.failure.to_json() if cert.failure else None,
                        certificate=cert, certificate_path=cert.path, **base)


def run_suite(matrix_path: Path, names: list[str] | None = None, *, all_targets: bool = False, jobs: int = 1,
              timeout: float | None = None, junit: Path | None = None, markdown: Path | None = None,
              fail_on_drift: bool = False, fail_on_lock_only: bool = False, lock_mode=None,
              progress=None) -> SuiteResult:
    """Certify the chosen targets (`jobs` at a time), compare them, write the reports asked for.

    `progress`, if given, has `queued(names)`, `event(name, event, message, transient)` and
    `done(TargetResult)`; it is called from worker threads.
    """
    from envctl.host.facts import host_facts
    from envctl.matrix.project import Project
    from envctl.certify.certificate import HOST

    if jobs < 1:
        raise EnvctlError(f"-j/--jobs must be at least 1, not {jobs}")
    started = time.monotonic()
    project = Project.load(matrix_path)
    matrix = project.matrix
    names = list(dict.fromkeys(names or []))  # a target named twice runs once
    use_host = HOST in names and HOST not in matrix.targets
    rest = [n for n in names if not (use_host and n == HOST)]
    chosen: list = matrix.select(rest, all_targets) if (all_targets or rest) else []
    if use_host:
        chosen.append(None)  # None: the current interpreter
    if not chosen:
        raise EnvctlError("name at least one target, or pass --all.", file=matrix_path)
    facts = host_facts()
    labels = [t.name if t is not None else HOST for t in chosen]
    if progress:
        progress.queued(labels)

    def one(target) -> TargetResult:
        name = target.name if target is not None else HOST

        def emit(event: str, **info: Any) -> None:
            if progress:
                progress.event(name, event, str(info.get("message") or event), bool(info.get("transient")))

        result = certify_target(project, target, facts, timeout=timeout, emit=emit, lock_mode=lock_mode)
        if progress:
            progress.done(result)
        return result

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(chosen)), thread_name_prefix="envctl-certify")
    try:
        results = [f.result() for f in [pool.submit(one, t) for t in chosen]]
    finally:
        # On Ctrl-C/SIGTERM: start nothing new; smoke runs already going were killed (interrupts.run_cleanups).
        pool.shutdown(wait=False, cancel_futures=True)
    suite = SuiteResult(Path(matrix_path), results, drift(results), time.monotonic() - started,
                        fail_on_drift=fail_on_drift, fail_on_lock_only=fail_on_lock_only)
    write_reports(suite, junit, markdown)
    return suite


def write_reports(suite: SuiteResult, junit: Path | None, markdown: Path | None) -> None:
    """The JUnit and Markdown files asked for, and the Markdown appended to $GITHUB_STEP_SUMMARY when set."""
    from envctl.core.atomic import write_text_atomic
    from envctl.suite.junit import junit_xml
    from envctl.suite.summary import markdown_summary

    text = markdown_summary(suite)
    outputs = []
    if junit:
        outputs.append(("junit", Path(junit), junit_xml(suite)))
    if markdown:
        outputs.append(("markdown", Path(markdown), text))
    for kind, path, content in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, content)
        except OSError as exc:
            raise WriteFailed(f"cannot write the {kind} report to {path}: {exc.strerror or exc}") from None
        suite.written[kind] = str(path)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:  # GitHub Actions renders what steps append here on the run's page
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            suite.written["step_summary"] = step_summary
        except OSError as exc:
            raise WriteFailed(f"cannot append to $GITHUB_STEP_SUMMARY ({step_summary}): {exc.strerror or exc}") from None


# ---------------------------------------------------------------- drift


def _tolerances(spec: dict | None, run: dict) -> tuple[float, float]:
    """The atol/rtol this run was held to (per-model values win over the target's)."""
    for stage in run.get("stages") or []:
        details = stage.get("details") or {}
        if stage.get("name") == "inference" and "atol" in details and "rtol" in details:
            return float(details["atol"]), float(details["rtol"])
    tol = (spec or {}).get("tolerances") or {}
    return float(tol.get("atol", 1e-4)), float(tol.get("rtol", 1e-3))


def _value(x: Any) -> float:
    return float(x)  # the runner writes non-finite values as "nan"/"inf"/"-inf"; float() reads them


def _difference(x: float, y: float) -> float:
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    if math.isnan(x) or math.isnan(y):
        return math.inf
    return abs(x - y)


def compare_fingerprints(a: dict, b: dict) -> dict:
    """Compare two members' fingerprints: the largest difference and how it stands to tolerance.

    The tolerance for each value is the looser of the two targets' own
    atol + rtol*|value|, so two targets that each pass against PyTorch are
    flagged only when they disagree by more than either would accept.
    """
    fa, fb = a["fingerprint"], b["fingerprint"]
    out: dict[str, Any] = {"a": a["label"], "b": b["label"], "comparable": True, "above": False, "problem": None,
                           "max_abs": 0.0, "mean_abs": 0.0, "tolerance": None, "ratio": 0.0, "output": None}
    if fa.get("input_sha256") != fb.get("input_sha256") or fa.get("sizes") != fb.get("sizes"):
        return out | {"comparable": False, "problem": "the seeded inputs differ (input_sha256 or sizes), "
                                                     "so the outputs cannot be compared"}
    oa, ob = fa.get("outputs") or [], fb.get("outputs") or []
    if len(oa) != len(ob):
        return out | {"above": True, "problem": f"{len(oa)} outputs against {len(ob)}", "max_abs": math.inf, "ratio": math.inf}
    for x_out, y_out in zip(oa, ob):
        if list(x_out.get("shape") or []) != list(y_out.get("shape") or []):
            return out | {"above": True, "output": x_out.get("name"), "max_abs": math.inf, "ratio": math.inf,
                          "problem": f"output {x_out.get('name')!r} has shape {x_out.get('shape')} against {y_out.get('shape')}"}
        pairs = [("samples", x, y) for x, y in zip(x_out.get("samples") or [], y_out.get("samples") or [])]
        pairs.append(("mean", x_out.get("mean", 0.0), y_out.get("mean", 0.0)))
        for kind, x, y in pairs:
            x, y = _value(x), _value(y)
            diff = _difference(x, y)
            tol = max(a["atol"] + a["rtol"] * abs(x), b["atol"] + b["rtol"] * abs(y))
            ratio = 0.0 if diff == 0 else (diff / tol if tol > 0 and math.isfinite(diff) and math.isfinite(tol) else math.inf)
            key = "mean_abs" if kind == "mean" else "max_abs"
            out[key] = max(out[key], diff)
            if ratio > out["ratio"] or out["tolerance"] is None:
                out.update(ratio=ratio, tolerance=tol, output=x_out.get("name"))
    out["above"] = out["ratio"] > 1.0
    return out


def drift(results: list[TargetResult]) -> list[dict]:
    """Per model: every pair of (target, exporter) fingerprints compared; the largest difference named."""
    members: dict[str, list[dict]] = {}
    for result in results:
        for run in result.runs:
            fp = run.get("fingerprint")
            if not fp or not fp.get("outputs"):
                continue
            atol, rtol = _tolerances(result.certificate.spec if result.certificate else {}, run)
            members.setdefault(run["model"], []).append({
                "label": f"{result.target}[{run['exporter']}]", "target": result.target, "exporter": run["exporter"],
                "status": run.get("status"), "fingerprint": fp, "atol": atol, "rtol": rtol})
    report = []
    for model, group in members.items():
        # Only outputs of the same inputs compare: members whose seeded inputs
        # differ from the largest group are named once, not paired.
        by_inputs: dict[tuple, list[dict]] = {}
        for m in group:
            by_inputs.setdefault(_inputs_key(m["fingerprint"]), []).append(m)
        main = max(by_inputs.values(), key=len)
        pairs = [compare_fingerprints(a, b) for a, b in combinations(main, 2)]
        above = [p for p in pairs if p["above"]]
        # The pair shown: the largest difference among those over tolerance, else overall.
        worst = max(above or pairs, key=lambda p: (p["max_abs"], p["mean_abs"]), default=None)
        odd = [m["label"] for m in group if m not in main]
        report.append({
            "model": model, "members": [m["label"] for m in group],
            "targets": sorted({m["target"] for m in group}), "pairs": len(pairs),
            "worst": worst, "above": above, "all_pairs": pairs,
            "incomparable": [{"members": odd, "problem": "their seeded inputs differ from the others' (input_sha256 or "
                                                         "sizes), so their outputs cannot be compared"}] if odd else []})
    return report


def _inputs_key(fp: dict) -> tuple:
    return fp.get("input_sha256"), repr(fp.get("sizes"))


def _json_safe(value: Any) -> Any:
    """Infinity and NaN are not JSON: write them as the runner does, as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value

