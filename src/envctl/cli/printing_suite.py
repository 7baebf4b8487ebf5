"""What `envctl status`, `envctl certify` (several targets) and `envctl report --drift` print for people.

The suite computes its result and its Markdown summary (suite/summary.py, a
file it writes); this is the terminal's view of the same result.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.table import Table

from envctl.core.output import console, err_console, escape
from envctl.suite.status import Stage, TargetStatus, device_label
from envctl.suite.summary import (OUTCOME_STYLE, clip, drift_verdict, failing, failure_lines, lock_only_note,
                                  num, seconds, short_detail, stack, worst_text)


class SuiteProgress:
    """One live line per target on a terminal; plain timestamped lines in CI logs."""

    def __init__(self) -> None:
        self._live: Any = None  # a rich Progress on a terminal
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
    console.print(f"{verdict}: {counts} in {seconds(suite.seconds)}{escape(drift_note + lock_only_note(suite))}.")
    from envctl.core.output import verbosity

    for kind, path in suite.written.items() if verbosity() >= 0 else ():
        console.print(f"[dim]{kind} -> {escape(path)}[/]")


_STYLE = {"ok": "green", "missing": "dim", "stale": "yellow", "failed": "bold red", "n/a": "cyan", "unknown": "yellow"}
_SUMMARY_STYLE = {"certified": "green", "lock-only": "cyan", "failed": "bold red", "expected-fail": "magenta",
                  "unexpected-pass": "bold yellow", "stale": "yellow", "incomplete": "dim"}


def _cell(*stages: Stage, ok_text: str = "ok") -> str:
    from envctl.core.output import escape

    for stage in stages:
        if not stage.ok:
            return f"[{_STYLE[stage.state]}]{stage.state}[/]"
    last = stages[-1]
    return "[cyan]n/a[/]" if last.state == "n/a" else f"[green]{escape(ok_text)}[/]"


def print_status(statuses: list[TargetStatus]) -> None:
    from envctl.core.output import escape
    from rich.table import Table

    from envctl.core.output import console

    table = Table(title="Pipeline status", title_justify="left")
    for col in ("target", "state", "rendered", "locked", "env", "certificate", "certified at", "host", "next"):
        table.add_column(col, overflow="fold")
    for s in statuses:
        cert = s.certificate or {}
        if s.certified.state == "missing":
            cert_cell = "[dim]missing[/]"
        else:
            label = "lock-only" if cert.get("certified") == "lock-only" else (cert.get("result") or "?")
            style = "red" if label == "failed" else ("cyan" if label == "lock-only" else "green")
            fresh = "" if s.cert_fresh.state == "ok" else f" [{_STYLE[s.cert_fresh.state]}]({s.cert_fresh.state})[/]"
            cls = f" {escape(cert['failure_class'])}" if cert.get("failure_class") else ""
            if s.device:  # the local one only solved it; the device ran it
                label = "solved only" if label == "lock-only" else label
            caveats = len(cert.get("caveats") or [])
            noted = f" [yellow]({caveats} caveat{'s' if caveats != 1 else ''})[/]" if caveats else ""
            cert_cell = f"[{style}]{escape(label)}[/]{cls}{noted}{fresh}"
        if s.device:
            colour = "green" if s.device.get("result") == "passed" and s.device["fresh"] else "yellow"
            cert_cell += f" [{colour}]{escape(device_label(s))}[/]"
        table.add_row(
            escape(s.target), f"[{_SUMMARY_STYLE[s.summary]}]{s.summary}[/]",
            _cell(s.rendered, s.render_fresh, ok_text="fresh"), _cell(s.locked, s.lock_fresh, ok_text="fresh"),
            _cell(s.env, ok_text="matches lock"), cert_cell,
            escape(cert.get("created_at") or "-"), escape(cert.get("hostname") or "-"),
            escape(s.next) if s.next else "[green]-[/]",
        )
    console.print(table)
    for s in statuses:
        for line in (s.certificate or {}).get("caveats") or []:
            console.print(f"[yellow]caveat[/] {escape(s.target)}: {escape(line)}", soft_wrap=True)
    todo = [s for s in statuses if s.next]
    for s in todo:
        console.print(f"{escape(s.target)}: {escape(s.why)} -> [bold]{escape(s.next)}[/]", soft_wrap=True)
    if not todo:
        console.print(f"All {len(statuses)} target(s) are up to date.")
