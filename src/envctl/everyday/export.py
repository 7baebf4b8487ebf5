"""`envctl export`: the team's own model through the certification recipe.

One implementation serves both: this builds a smoke-runner spec with the one
model and exporter asked for and runs the same runner certification runs
(pre-export checks, export, onnx.checker, ONNX Runtime session, inference at
several sizes against PyTorch, optional simplification), in a target env or
the current interpreter. The runner itself saves the verified model to
--out (spec "out"), only when everything passed, so a failed export never
leaves a file that looks shippable.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from envctl.core.errors import EnvctlError
from envctl.smoke import BUILTIN_MODELS
from envctl.lock.lockfile import lock_path
from envctl.smoke.envctl_smoke_protocol import EXPORTERS, SIMPLIFIERS, RunnerResult, Spec, run_caveats


def parse_dynamic(values: list[str]) -> dict[str, dict[int, str]] | None:
    """NAME:AXIS[:DIM] options as the runner's {name: {axis: dim_name}}; None when none given."""
    if not values:
        return None
    axes: dict[str, dict[int, str]] = {}
    for value in values:
        m = re.fullmatch(r"([^:]+):(\d+)(?::(\w+))?", value.strip())
        if not m:
            raise EnvctlError(f"--dynamic {value!r}: expected NAME:AXIS or NAME:AXIS:DIM, e.g. x:0 or tokens:1:seq",
                              key="--dynamic")
        name, axis = m.group(1), int(m.group(2))
        # Axis 0 is the batch everywhere, so inputs share it; other axes are per input unless DIM names them alike.
        dim = m.group(3) or ("batch" if axis == 0 else re.sub(r"\W", "_", f"{name}_{axis}"))
        axes.setdefault(name, {})[axis] = dim
    return axes


def parse_sizes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise EnvctlError(f"--sizes {text!r}: expected positive integers separated by commas, e.g. 1,2,5", key="--sizes")
    return sizes


def build_export_spec(matrix_path: Path, target, python: Path, ref: str, out: Path, *, opset, exporter, dynamic,
                      simplify, sizes, path: Path | None) -> Spec:
    from envctl.certify.certify import build_spec, expected_versions, interpreter_placement, provider_order
    from envctl.host.runnable import needs_gpu
    from envctl.core.paths import project_root
    from envctl.host.platform import host_platform

    root = project_root(matrix_path)
    if target is not None:
        lock = lock_path(root, target.name)
        device = "cuda" if needs_gpu(target) else "cpu"
        spec = build_spec(target, root, device=device, providers=provider_order(target.execution_provider),
                          required=target.execution_provider,
                          expected=expected_versions(lock, host_platform()) if lock.exists() else {})
    else:  # what certify does for --target host: the runner picks CUDA when this python's torch sees a GPU
        spec = build_spec(None, root, **interpreter_placement(), expected={})
    spec = replace(spec, target=target.name if target else "export", models=[ref], exporters=[exporter],
                   model_paths=[str(Path(path or Path.cwd()).absolute())], dynamic=dynamic, out=str(out))
    if opset is not None:
        spec.opset = opset
    if simplify is not None:
        spec.simplify = simplify
    if sizes:  # the user's sizes replace the sweep: nothing is added behind their back
        spec.sizes, spec.exact_sizes = sizes, True
    return spec.check()


