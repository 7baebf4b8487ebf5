"""Everything envctl prints for people: rich tables, progress, errors.

JSON for scripts is built here too (`*_json`), so the CLI only chooses.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import EnvctlError

# Logs and pipes get wide tables instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}
RESULT_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", "warning": "yellow", "lock-only": "cyan"}


def print_error(exc: EnvctlError) -> None:
    err_console.print(f"[bold red]envctl:[/] {escape(str(exc))}", soft_wrap=True)


class Progress:
    """A progress callback for the pipeline: `progress(event, **info)`.

    Steps print as they finish, the running one shows a spinner; on a
    non-terminal (CI logs) it prints plain lines.
    """

    def __init__(self) -> None:
        self._status = None
        self._started = time.monotonic()

    def __enter__(self) -> "Progress":
        if err_console.is_terminal:
            self._status = err_console.status("starting")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, event: str, **info: Any) -> None:
        message = info.get("message") or " ".join(f"{k}={v}" for k, v in info.items() if k != "message")
        line = f"[dim]{time.monotonic() - self._started:6.1f}s[/] [bold]{escape(event)}[/] {escape(str(message))}"
        if self._status is not None and info.get("transient"):
            self._status.update(line)
        else:
            err_console.print(line, soft_wrap=True)


# ---------------------------------------------------------------- matrix


def _spec(value: Any) -> str:
    return "-" if value is None else (str(value) or "*")


def matrix_json(matrix) -> dict:
    return {
        "matrix": str(matrix.path),
        "targets": [t.to_json() | {"definition_hash": t.definition_hash()} for t in matrix.targets.values()],
        "excluded": [e.__dict__ for e in matrix.excluded],
    }


def print_matrix(matrix) -> None:
    table = Table(title=f"Targets in {matrix.path}", title_justify="left")
    for col in ("target", "platforms", "python", "torch", "cuda", "onnx", "onnxruntime", "protobuf", "opset", "exporters", "pip"):
        table.add_column(col, overflow="fold")
    for t in matrix.targets.values():
        ort = _spec(t.onnxruntime) + (" (gpu)" if t.onnxruntime_build == "gpu" else "")
        table.add_row(
            t.name, ", ".join(t.platforms), _spec(t.python), _spec(t.torch), t.cuda or "none",
            _spec(t.onnx), ort, _spec(t.protobuf), str(t.opset), ", ".join(t.exporters), ", ".join(t.pip) or "-",
        )
    console.print(table)
    if matrix.excluded:
        ex = Table(title="Excluded combinations", title_justify="left")
        for col in ("name", "reason", "source"):
            ex.add_column(col, overflow="fold")
        for e in matrix.excluded:
            ex.add_row(e.name, e.reason, e.source)
        console.print(ex)


def findings_json(findings: dict) -> dict:
    return {
        "targets": {
            name: {
                "status": "error" if any(f.severity == "error" for f in fs) else ("warning" if fs else "ok"),
                "findings": [f.__dict__ for f in fs],
            }
            for name, fs in findings.items()
        },
        "errors": sum(f.severity == "error" for fs in findings.values() for f in fs),
        "warnings": sum(f.severity == "warning" for fs in findings.values() for f in fs),
    }


def print_findings(findings: dict) -> None:
    table = Table(title="Compatibility check", title_justify="left", show_lines=True)
    for col in ("target", "severity", "rule", "finding", "source"):
        table.add_column(col, overflow="fold")
    for name, fs in findings.items():
        if not fs:
            table.add_row(name, "[green]ok[/]", "", "", "")
        for f in fs:
            text = escape(f.message) + (f"\n[dim]remedy: {escape(f.remedy)}[/]" if f.remedy else "")
            table.add_row(name, f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.rule, text, escape(f.source))
    console.print(table)
    summary = findings_json(findings)
    console.print(f"{summary['errors']} error(s), {summary['warnings']} warning(s) in {len(findings)} target(s).")


# ---------------------------------------------------------------- render / lock / create


def print_render(results) -> None:
    for r in results:
        state = "written" if r.changed else "unchanged"
        console.print(f"{r.target}: {r.path} ({state})")


def print_stale(stale) -> None:
    if not stale:
        console.print("All locks are present and fresh.")
        return
    for s in stale:
        err_console.print(f"[red]stale[/] {s.target}: {escape(s.reason)}")
    err_console.print(f"{len(stale)} lock(s) missing or stale: run `envctl lock {' '.join(s.target for s in stale)}`.")


def print_locks(results) -> None:
    for r in results:
        console.print(f"[green]locked[/] {r.target} -> {r.path} ({', '.join(r.platforms)})")


def _size(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"


def print_create(result) -> None:
    if result.action == "unchanged":
        console.print(f"{result.target}: env at {result.prefix} already matches its lock; nothing to do.")
        return
    console.print(
        f"[green]{result.action}[/] {result.target} at {result.prefix}: "
        f"{result.packages.get('conda', 0)} conda + {result.packages.get('pip', 0)} pip packages, "
        f"{_size(result.size_bytes)}, {result.seconds:.1f}s"
    )
    console.print(f"Use it: envctl run --target {result.target} -- python ...   or   {result.python} ...")


# ---------------------------------------------------------------- certificates


def print_certificate(cert: dict, path: Path | None) -> None:
    result = cert["result"]
    console.print(f"[{RESULT_STYLE.get(result, 'bold')}]{result}[/] {cert['target']}" + (f" -> {path}" if path else ""))
    if cert.get("reason"):
        console.print(f"  {escape(cert['reason'])}")
    table = Table(title_justify="left")
    for col in ("model", "exporter", "result", "opset/IR", "worst abs / rel", "failing stage", "class / remedy"):
        table.add_column(col, overflow="fold")
    for run in cert.get("runs", []):
        failure = run.get("failure") or {}
        worst = run.get("worst") or {}
        worst_text = f"{worst.get('max_abs', 0):.2e} / {worst.get('max_rel', 0):.2e}" if worst else "-"
        klass = (failure.get("class", "") + ("\n" + failure.get("remedy", "") if failure.get("remedy") else "")) if failure else ""
        table.add_row(
            run["model"], run["exporter"], f"[{RESULT_STYLE.get(run['status'], 'bold')}]{run['status']}[/]",
            f"{run.get('opset_written', '-')}/{run.get('ir_version', '-')}", worst_text,
            failure.get("stage", "") if failure else "", escape(klass),
        )
    if cert.get("runs"):
        console.print(table)
    for finding in cert.get("findings") or []:  # measured limits vs the rules' facts
        console.print(f"  [yellow]finding[/] {escape(finding['message'])}", soft_wrap=True)
    failure = cert.get("failure")
    if failure and not cert.get("runs"):
        console.print(f"  [red]{failure.get('class')}[/]: {escape(str(failure.get('message', '')))}\n  remedy: {escape(failure.get('remedy', ''))}")


def plain(text: str) -> None:
    sys.stdout.write(text + "\n")
