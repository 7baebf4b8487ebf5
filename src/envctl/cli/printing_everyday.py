"""What `envctl doctor` and `envctl export` print for people (their reports are computed in everyday/)."""

from __future__ import annotations


def _sci(value) -> str:
    """max_abs/max_rel for the table: a number in 1.2e-05 form, anything else (nan, inf as text, None) as it is."""
    return f"{value:.2e}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ("-" if value is None else str(value))


def print_doctor(report: dict) -> None:
    """`envctl doctor`: the host, the env's packages, drift against the lock, and what would break an export."""
    from envctl.core.output import escape
    from rich.table import Table

    from envctl.core.output import SEVERITY_STYLE, console

    h = report["host"]
    gpu = "none"
    if h.get("nvidia") and h["nvidia"].get("gpus"):
        gpu = ", ".join(f"{g['name']} (driver {g.get('driver')})" for g in h["nvidia"]["gpus"])
        gpu += f", driver CUDA {h['nvidia'].get('driver_cuda') or '?'}"
    elif h.get("jetson"):
        gpu = f"Jetson L4T {h['jetson'].get('l4t')}, CUDA {h['jetson'].get('cuda', '?')}"
    console.print(f"[bold]host[/] {h['platform']} ({h['os']} {h['os_release']}, {h.get('libc') or 'no glibc'}), "
                  f"CPU {escape(str(h['cpu']))} x{h['cpus']}, GPU: {escape(gpu)}", soft_wrap=True)
    env = report["env"]
    console.print(f"[bold]env[/] {env['kind']}{' ' + escape(env['target']) if env['target'] else ''}: {escape(env['prefix'])} "
                  f"(python {escape(env.get('python_version', '?'))})", soft_wrap=True)
    table = Table(title_justify="left")
    for col in ("package", "version", "build / notes"):
        table.add_column(col, overflow="fold")
    for key, rec in report["packages"].items():
        notes = rec.get("error") and f"[red]import fails: {escape(rec['error'])}[/]"
        if not notes and key == "torch":
            notes = f"{rec.get('build')} build" + (f", CUDA {rec['cuda']}, cuDNN {rec.get('cudnn')}, GPU visible: "
                                                    f"{rec.get('cuda_available')}" if rec.get("cuda") else "")
        elif not notes and key == "onnxruntime":
            notes = ", ".join(rec.get("providers") or [])
        elif not notes and key == "onnx":
            notes = f"IR {rec.get('ir_version')}, opsets <= {rec.get('max_opset')}"
        elif not notes and key == "protobuf":
            notes = f"{rec.get('implementation')} implementation"
        # What the env's own python reported: data, shown inert (notes already carry markup of their own).
        table.add_row(key, escape(rec.get("version") or "-"), notes if rec.get("error") else escape(notes or ""))
    if report["packages"]:
        console.print(table)
    if report["targets"]:
        runnable = [t["target"] for t in report["targets"] if t["runnable"]]
        console.print(f"[bold]targets this machine can run[/]: {', '.join(runnable) or 'none'}")
        for t in report["targets"]:
            if not t["runnable"]:
                console.print(f"  [dim]{t['target']}: {escape(t['reason'])}[/]", soft_wrap=True)
    d = report["drift"]
    if not d.get("checked"):
        console.print(f"[bold]drift[/]: not checked ({escape(d.get('why', ''))})")
    elif not d["packages"]:
        console.print(f"[bold]drift[/]: none; the env matches {d['lock']}")
    else:
        console.print(f"[bold]drift[/] against {d['lock']}:")
        for p in d["packages"]:
            style = "red" if p["managed"] else "yellow"
            console.print(f"  [{style}]{p['kind']}[/] {p['manager']} {escape(p['name'])}: {escape(p['locked'] or '-')} -> "
                          f"{escape(p['installed'] or '-')}")
    if "rules_at" in report:
        at = report["rules_at"]
        console.print(f"[bold]rules[/] on the installed versions (opset {at['opset']}, {', '.join(at['exporters'])}): "
                      f"{len(report['findings']) or 'no'} finding(s)")
        for f in report["findings"]:
            console.print(f"  [{SEVERITY_STYLE[f['severity']]}]{f['severity']}[/] {f['rule']}: {escape(f['message'])}"
                          + (f"\n    remedy: {escape(f['remedy'])}" if f["remedy"] else "")
                          + f"\n    [dim]source: {escape(f['source'])}[/]", soft_wrap=True)
    for w in report["warnings"]:
        console.print(f"[yellow]warning[/]: {escape(w)}", soft_wrap=True)
    for p in report["problems"]:
        console.print(f"[bold red]breaks an export[/]: {escape(p)}", soft_wrap=True)
    console.print("[green]ok: nothing here would break an export[/]" if not report["breaks_export"]
                  else f"{len(report['problems'])} problem(s) would break an export.")


