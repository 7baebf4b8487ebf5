"""What the commands print: tables for people, JSON for scripts (`*_json`).

The doctor and export reports print from cli/printing_everyday.py, status and
the whole-matrix run from cli/printing_suite.py. The shared pieces (console,
styles, Progress, error and size formatting) stay in envctl.core.output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from envctl.core.output import escape
from envctl.core.text import printable
from rich.table import Table

from envctl.core.output import RESULT_STYLE, SEVERITY_STYLE, console, err_console, escape_lines, human_size, verbosity


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


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


# ---------------------------------------------------------------- render / lock


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


# ---------------------------------------------------------------- create


def print_setup(result) -> None:
    """What `envctl create` did: the env, its certification, and how to use it (under -q: one line)."""
    created = result.create
    if verbosity() < 0:
        cert = result.certificate.to_json() if result.certificate else {}
        failure = cert.get("failure") or {}
        why = f" ({failure.get('class', '?')}: {str(failure.get('message', ''))[:200]})" if result.certification == "failed" else ""
        console.print(f"{created.target}: {created.action} at {created.prefix}; {result.certification}{why}",
                      soft_wrap=True, markup=False)
        return
    if created.action == "unchanged":
        console.print(f"{created.target}: env at {created.prefix} already matches its lock.")
    else:
        console.print(f"[green]{created.action}[/] {created.target} at {created.prefix}: "
                      f"{created.packages.get('conda', 0)} conda + {created.packages.get('pip', 0)} pip packages, "
                      f"{human_size(created.size_bytes)}, {created.seconds:.1f}s")
    cert = result.certificate.to_json() if result.certificate else {}
    path = result.certificate.path if result.certificate else None
    if result.certification == "already certified":
        console.print(f"[green]already certified[/]: {path} passed for this lock ({created.lock_sha256.removeprefix('sha256:')[:12]}).")
    elif result.certification == "passed":
        console.print(f"[green]certified[/]: smoke export-and-infer passed -> {path}")
    elif result.certification == "failed":
        failure = cert.get("failure") or {}
        console.print(f"[bold red]certification failed[/] -> {path}: {escape(str(failure.get('class', '?')))}: "
                      f"{escape(str(failure.get('message', ''))[:300])}")
        if failure.get("remedy"):
            console.print(f"  remedy: {escape(failure['remedy'])}")
        runs = cert.get("runs") or []
        bad = [f"{r['model']}/{r['exporter']} ({(r.get('failure') or {}).get('class', r['status'])})"
               for r in runs if r["status"] == "failed"]
        if bad:
            console.print(f"  {len(bad)} of {len(runs)} smoke runs failed: {escape(', '.join(bad))}")
        if cert.get("xfail"):
            console.print(f"  (expected: the target is marked xfail: {escape(cert['xfail'])})")
        console.print(f"  The env is built; `envctl certify --target {created.target}` shows every run.")
    else:
        console.print(f"not certified (--no-certify): `envctl certify --target {created.target}` checks it.")
    console.print(
        "\nUse it:\n"
        f"  envctl run --target {created.target} -- python your_script.py   # runs inside the activated env\n"
        f"  envctl run --target {created.target} -- bash                    # a shell inside it\n"
        f"  envctl export my_module:make_model --target {created.target} --out model.onnx\n"
        f"  conda activate {created.prefix}   # if you have conda/mamba: the env's activate path\n"
        f"  {created.python}   # its python, directly",
        soft_wrap=True, markup=False,
    )


# ---------------------------------------------------------------- certificates


def print_certificate(cert: dict, path: Path | None) -> None:
    result = cert["result"]
    if verbosity() < 0:  # -q: the final line, with the failure when there is one
        failure = cert.get("failure") or {}
        why = f" ({failure.get('class', '?')}: {str(failure.get('message', ''))[:200]})" if failure else ""
        console.print(printable(f"{cert['target']}: {result}{why}" + (f" -> {path}" if path else "")),
                      soft_wrap=True, markup=False)
        return
    console.print(f"[{RESULT_STYLE.get(result, 'bold')}]{escape(result)}[/] {escape(cert['target'])}"
                  + (f" -> {escape(path)}" if path else ""))
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
            escape(run["model"]), escape(run["exporter"]), f"[{RESULT_STYLE.get(run['status'], 'bold')}]{escape(run['status'])}[/]"
            + (" (precision_limited)" if (run.get("precision") or {}).get("precision_limited") is True
               and run["status"] == "passed" else ""),
            escape(f"{run.get('opset_written', '-')}/{run.get('ir_version', '-')}"), worst_text,
            escape(failure.get("stage", "")) if failure else "", escape_lines(klass),
        )
    if cert.get("runs"):
        console.print(table)
    for finding in cert.get("findings") or []:  # measured limits vs the rules' facts
        console.print(f"  [yellow]finding[/] {escape(finding['message'])}", soft_wrap=True)
    failure = cert.get("failure")
    if failure and not cert.get("runs"):
        console.print(f"  [red]{escape(failure.get('class'))}[/]: {escape_lines(failure.get('message', ''))}\n"
                      f"  remedy: {escape(failure.get('remedy', ''))}")


def note(text: str) -> None:
    """A one-line note on stderr, beside output that goes to stdout (silent under -q)."""
    from envctl.core.output import verbosity

    if verbosity() >= 0:
        from envctl.core.text import printable_lines

        sys.stderr.write(f"envctl: {printable_lines(text)}\n")


def warning(text: str) -> None:
    """A warning on stderr (shown under -q too): something from data was skipped."""
    err_console.print(f"[yellow]warning:[/] {escape_lines(text)}", soft_wrap=True)


def setup_json(result) -> dict:
    """`envctl create --json`: the env and its certification."""
    return {"target": result.target, "certification": result.certification,
            "env": result.create.to_json() if result.create else None,
            "certificate": str(result.certificate.path) if result.certificate and result.certificate.path else None,
            "result": result.certificate.result.value if result.certificate else None}


def print_packages(prefix: Path, packages) -> None:
    table = Table(title=f"{prefix} ({len(packages)} packages)", show_lines=False)
    for column in ("name", "version", "build", "manager"):
        table.add_column(column)
    for p in packages:
        table.add_row(escape(p.name), escape(p.version), escape(p.build), p.manager)
    console.print(table)
