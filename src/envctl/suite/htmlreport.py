"""`envctl report --html`: the matrix as one self-contained page.

A grid of targets against their stages (rendered, locked, env, certified)
and every model x exporter the matrix certifies, one colour per state, with
the failure class and worst error in each cell; each target links to its
certificate's details further down (stage ladder, numbers, versions, host,
remedy). One file, inline CSS, no scripts, fonts or images from elsewhere, so
it can be attached to a CI run or mailed. Every value from a matrix or a
certificate passes through html.escape: certificates hold exception text.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from envctl.core.atomic import write_text_atomic
from envctl.certify.certificate import CertificateError, read_certificate
from envctl.core.errors import EnvctlError
from envctl.matrix.loader import Target, load_matrix
from envctl.suite.status import Stage, TargetStatus, target_status

__all__ = ["build_report", "write_report"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1d232a;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;padding-top:8px;border-top:2px solid #d5dae1}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6570;margin:0 0 16px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d5dae1;padding:6px 8px;vertical-align:top;text-align:left}
thead th{background:#e9edf2;font-weight:600;white-space:nowrap}
#grid td.cell{min-width:108px;max-width:190px;font-size:12.5px}
#grid th.target a{color:#1d4f91;text-decoration:none;font-weight:600}#grid th.target{background:#fff;white-space:nowrap}
.cell a{color:inherit;text-decoration:none;display:block}.cell .state{font-weight:600;display:block}
.cell .cls,.cell .num{display:block;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:11.5px}
.ok{background:#d7f2dc;color:#114b1d}.failed{background:#f9d0d0;color:#7a0f0f}.stale{background:#fdebc2;color:#6b4a00}
.missing{background:#eceef1;color:#6a737d}.na,.lockonly{background:#d6ecf7;color:#0d4763}.xfail{background:#ead9f5;color:#4e1d70}
.xpass{background:#ffe1a8;color:#6b3b00}.none{background:#fafbfc;color:#b0b7bf}.skipped{background:#eef0e4;color:#55602a}
.stalecert{outline:2px dashed #c58a00;outline-offset:-4px}
.legend span{display:inline-block;padding:2px 8px;margin:0 6px 6px 0;border-radius:3px;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dl.facts dt{color:#5b6570}dl.facts dd{margin:0}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}pre{white-space:pre-wrap;max-height:260px;overflow:auto;background:#f0f2f5;padding:8px;margin:4px 0}
.run{background:#fff;border:1px solid #d5dae1;padding:8px 12px;margin:10px 0}.remedy{background:#fff8e1;border-left:4px solid #e0a800;padding:6px 10px;margin:6px 0}
.next{font-family:ui-monospace,"DejaVu Sans Mono",monospace;background:#1d232a;color:#e8edf2;padding:2px 8px;border-radius:3px}
"""

LEGEND = [("ok", "ok / passed"), ("failed", "failed"), ("xfail", "failed as expected"), ("xpass", "passed but expected to fail"),
          ("stale", "stale"), ("missing", "missing"), ("lockonly", "lock-only here"), ("skipped", "skipped"),
          ("none", "not in this target")]
STATE_CLASS = {"ok": "ok", "missing": "missing", "stale": "stale", "failed": "failed", "n/a": "na", "unknown": "stale"}


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, (int, float)) else "-"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def _load_cert(path: str | None) -> dict | None:
    """The certificate's validated JSON (status already said when it is unreadable)."""
    try:
        return read_certificate(Path(path)).to_json() if path else None
    except CertificateError:
        return None


def _columns(targets: list[Target]) -> list[tuple[str, str]]:
    """Every model x exporter some target certifies, in matrix order."""
    seen: dict[tuple[str, str], None] = {}
    for target in targets:
        for model in target.models:
            for exporter in target.exporters:
                seen.setdefault((model, exporter), None)
    return list(seen)