def print_export(report: dict) -> None:
    """`envctl export`: the stages, the comparison with PyTorch, and what to ship (or why nothing was written)."""
    from envctl.core.output import escape
    from rich.table import Table

    from envctl.core.output import RESULT_STYLE, human_size, console

    v = report["versions"]
    if report["status"] != "passed" and report.get("stale_out"):
        # first, before anything else: the file a user may pick up is not this export
        console.print(f"[bold red]the file at {escape(report['out'])} is NOT this export[/] (an older one, "
                      "left as it was: this export failed)", soft_wrap=True)
    stack = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnx", "onnxruntime") if v.get(k))
    console.print(f"[bold]export[/] {escape(report['model'])} with {report['exporter']} at opset "
                  f"{report['opset_requested']} in {escape(report['env'])}" + (f" ({stack})" if stack else ""),
                  soft_wrap=True)
    if report["stages"]:
        console.print("stages: " + ", ".join(
            f"{s['name']} [{RESULT_STYLE.get(s['status'], 'bold')}]{s['status']}[/] {s['seconds'] or 0:.1f}s"
            for s in report["stages"]), soft_wrap=True)
    if report["sizes"]:
        table = Table(title="ONNX Runtime vs PyTorch", title_justify="left")
        for col in ("inputs", "sizes", "result", "max abs", "max rel", "error"):
            table.add_column(col, overflow="fold")
        for case in report["sizes"]:
            size = ", ".join(f"{k}={n}" for k, n in (case["sizes"] or {}).items()) or "static"
            group = case.get("group") or "random"
            group = f"your data #{case['sample']}" if group == "samples" else group
            result = (("[green]ok[/] (float32 limit)" if case.get("precision_limited") else "[green]ok[/]")
                      if case["passed"] else "[dim]not compared[/]" if case.get("skipped")
                      else "[red]failed[/]")
            table.add_row(group, size, result,
                          _sci(case["max_abs"]), _sci(case["max_rel"]), escape(str(case["error"] or "")))
        console.print(table)
    mine = report.get("on_your_data")
    if mine:
        console.print(f"on your data: {mine['samples']} sample(s) "
                      + ("[green]match[/]" if mine["passed"] else "[red]differ[/]")
                      + (f" (max abs {mine['max_abs']:.2e})" if isinstance(mine.get("max_abs"), (int, float)) else ""))
    for s in report["stages"]:  # a skipped stage says why (e.g. no simplifier installed for --simplify auto)
        if s["status"] == "skipped" and s.get("message") and not s["message"].startswith("not requested"):
            console.print(f"[yellow]{s['name']} skipped[/]: {escape(s['message'])}", soft_wrap=True)
    for w in report["warnings"]:
        console.print(f"[yellow]warning[/] {escape(w)}", soft_wrap=True)
    for c in report.get("caveats") or []:  # what the verdict could not prove
        console.print(f"[yellow]caveat[/] {escape(c['message'])}", soft_wrap=True)
    seconds = f" in {report['seconds']:.1f}s" if report.get("seconds") is not None else ""
    if report["status"] == "passed":
        size = human_size(report["model_bytes"]) if report["model_bytes"] is not None else "?"
        console.print(f"[green]passed[/]{seconds}: opset {escape(report['opset_written'])}, IR {escape(report['ir_version'])}, {size}")
        console.print("files to ship: " + ", ".join(f"{f['path']} ({human_size(f['bytes'])})" for f in report["files"]),
                      soft_wrap=True)
        return
    f = report["failure"] or {}
    console.print(f"[bold red]failed[/]{seconds}: [red]{escape(str(f.get('class', '?')))}[/] at {escape(f.get('stage', '?'))}: "
                  f"{escape(str(f.get('message', ''))[:600])}", soft_wrap=True)
    if f.get("remedy"):
        console.print(f"remedy: {escape(f['remedy'])}", soft_wrap=True)
    # The runner keeps the tail of the model's own traceback in the failing stage's message.
    detail = next((st["message"] for st in report["stages"] if st["name"] == f.get("stage") and st["status"] == "failed"), "")
    if detail and detail.count("\n") >= 2:
        console.print(f"[dim]{escape(chr(10).join(detail.splitlines()[-12:]))}[/]", soft_wrap=True)
    if report.get("output_tail"):
        console.print(f"[dim]{escape(report['output_tail'][-1500:])}[/]", soft_wrap=True)
    console.print("nothing was written to --out" + (f"; the file at {escape(report['out'])} is an older one, "
                                                     "not this export." if report.get("stale_out") else "."))