def export_model(matrix_path: Path, ref: str, out: Path, *, target: str | None = None, prefix: Path | None = None,
                 opset: int | None = None, dynamic: list[str] | tuple[str, ...] = (), exporter: str | None = None,
                 simplify: str | None = None, sizes: str | None = None, path: Path | None = None,
                 timeout: float | None = None, lock_mode: str = "auto", inputs: list[Path] | tuple[Path, ...] = ()) -> dict:
    """Run the recipe; return the report (status, versions, per-size errors, files, failure)."""
    from envctl.certify.certify import DEFAULT_TIMEOUT, run_smoke

    if ":" not in ref and ref not in BUILTIN_MODELS:
        raise EnvctlError(f"{ref!r} is not MODULE:CALLABLE (e.g. mymodel:make_model)")
    if exporter is not None and exporter not in EXPORTERS:
        raise EnvctlError(f"--exporter {exporter!r}: choose torchscript or dynamo", key="--exporter")
    if opset is not None:
        _check_opset(opset)
    if simplify is not None and simplify not in SIMPLIFIERS:
        raise EnvctlError(f"--simplify {simplify!r}: choose {', '.join(SIMPLIFIERS)}", key="--simplify")
    out = Path(os.path.abspath(out))
    if out.suffix != ".onnx":
        raise EnvctlError(f"--out {out}: the file name must end in .onnx", key="--out")
    if path is not None and not Path(path).is_dir():
        raise EnvctlError(f"--path {path} is not a folder", key="--path")
    from envctl.everyday.locate import locate_env

    found = locate_env(matrix_path, target, prefix, refuse_unrunnable="export in")
    if lock_mode != "auto" and found.kind != "current interpreter":
        from envctl.everyday.locate import check_env_lock

        check_env_lock(matrix_path, found.prefix, lock_mode, found.project)
    chosen, python = (found.target if target else None), found.python
    where = (f"the current interpreter ({python})" if found.kind == "current interpreter"
             else f"{'target ' + target if target else 'the env'} ({found.prefix})")
    # torch's own default since 2.9; a target names its exporters.
    exporter = exporter or (chosen.exporters[0] if chosen else "dynamo")
    spec = build_export_spec(matrix_path, chosen, python, ref, out, opset=opset, exporter=exporter,
                             dynamic=parse_dynamic(list(dynamic)), simplify=simplify, sizes=parse_sizes(sizes), path=path)
    from envctl.certify.truth import input_files

    spec.input_files = input_files(inputs)
    replaced_before = os.path.exists(out)
    result, process = run_smoke(python, spec, timeout or (chosen.timeout if chosen else DEFAULT_TIMEOUT))
    report = summarise(ref, exporter, spec, where, result, process)
    report["out"] = str(out)
    report["stale_out"] = report["status"] != "passed" and replaced_before  # an older file, not this export
    return report


def _check_opset(opset: int) -> None:
    """Refuse an opset no torch.onnx exporter writes, before any env is started (it used to be written at 18)."""
    from envctl.rules.facts import TORCH_EXPORTER

    top = max(fact.value.max_opset for fact in TORCH_EXPORTER.values())  # ONNX_MAX_OPSET of the newest torch known
    if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= top:
        raise EnvctlError(f"--opset {opset}: torch.onnx exports ai.onnx opsets 7 to {top}", key="--opset",
                          hint="Leave --opset out to use the target's (else 18).")


def summarise(ref: str, exporter: str, spec: Spec, where: str, result: RunnerResult | None, process: dict) -> dict:
    report: dict[str, Any] = {"model": ref, "exporter": exporter, "opset_requested": spec.opset, "env": where,
              "status": "failed", "failure": process.get("failure"), "versions": {}, "stages": [], "sizes": [],
              "opset_written": None, "ir_version": None, "model_bytes": None, "files": [], "warnings": [], "caveats": [],
              "seconds": process.get("seconds"), "output_tail": None}
    if result is None:
        report["output_tail"] = process.get("output_tail")
        return report
    run = (result.runs or [{}])[0]
    report.update(status=result.status, failure=result.failure.to_json() if result.failure else None,
                  versions=result.versions or {}, opset_written=run.get("opset_written"),
                  ir_version=run.get("ir_version"), caveats=[c.to_json() for c in run_caveats([run])])
    top = result.stages  # "versions" before the model's ladder, "save" after it
    ordered = [st for st in top if st["name"] != "save"] + run.get("stages", []) + [st for st in top if st["name"] == "save"]
    report["stages"] = [{k: st.get(k) for k in ("name", "status", "seconds", "message")} for st in ordered]
    for st in run.get("stages", []):
        details = st.get("details") or {}
        report["warnings"] += [f"{st['name']}: {w}" for w in details.get("warnings", [])]
        if st["name"] == "checker" and details.get("total_bytes") is not None:
            report["model_bytes"] = details["total_bytes"]
        if st["name"] == "inference":
            for case in details.get("cases", []):
                outs = case.get("outputs", [])
                shapes = [f"{o['name']}: ONNX shape {o['ort_shape']}, PyTorch {o['shape']}" for o in outs
                          if o.get("ort_shape") is not None and o.get("ort_shape") != o.get("shape")]
                report["sizes"].append({
                    "group": case.get("group", "random"), "sample": case.get("sample"),
                    "sizes": case.get("sizes"), "passed": case.get("passed"), "skipped": case.get("skipped"),
                    "error": case.get("error") or "; ".join(shapes) or None,
                    "max_abs": max((o["max_abs"] for o in outs if o.get("max_abs") is not None), default=None),
                    "max_rel": max((o["max_rel"] for o in outs if o.get("max_rel") is not None), default=None),
                    "p99_abs": max((o["p99_abs"] for o in outs if o.get("p99_abs") is not None), default=None),
                    "precision_limited": any(o.get("precision_limited") for o in outs),
                })
            if details.get("on_your_data"):
                report["on_your_data"] = details["on_your_data"]
    if result.status == "passed":
        report["files"] = [{"path": f, "bytes": os.path.getsize(f)} for f in result.get("out_files", []) if os.path.exists(f)]
    return report