def _cell(klass: str, state: str, *, cls: str = "", num: str = "", href: str = "", title: str = "") -> str:
    inner = f'<span class="state">{_e(state)}</span>'
    if cls:
        inner += f'<span class="cls">{_e(cls)}</span>'
    if num:
        inner += f'<span class="num">{_e(num)}</span>'
    if href:
        inner = f'<a href="#{_e(href)}">{inner}</a>'
    return f'<td class="cell {klass}" title="{_e(title)}">{inner}</td>'


def _stage_cell(stage: Stage, fresh: Stage | None = None) -> str:
    worst = fresh if fresh is not None and stage.state == "ok" else stage
    label = {"ok": "fresh" if fresh is not None else "ok", "n/a": "lock-only"}.get(worst.state, worst.state)
    return _cell(STATE_CLASS[worst.state], label, title=worst.detail)


def _cert_cell(s: TargetStatus, anchor: str) -> str:
    cert = s.certificate
    if not cert:
        from envctl.suite.status import device_label

        label = "; ".join(x for x in ("missing" if not s.device else "", device_label(s)) if x)
        return _cell("missing" if not s.device else "ok", label, title=s.certified.detail)
    result = "lock-only" if cert.get("certified") == "lock-only" else (cert.get("result") or "?")
    klass = {"passed": "xpass" if s.xfail else "ok", "failed": "xfail" if s.xfail else "failed",
             "lock-only": "lockonly"}.get(result, "missing")
    if s.cert_fresh.state != "ok":
        klass += " stalecert"
    label = result + (" (xfail)" if s.xfail and result in ("passed", "failed") else "")
    label += "" if s.cert_fresh.state == "ok" else f" ({s.cert_fresh.state})"
    if s.device:  # an imported device certificate (a bundle's --certify): solved here, run on the device
        from envctl.suite.status import device_label

        label = ("solved only" if result == "lock-only" else label) + "; " + device_label(s)
    return _cell(klass, label, cls=cert.get("failure_class") or "", num=(cert.get("created_at") or "")[:10],
                 href=anchor, title=f"{s.certified.detail}; {s.cert_fresh.detail}")


def _run_cell(target: Target, s: TargetStatus, cert: dict | None, key: tuple[str, str], href: str) -> str:
    model, exporter = key
    if model not in target.models or exporter not in target.exporters:
        return _cell("none", "—", title="not certified for this target")
    if cert is None:
        return _cell("missing", "no certificate")
    stale = "" if s.cert_fresh.state == "ok" else " stalecert"
    if cert.get("certified") == "lock-only":
        return _cell("lockonly" + stale, "lock-only", title=cert.get("reason") or "")
    run = next((r for r in cert.get("runs") or [] if (r.get("model"), r.get("exporter")) == key), None)
    if run is None:
        failure = cert.get("failure") or {}
        return _cell(("xfail" if s.xfail else "failed") + stale, "not run", cls=failure.get("class", ""),
                     href=href, title=failure.get("message", "") if failure else "no run in the certificate")
    worst = run.get("worst") or {}
    num = f"abs {_num(worst.get('max_abs'))} rel {_num(worst.get('max_rel'))}" if worst else ""
    status = run.get("status") or "?"
    failure = run.get("failure") or {}
    if status == "failed":
        klass = "xfail" if s.xfail else "failed"
        return _cell(klass + stale, "failed", cls=failure.get("class", ""), num=num or failure.get("stage", ""),
                     href=href, title=(failure.get("message") or "")[:300])
    klass = {"passed": "xpass" if s.xfail else "ok", "skipped": "skipped"}.get(status, "missing")
    return _cell(klass + stale, status, num=num, href=href, title=failure.get("message", "") if failure else "")


