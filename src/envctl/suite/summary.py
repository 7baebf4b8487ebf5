"""What a whole-matrix certification prints: live progress, the summary table,
drift, failures, and the Markdown summary (also for $GITHUB_STEP_SUMMARY).

Kept apart from report.py so the suite's output can change without touching
the single-target printing.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

from envctl.core.output import escape
from rich.table import Table

from envctl.core.output import RESULT_STYLE, console, err_console

OUTCOME_STYLE = RESULT_STYLE | {"xfailed": "yellow", "xpassed": "bold magenta", "lock-only": "cyan"}
LISTED_PAIRS = 10  # flagged drift pairs listed in Markdown; --json has them all
OUTCOME_MARK = {"passed": "✅", "failed": "❌", "xfailed": "☑️", "xpassed": "⚠️", "lock-only": "⏭️"}


# ---------------------------------------------------------------- progress


class SuiteProgress:
    """One live line per target on a terminal; plain timestamped lines in CI logs."""

    def __init__(self) -> None:
        self._live = None
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._width = 0

    def __enter__(self) -> "SuiteProgress":
        if err_console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.table import Column

            # The name and clock columns never shrink; the message takes what is left.
            self._name_column = Column(no_wrap=True)
            self._live = Progress(
                SpinnerColumn(finished_text=" "), TextColumn("{task.fields[target]}", style="bold", table_column=self._name_column),
                TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=err_console, transient=False, expand=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def _plain(self, name: str, text: str) -> None:
        with self._lock:  # whole lines from parallel targets, never interleaved
            sys.stderr.write(f"{time.monotonic() - self._started:7.1f}s  {name.ljust(self._width)}  {text}\n")
            sys.stderr.flush()

    def queued(self, names: list[str]) -> None:
        self._width = max(map(len, names), default=0)
        if self._live is not None:
            self._name_column.min_width = self._width
        for name in names:
            if self._live is not None:
                self._tasks[name] = self._live.add_task("[dim]queued[/]", total=1, start=False, target=name.ljust(self._width))

    def event(self, name: str, event: str, message: str, transient: bool = False) -> None:
        if self._live is not None:
            task = self._tasks[name]
            self._live.start_task(task)  # no-op once started: the clock runs from the first event
            self._live.update(task, description=f"[bold]{escape(event)}[/] {escape(message)}")
        elif not transient:
            self._plain(name, f"{event}: {message}")

    def done(self, result) -> None:
        text = f"[{OUTCOME_STYLE.get(result.outcome, 'bold')}]{result.outcome}[/] {escape(short_detail(result))}"
        if self._live is not None:
            task = self._tasks[result.target]
            self._live.start_task(task)
            self._live.update(task, description=text, completed=1)
            self._live.stop_task(task)
        else:
            self._plain(result.target, f"{result.outcome.upper()} in {seconds(result.seconds)}  {short_detail(result)}")


# ---------------------------------------------------------------- shared text


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


# ---------------------------------------------------------------- terminal


def print_suite(suite) -> None:
    from envctl.core.output import verbosity

    if verbosity() >= 0:
        _print_tables(suite)
    _print_failures_and_verdict(suite)  # under -q: only these (the errors, and the final line)


def _print_tables(suite) -> None:
    table = Table(title=f"Certification of {suite.matrix}", title_justify="left")
    for col in ("target", "result", "failing stage", "class", "worst abs / rel", "time", "stack", "detail"):
        table.add_column(col, overflow="fold")
    for t in suite.targets:
        stage, klass = failing(t)
        table.add_row(t.target, f"[{OUTCOME_STYLE.get(t.outcome, 'bold')}]{t.outcome}[/]", stage, klass,
                      worst_text(t), seconds(t.seconds), escape(stack(t)), escape(short_detail(t)))
    console.print(table)
    if suite.drift:
        d = Table(title="Drift across targets (ORT outputs on the same seeded inputs)", title_justify="left")
        for col in ("model", "runs", "largest difference between", "max |Δ| sampled", "|Δ mean|", "tolerance", "verdict"):
            d.add_column(col, overflow="fold")
        for entry in suite.drift:
            w = entry["worst"] or {}
            style = "bold red" if entry["above"] else "green"
            d.add_row(entry["model"], f"{len(entry['members'])} in {len(entry['targets'])} target(s)",
                      escape(f"{w['a']} vs {w['b']}") if w else "-", num(w.get("max_abs")), num(w.get("mean_abs")),
                      num(w.get("tolerance")), f"[{style}]{escape(drift_verdict(entry))}[/]")
            for group in entry["incomparable"]:
                d.add_row("", "", escape(", ".join(group["members"])), "", "", "", f"[yellow]not compared: {escape(group['problem'])}[/]")
        console.print(d)


def _print_failures_and_verdict(suite) -> None:
    bad = [t for t in suite.targets if t.outcome in ("failed", "xpassed")]
    for t in bad:
        console.print(f"[{OUTCOME_STYLE[t.outcome]}]{t.outcome}[/] [bold]{escape(t.target)}[/]"
                      + (f" -> {t.certificate_path}" if t.certificate_path else ""))
        if t.outcome == "xpassed":
            console.print(f"  marked xfail ({escape(t.xfail or '')}) but every run passed: remove `xfail` from the matrix")
        for what, f in failure_lines(t):
            console.print(f"  {escape(what)} {escape(f.get('stage', ''))}/[red]{escape(f.get('class', ''))}[/]: "
                          f"{escape(clip(f.get('message', ''), 600))}\n    remedy: {escape(f.get('remedy') or '-')}")
    counts = ", ".join(f"{n} {k}" for k, n in suite.counts().items() if n)
    verdict = "[green]OK[/]" if suite.ok else "[bold red]FAILED[/]"
    drift_note = f"; drift above tolerance in {', '.join(suite.drifted)}" if suite.drifted else ""
    console.print(f"{verdict}: {counts} in {seconds(suite.seconds)}{escape(drift_note + _lock_only_note(suite))}.")
    from envctl.core.output import verbosity

    for kind, path in suite.written.items() if verbosity() >= 0 else ():
        console.print(f"[dim]{kind} -> {escape(path)}[/]")


def _lock_only_note(suite) -> str:
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
             + _lock_only_note(suite), "",
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
