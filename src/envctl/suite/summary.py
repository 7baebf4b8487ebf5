"""A whole-matrix certification summed up: the cells its tables show, and the
Markdown summary it writes (also for $GITHUB_STEP_SUMMARY).

The terminal's view of the same result (live progress, tables, failures) is
cli/printing_suite.py: the suite computes, the CLI prints.
"""

from __future__ import annotations

import math
from typing import Any

from envctl.core.output import RESULT_STYLE

OUTCOME_STYLE = RESULT_STYLE | {"xfailed": "yellow", "xpassed": "bold magenta", "lock-only": "cyan"}
LISTED_PAIRS = 10  # flagged drift pairs listed in Markdown; --json has them all
OUTCOME_MARK = {"passed": "✅", "failed": "❌", "xfailed": "☑️", "xpassed": "⚠️", "lock-only": "⏭️"}


# ---------------------------------------------------------------- cells


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m {value % 60:02.0f}s"


def num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):  # "inf"/"nan" from JSON-safe values
        return value
    return "inf" if math.isinf(value) else f"{value:.2e}"


def worst_text(result) -> str:
    worst = result.worst
    return f"{num(worst.get('max_abs'))} / {num(worst.get('max_rel'))}" if worst else "-"


def stack(result) -> str:
    """The measured versions that matter for export, as the env reported them."""
    cert = result.certificate
    versions = (cert.versions if cert else None) or {}
    parts = [f"{short} {versions[key]}" for key, short in
             (("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", "ort")) if versions.get(key)]
    spec = (cert.spec if cert else None) or {}
    if spec.get("opset"):
        parts.append(f"opset {spec['opset']}")
    return ", ".join(parts) or "-"


def clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gist(text: str, limit: int = 160) -> str:
    """One line for a table cell: a solver or traceback puts its cause last, a runner message is one line."""
    lines = [part.strip() for part in str(text).splitlines() if part.strip()]
    return clip(lines[-1] if lines else "", limit)


def short_detail(result) -> str:
    failure = result.failure or {}
    if result.outcome == "lock-only":
        lock = result.certificate.lock if result.certificate else None
        state = "lock fresh" if lock and lock.fresh else f"lock stale: {lock.problem if lock else 'no lock'}"
        return f"{(result.reason or '').removeprefix('lock-only: ')} ({state})"
    if result.outcome == "xpassed":
        return f"marked xfail ({result.xfail}) but passed: remove the mark"
    if result.outcome == "xfailed":
        return f"xfail: {result.xfail}"
    if result.outcome == "failed":
        return gist(failure.get("message", ""))
    return ""


def failing(result) -> tuple[str, str]:
    failure = result.failure or {}
    if result.outcome in ("failed", "xfailed") and failure:
        return failure.get("stage", ""), failure.get("class", "")
    return "", ""


def failure_lines(result) -> list[tuple[str, dict]]:
    """(what, failure) for each failing run, or the target-level failure when no run shows it."""
    lines = [(f"{r['model']}[{r['exporter']}]", r["failure"]) for r in result.runs
             if r.get("status") == "failed" and r.get("failure")]
    if not lines and result.failure:
        lines.append(("[env]", result.failure))
    return lines


def drift_verdict(entry: dict) -> str:
    worst = entry["worst"]
    if len(entry["members"]) < 2:
        return "one run: nothing to compare"
    if worst is None:
        return "not comparable"
    if entry["above"]:
        return f"ABOVE tolerance in {len(entry['above'])} pair(s)" + (f": {worst['problem']}" if worst.get("problem") else f" (x{worst['ratio']:.1f})")
    return f"ok ({100 * worst['ratio']:.2g}% of tolerance)" if math.isfinite(worst["ratio"]) else "ok"