def _facts(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="facts">{rows}</dl>'


def _ladder(stages: list[dict]) -> str:
    rows = []
    for st in stages:
        status = st.get("status") or "?"
        klass = {"passed": "ok", "failed": "failed", "skipped": "missing", "warning": "stale"}.get(status, "missing")
        message = st.get("message") or ""
        text = f"<pre>{_e(message)}</pre>" if "\n" in message else _e(message)
        rows.append(f'<tr><td>{_e(st.get("name"))}</td><td class="{klass}">{_e(status)}</td>'
                    f'<td>{_e(st.get("seconds"))}</td><td>{text}</td></tr>')
    return ('<table class="ladder"><thead><tr><th>stage</th><th>status</th><th>seconds</th><th>message</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _failure(failure: dict | None) -> str:
    if not failure:
        return ""
    out = f'<p><b>{_e(failure.get("class"))}</b> at <code>{_e(failure.get("stage"))}</code></p>'
    if failure.get("message"):
        out += f"<pre>{_e(failure['message'])}</pre>"
    if failure.get("remedy"):
        out += f'<div class="remedy"><b>remedy:</b> {_e(failure["remedy"])}</div>'
    return out


def _versions(cert: dict) -> str:
    measured, expected = cert.get("versions") or {}, cert.get("versions_expected") or {}
    names = [k for k in measured if k != "platform" and measured[k] not in (None, "")]
    names += [k for k in expected if k not in names]
    if not names:
        return ""

    def row(n: str) -> str:
        got, want = measured.get(n), expected.get(n)
        # Local labels (+cpu) never decide a match, as in the runner's own comparison.
        differs = got is not None and want is not None and str(got).split("+")[0] != str(want).split("+")[0]
        return f'<tr><td>{_e(n)}</td><td class="{"failed" if differs else ""}">{_e(got)}</td><td>{_e(want)}</td></tr>'

    rows = "".join(row(n) for n in names)
    return ('<h3>Versions</h3><table><thead><tr><th>package</th><th>measured in the env</th><th>the lock promises</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")


def _details(target: Target, s: TargetStatus, cert: dict | None, anchor: str, run_ids: dict) -> str:
    parts = [f'<section id="{_e(anchor)}"><h2>{_e(target.name)}</h2>']
    if target.description:
        parts.append(f'<p class="sub">{_e(target.description)}</p>')
    stages = "".join(f'<tr><td>{_e(name)}</td><td class="{STATE_CLASS[st.state]}">{_e(st.state)}</td><td>{_e(st.detail)}</td></tr>'
                     for name, st in s.stages().items())
    parts.append('<h3>Pipeline</h3><table><thead><tr><th>stage</th><th>state</th><th>detail</th></tr></thead>'
                 f"<tbody>{stages}</tbody></table>")
    parts.append(_facts([("next", f'<span class="next">{_e(s.next)}</span>' if s.next else "nothing: up to date"),
                         ("expected to fail", _e(target.xfail) if target.xfail else None)]))
    if cert is None:
        parts.append("<p>No certificate yet.</p></section>")
        return "".join(parts)
    host, lock, spec = cert.get("host") or {}, cert.get("lock") or {}, cert.get("spec") or {}
    gpus = ", ".join(g.get("name", "?") for g in ((host.get("nvidia") or {}).get("gpus") or []))
    parts.append("<h3>Certificate</h3>" + _facts([
        ("result", f'<span class="badge {_e(STATE_CLASS.get("ok" if cert.get("result") == "passed" else "failed", "missing"))}">'
                   f'{_e(cert.get("result"))}</span> ({_e(cert.get("certified"))})'),
        ("reason", _e(cert.get("reason")) if cert.get("reason") else None),
        ("created", _e(cert.get("created_at"))),
        ("host", _e(f"{host.get('hostname', '?')} · {host.get('platform', '?')} · {host.get('cpu', '?')} · "
                    f"{host.get('libc') or ''}".strip(" ·"))),
        ("GPU", _e(gpus) if gpus else "none"),
        ("lock", f"<code>{_e(lock.get('path'))}</code> sha256 <code>{_e((lock.get('sha256') or '-')[:16])}</code>"),
        ("opset / exporters", _e(f"{spec.get('opset', '-')} / {', '.join(spec.get('exporters') or [])}") if spec else None),
        ("provider", _e(spec.get("required_provider")) if spec else None),
        ("tolerances", _e(json.dumps(spec.get("tolerances"))) if spec.get("tolerances") else None),
        ("seconds", _e(cert.get("seconds"))),
    ]))
    if not cert.get("runs"):
        parts.append(_failure(cert.get("failure")))
    parts.append(_versions(cert))
    if cert.get("caveats"):  # what the verdict could not prove: shown, never waived silently
        items = "".join(f'<li><b>{_e(c.get("model"))} × {_e(c.get("exporter"))}</b> ({_e(c.get("kind"))}): '
                        f'{_e(c.get("message"))}</li>' for c in cert["caveats"])
        parts.append(f'<h3>Caveats</h3><ul class="caveats">{items}</ul>')
    for run in cert.get("runs") or []:
        key = (run.get("model"), run.get("exporter"))
        worst = run.get("worst") or {}
        parts.append(f'<div class="run" id="{_e(run_ids.get(key, ""))}"><h3>{_e(key[0])} × {_e(key[1])}: {_e(run.get("status"))}</h3>')
        parts.append(_facts([("opset / IR written", _e(f"{run.get('opset_written', '-')} / {run.get('ir_version', '-')}")),
                             ("worst abs / rel", _e(f"{_num(worst.get('max_abs'))} / {_num(worst.get('max_rel'))}") if worst else None)]))
        parts.append(_failure(run.get("failure")) + _ladder(run.get("stages") or []) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def build_report(matrix_path: Path, *, now: datetime | None = None) -> tuple[str, int]:
    """The page's HTML and the number of targets in it."""
    from envctl.core.paths import project_root

    matrix = load_matrix(matrix_path)
    targets = list(matrix.targets.values())
    root = project_root(matrix_path)
    columns = _columns(targets)
    rows, details = [], []
    counts: dict[str, int] = {}
    for target in targets:
        s = target_status(root, target)
        cert = _load_cert((s.certificate or {}).get("path"))
        counts[s.summary] = counts.get(s.summary, 0) + 1
        anchor = f"cert-{_slug(target.name)}"
        run_ids = {key: f"run-{_slug(target.name)}-{i}" for i, key in enumerate(columns)}
        cells = [_stage_cell(s.rendered, s.render_fresh), _stage_cell(s.locked, s.lock_fresh), _stage_cell(s.env),
                 _cert_cell(s, anchor)]
        try:
            run_cells, detail = [_run_cell(target, s, cert, key, run_ids[key]) for key in columns], _details(target, s, cert, anchor, run_ids)
        except (TypeError, AttributeError, ValueError, KeyError):  # a shape read_cert did not foresee: show it as none
            cert = None
            run_cells, detail = [_run_cell(target, s, cert, key, run_ids[key]) for key in columns], _details(target, s, cert, anchor, run_ids)
        cells += run_cells
        rows.append(f'<tr class="target-row" data-target="{_e(target.name)}" data-summary="{_e(s.summary)}">'
                    f'<th class="target" scope="row"><a href="#{anchor}">{_e(target.name)}</a></th>{"".join(cells)}</tr>')
        details.append(detail)
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in ("target", "rendered", "locked", "env", "certified"))
    head += "".join(f'<th scope="col" class="run-col">{_e(m)}<br><small>{_e(e)}</small></th>' for m, e in columns)
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    summary = ", ".join(f"{n} {_e(k)}" for k, n in sorted(counts.items()))
    legend = "".join(f'<span class="{k}">{_e(v)}</span>' for k, v in LEGEND)
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>envctl matrix report: {_e(matrix_path)}</title><style>{CSS}</style></head><body>"
        f"<h1>envctl matrix report</h1><p class=\"sub\">{_e(matrix_path)} · {len(targets)} target(s): {summary} · generated {_e(when)}</p>"
        f'<div class="legend">{legend}<span class="ok stalecert">dashed: certificate stale against its lock</span></div>'
        f'<table id="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'{"".join(details)}</body></html>\n'
    )
    return html, len(targets)


def write_report(matrix_path: Path, out: Path) -> tuple[Path, int]:
    html, count = build_report(matrix_path)
    out = Path(out)
    if out.is_dir():
        raise EnvctlError(f"{out} is a directory; name the HTML file to write.")
    try:
        write_text_atomic(out, html)
    except OSError as exc:
        raise EnvctlError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, count