def lock_only_note(suite) -> str:
    """Why a run with --fail-on-lock-only failed although nothing else did."""
    if not (getattr(suite, "fail_on_lock_only", False) and getattr(suite, "lock_only", None)):
        return ""
    return f"; lock-only, but this run had to certify by running (--fail-on-lock-only): {', '.join(suite.lock_only)}"


# ---------------------------------------------------------------- markdown


def _cell(text: Any, limit: int = 160) -> str:
    text = clip(str(text), limit) if text not in (None, "") else ""
    return text.replace("|", "\\|").replace("<", "&lt;") or " "


def markdown_summary(suite) -> str:
    counts = " · ".join(f"{n} {k}" for k, n in suite.counts().items() if n)
    lines = [f"## envctl certify: {'✅ OK' if suite.ok else '❌ FAILED'}", "",
             f"{counts}, {len(suite.targets)} target(s) in {seconds(suite.seconds)} (matrix `{suite.matrix}`)"
             + (f"; ❌ drift above tolerance in {', '.join(suite.drifted)}" if suite.drifted else "")
             + lock_only_note(suite), "",
             "| target | result | failing stage | class | worst vs PyTorch (abs / rel) | time | stack | detail |",
             "|---|---|---|---|---|---|---|---|"]
    for t in suite.targets:
        stage, klass = failing(t)
        lines.append("| " + " | ".join([
            f"`{_cell(t.target)}`", f"{OUTCOME_MARK.get(t.outcome, '')} {t.outcome}", _cell(stage), _cell(klass),
            worst_text(t), seconds(t.seconds), _cell(stack(t)), _cell(short_detail(t))]) + " |")
    lines += ["", "### Drift across targets", "",
              "Each target runs the smoke models on the same seeded inputs; the table compares ONNX Runtime's "
              "outputs (16 sampled values and the mean of each output, every dynamic axis = 2) between every "
              "pair of target and exporter. Tolerance: the looser of the two targets' `atol + rtol·|value|`.", ""]
    if not suite.drift:
        lines.append("_No model ran in two places, so there is nothing to compare._")
    else:
        lines += ["| model | runs | largest difference between | max abs Δ (samples) | abs Δ (mean) | tolerance | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for entry in suite.drift:
            w = entry["worst"] or {}
            lines.append("| " + " | ".join([
                f"`{_cell(entry['model'])}`", f"{len(entry['members'])} in {len(entry['targets'])} target(s)",
                _cell(f"{w['a']} vs {w['b']}") if w else "-", num(w.get("max_abs")), num(w.get("mean_abs")),
                num(w.get("tolerance")), ("❌ " if entry["above"] else "") + _cell(drift_verdict(entry))]) + " |")
        for e in suite.drift:
            for p in e["above"][:LISTED_PAIRS]:
                what = p["problem"] or f"max abs Δ {num(p['max_abs'])} on {p['output']!r}, tolerance {num(p['tolerance'])}"
                lines.append(f"- `{e['model']}` above tolerance: {p['a']} vs {p['b']}: {_cell(what, 300)}")
            if len(e["above"]) > LISTED_PAIRS:
                lines.append(f"- `{e['model']}`: {len(e['above']) - LISTED_PAIRS} more pair(s) above tolerance (see `--json`)")
            for group in e["incomparable"]:
                lines.append(f"- `{e['model']}` not compared: {', '.join(group['members'])}: {group['problem']}")
    bad = [t for t in suite.targets if t.outcome in ("failed", "xpassed")]
    if bad:
        lines += ["", "### Failures", ""]
        for t in bad:
            if t.outcome == "xpassed":
                lines.append(f"- `{t.target}`: marked xfail ({_cell(t.xfail)}) but passed: remove `xfail` from the matrix")
            for what, f in failure_lines(t):
                lines.append(f"- `{t.target}` {what}: {f.get('stage', '')} / **{f.get('class', '')}**: "
                             f"{_cell(f.get('message', ''), 600)} Remedy: {_cell(f.get('remedy') or '-', 300)}")
    return "\n".join(lines) + "\n"
