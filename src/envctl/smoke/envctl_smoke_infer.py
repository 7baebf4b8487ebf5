"""The inference stage of the envctl smoke runner: the comparison plan (your samples, the
size sweep, the adversarial groups, the fingerprint case), PyTorch against ONNX Runtime
on each, and the verdict (value_dependent_branch, numeric_mismatch, dynamic_axis_ignored).

Imports: standard library, torch, numpy and the runner's own siblings (loaded by path
before this one). Raises StageFailure (same protocol as envctl_smoke_stages').
"""
import hashlib
import json
from typing import Dict

import numpy as np
import torch

import envctl_smoke_compare as compare
import envctl_smoke_domain as domain
import envctl_smoke_inputs as inputs_mod
import envctl_smoke_models as models
import envctl_smoke_reference as reference


from envctl_smoke_classes import StageFailure, classify, warn  # sibling: the one definition


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _flatten(item)]
    raise models.ModelError("the model returned a %s; only tensors (possibly in tuples/lists/dicts) "
                            "can become ONNX outputs" % type(out).__name__)


def torch_outputs(model, inputs):
    return [t.detach() for t in _flatten(domain.eager(model, inputs))]


def _feed(case, sess, tensors):
    by_name = dict(zip(case["input_names"], tensors))
    feed = {}
    for i in sess.get_inputs():
        if i.name not in by_name:
            raise StageFailure("runtime_error", "ONNX input %r is not one of %s" % (i.name, list(by_name)))
        feed[i.name] = by_name[i.name].detach().cpu().numpy()
    return feed


def _as_float(a):
    return np.asarray(a).astype(np.float64)


def fingerprint(case, sizes, outs, tensors):
    """Compact description of ORT outputs, for comparing numbers across envs."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().numpy().tobytes())
    fp = {"sizes": sizes, "input_sha256": h.hexdigest(), "outputs": []}
    for name, o in zip(case["output_names"], outs):
        flat = _as_float(o).ravel()
        idx = np.linspace(0, flat.size - 1, 16).round().astype(int) if flat.size else []
        fp["outputs"].append({"name": name, "shape": list(np.shape(o)), "dtype": str(np.asarray(o).dtype),
                              "samples": [float(flat[i]) for i in idx],
                              "mean": float(flat.mean()) if flat.size else 0.0,
                              "l2": float(np.sqrt((flat ** 2).sum()))})
    return fp


def sizes_of(case, tensors):
    """{dim_name: size} read off actual tensors (samples, the example)."""
    out: Dict[str, int] = {}
    for name, t in zip(case["input_names"], tensors):
        for axis, dim in case["dynamic_axes"].get(name, {}).items():
            if axis < t.dim():
                out.setdefault(dim, int(t.shape[axis]))
    return out


def _at_export(f, exp_sizes):
    """A failure on inputs shaped like the trace's, or on the user's own data: values, not shapes."""
    return (f["sizes"] == exp_sizes or f["group"] in inputs_mod.ADVERSARIAL or f["group"] in domain.BRANCH
            or f["group"] == "samples")


def _verdict(details, export_info, failures, exp_sizes, providers):
    """The classified failure for what was seen (or None), and the waiver note. Signals are
    weighed in this order (docs/verdicts.md): ONNX Runtime naming its own problem (memory, a
    kernel, an EP); a tracer warning in the model's own code (file:line) explains a failure on
    export-shaped inputs as value_dependent_branch, and one only at other sizes as
    dynamic_axis_ignored when the warned line reads a shape (else value_dependent_branch);
    without one, ONNX Runtime refusing or reshaping other sizes while the export sizes run is
    dynamic_axis_ignored; then numeric_mismatch; last, ONNX Runtime raising
    at the export sizes (runtime_error, with a remedy about the runtime, not the export)."""
    specific = [f for f in failures if f.get("cls") not in (None, "runtime_error")]
    if specific:  # out of memory, a missing kernel, an EP: the runtime said what it is
        return StageFailure(specific[0]["cls"], specific[0]["text"])
    sites = export_info.get("value_sites") or []
    signal = bool(sites) or bool(export_info.get("graphs_differ"))
    where = ("at " + ", ".join(sites)) if sites else "(the graphs exported from two input groups differ)"
    at_export = [f for f in failures if _at_export(f, exp_sizes)]
    elsewhere = [f for f in failures if not _at_export(f, exp_sizes)]
    if signal and at_export:
        f = at_export[0]
        return StageFailure("value_dependent_branch", "the trace kept one branch of value-dependent code %s: %s"
                            % (where, f["text"]))
    shapes = [s for s in sites if s in (export_info.get("shape_sites") or [])]
    if shapes and elsewhere:  # the warned line reads a shape: a size was frozen
        return StageFailure("dynamic_axis_ignored", "the trace froze a size read from a tensor at %s: %s"
                            % (", ".join(shapes), elsewhere[0]["text"]))
    if sites and elsewhere:  # a value read (.tolist(), .item(), int(t.max())) that other sizes change
        return StageFailure("value_dependent_branch", "the trace froze a value read from a tensor at %s: %s"
                            % (", ".join(sites), elsewhere[0]["text"]))
    shaped = [f for f in elsewhere if f["kind"] in ("onnxruntime", "shape")]
    if shaped and not any(f["kind"] == "onnxruntime" for f in at_export):
        return StageFailure("dynamic_axis_ignored", "a shape is frozen in the graph (exported at %s): %s"
                            % (exp_sizes, shaped[0]["text"]))
    if signal and not failures:
        warn(details, "value-dependent code %s was waived: the branch-flipping inputs (%s) all match"
             % (where, ", ".join(inputs_mod.ADVERSARIAL + domain.BRANCH)))
        details.setdefault("caveats", []).extend(domain.branch_caveats(sites, ()))
    numeric = [f for f in failures if f["kind"] != "onnxruntime"]
    if numeric:
        return StageFailure("numeric_mismatch", numeric[0]["text"])
    if failures:  # ONNX Runtime raised at the export sizes: the runtime's own problem
        return StageFailure("runtime_error", failures[0]["text"], remedy=(
            "ONNX Runtime loaded the model but failed running it at the export sizes: read the node "
            "the message names and check its opset/IR against this onnxruntime"
            + ("; retry on CPUExecutionProvider to isolate the execution provider"
               if providers and providers[0] != "CPUExecutionProvider" else "")))
    return None


def _judge(details, out, case, tensors, device, r, g, read, ctx):
    """A failed comparison judged against float32's own error: PyTorch in float64 on the same
    inputs. Within the factor: passed, marked precision_limited. Returns the text to add to a
    mismatch ("" when passed)."""
    ref64 = ctx["ref64"]
    if ref64 is None:
        ref64 = ctx["ref64"] = reference.float64_outputs(case, tensors, device)
    outs64, why = ref64
    if outs64 is None:
        out["precision"] = {"skipped": why}
        return "; no float64 reference: %s" % why
    p = compare.precision(r, g, outs64[ctx["index"]], read, ctx["atol"], ctx["rtol"], reference.PRECISION_FACTOR)
    if p is None:
        return ""
    out["precision"] = p
    details.setdefault("precision", []).append(dict(p, output=out["name"], group=ctx["group"], sizes=ctx["sizes"]))
    if p["precision_limited"]:
        out.update(passed=True, precision_limited=True)
        return ""
    return ("; not float32's limit: against PyTorch in float64, float32 PyTorch is off by %.3g, ONNX by %.3g"
            % (p["torch32_vs_torch64"], p["onnx_vs_torch64"]))


def inference(details, case, sess, cases, seed, tol, refs, graph_outputs, device, export_info=None):
    """Run PyTorch and ORT on every case ({"group", "sizes"[, "sample"]}): the user's samples
    first, the sweep, the adversarial groups at the export sizes; compare where a user reads
    (real tokens of a mask); judge a difference against PyTorch in float64; return the
    fingerprint of the all-2 random case. `refs` caches PyTorch outputs (simplify reuses them)."""
    atol, rtol = tol
    exp_sizes = models.export_sizes(case)
    details.update(atol=atol, rtol=rtol, export_sizes=exp_sizes, cases=[])
    problem, fp, failures = None, None, []
    if case.get("_nondeterministic"):
        raise StageFailure("nondeterministic_model", case["_nondeterministic"])
    for c in cases:
        group = c["group"]
        if group == "samples":
            tensors = list(case["samples"][c["sample"]])
        else:
            tensors = models.make_inputs(case, c["sizes"], seed, group)
        sizes = sizes_of(case, tensors) if group in ("samples", "example") + domain.BRANCH else c["sizes"]
        rec = {"group": group, "sizes": sizes, "outputs": [], "passed": False}
        if group == "samples":
            rec["sample"] = c["sample"]
        details["cases"].append(rec)
        key = json.dumps([group, c.get("sample"), sizes], sort_keys=True)
        on_device = [t.to(device) for t in tensors]
        try:
            if key not in refs:
                outs = torch_outputs(case["model"], on_device)
                refs[key] = [t.cpu().numpy() for t in outs]
        except Exception as e:
            rec["error"] = "PyTorch: %s: %s" % (type(e).__name__, str(e)[:500])
            if group not in ("samples", "example"):
                # inputs the model itself refuses (a size, value or mask pattern): not a verdict on the export
                rec.update(passed=None, skipped="outside the model's domain: PyTorch itself raises on these "
                                                "inputs; not compared")
                continue
            if problem is None:
                problem = StageFailure("model_error", "PyTorch forward failed on the %s inputs at %s: %s"
                                       % (group, sizes, e),
                                       remedy="PyTorch itself fails on %s: fix the model or those inputs (the "
                                              "traceback is in the stage's detail); the export is not judged on them"
                                              % ("your own data" if group == "samples" else "the example"))
            continue
        why = None if group in ("samples", "example") else domain.outside(case, refs[key])
        if why:
            rec.update(passed=None, skipped=why)
            continue
        if "_nondeterministic" not in case:  # once per model, on its first case: is PyTorch a fixed answer?
            case["_nondeterministic"] = reference.nondeterminism(case["model"], on_device, refs[key], atol, rtol)
            if case["_nondeterministic"]:
                raise StageFailure("nondeterministic_model", case["_nondeterministic"])
        try:
            got = sess.run(None, _feed(case, sess, tensors))
        except Exception as e:
            rec["error"] = "onnxruntime: %s: %s" % (type(e).__name__, str(e)[:500])
            failures.append({"group": group, "sizes": sizes, "kind": "onnxruntime",
                             "cls": getattr(e, "cls", None) or classify("inference", e)[0],
                             "text": "ONNX Runtime fails on the %s inputs at %s: %s" % (group, sizes, str(e)[:300])})
            continue
        if c.get("fingerprint"):
            fp = fingerprint(case, sizes, got, tensors)
        ref = refs[key]
        if len(got) != len(ref):
            failures.append({"group": group, "sizes": sizes, "kind": "shape",
                             "text": "ONNX has %d outputs, PyTorch %d" % (len(got), len(ref))})
        label = "on your data (sample %d)" % c["sample"] if group == "samples" else "on the %s inputs" % group
        arrays = [t.numpy() for t in tensors]
        ctx = {"ref64": None, "atol": atol, "rtol": rtol, "group": group, "sizes": sizes}
        for index, (name, r, g) in enumerate(zip(case["output_names"], ref, got)):
            out = {"name": name, "shape": list(r.shape), "ort_shape": list(g.shape)}
            declared = (graph_outputs or {}).get(name) or []
            if r.shape != g.shape:
                out["passed"] = False
                failures.append({"group": group, "sizes": sizes, "kind": "shape", "text": (
                    "output %r at %s: ONNX shape %s, PyTorch %s" % (name, sizes, list(g.shape), list(r.shape)))})
            else:
                mask_name, read = compare.read_positions(case["input_names"], arrays, case["domains"],
                                                         case["dynamic_axes"], r.shape, declared,
                                                         (export_info or {}).get("graph_inputs"))
                out.update(compare.compare(r, g, atol * domain.ATOL_SCALE.get(group, 1.0), rtol, read))
                if read is not None:
                    out["read_through"] = mask_name
                    if out["pad_violations"]:
                        details.setdefault("pad_notes", []).append(
                            "output %r %s at %s: %d pad positions (where %s marks padding) differ by up to %.3g; "
                            "not compared" % (name, label, sizes, out["pad_violations"], mask_name, out["pad_max_abs"]))
                if out["nonfinite_matched"]:
                    warn(details, "output %r: %d NaN/Inf at the same positions in PyTorch and ONNX Runtime "
                                  "%s at %s (counted as matching)" % (name, out["nonfinite_matched"], label, sizes))
                extra = ""
                if not out["passed"] and r.dtype.kind == "f":
                    ctx["index"] = index
                    extra = _judge(details, out, case, tensors, device, r, g, read, ctx)
                if not out["passed"]:
                    note = compare.rows_note(out, r.shape[0] if r.ndim else 0, case["input_names"], arrays,
                                             case["domains"], inputs_mod.shared_by)
                    failures.append({"group": group, "sizes": sizes, "kind": "numeric", "text": (
                        "output %r %s at %s: max_abs %.3g, max_rel %.3g, %d elements outside atol=%g "
                        "rtol=%g%s%s" % (name, label, sizes, out["max_abs"], out["max_rel"], out["violations"],
                                         atol, rtol, note, extra))})
            if len(declared) == g.ndim and any(isinstance(d, int) and d != n for d, n in zip(declared, g.shape)):
                note = "output %r is declared %s in the graph but its shape varies at run time" % (name, declared)
                if note not in details.get("warnings", []):  # consumers that trust it (TensorRT) break
                    warn(details, note)
            rec["outputs"].append(out)
        rec["passed"] = len(got) == len(ref) and all(o["passed"] for o in rec["outputs"])
    skipped = [r for r in details["cases"] if r.get("skipped")]
    if skipped:
        details.setdefault("caveats", []).append(domain.caveat(
            "outside_domain", "%d of %d cases lie outside the model's domain and were skipped (first: %s at %s: %s)"
            % (len(skipped), len(details["cases"]), skipped[0]["group"], skipped[0]["sizes"],
               skipped[0].get("error") or skipped[0]["skipped"])))
    mine = [r for r in details["cases"] if r["group"] == "samples"]
    if mine:
        details["on_your_data"] = {"samples": len(mine), "passed": all(r["passed"] for r in mine),
                                   "max_abs": max((o.get("max_abs", 0) for r in mine for o in r["outputs"]),
                                                  default=None)}
    _notes(details)
    verdict = _verdict(details, export_info or {}, failures, exp_sizes, sess.get_providers())
    if verdict is not None and (problem is None or verdict.cls != "runtime_error"):
        problem = verdict  # what the export got wrong outranks inputs PyTorch itself refuses
    if problem is not None:
        if isinstance(problem, StageFailure):
            problem.value = fp
        raise problem
    return fp


def _notes(details):
    """One warning each for what was left out at pad positions and what float32 explains."""
    pads = details.get("pad_notes")
    if pads:
        warn(details, "compared only where the mask marks real tokens; pad positions differ in %d output(s) "
                      "of the cases, e.g. %s" % (len(pads), pads[0]))
    limited = [p for p in details.get("precision") or [] if p["precision_limited"]]
    if limited:
        worst = max(limited, key=lambda p: p["onnx_vs_torch32"])
        warn(details, "precision_limited: output %r differs from PyTorch by %.3g, as far as float32 itself goes: "
                      "against PyTorch in float64, float32 PyTorch is off by %.3g and ONNX by %.3g (factor %g)"
             % (worst["output"], worst["onnx_vs_torch32"], worst["torch32_vs_torch64"], worst["onnx_vs_torch64"],
                worst["factor"]))


def cases_for(case, sizes, export_info=None, exact=False):
    """The comparison plan: samples, the size sweep within the model's domain, the adversarial
    groups at the export sizes (and, after a tracer warning on a value, inputs beyond the
    example's span), and the fingerprint case (the same in every env). `exact`: the user's
    --sizes replace the sweep, and the fingerprint is taken from them."""
    info = export_info or {}
    bounds = domain.limit(case.get("size_domain") or {}, info.get("range_constraints") or {})
    plan = [{"group": "samples", "sizes": None, "sample": i} for i in range(len(case["samples"]))]
    sweep = models.sweep(case, sizes, case.get("limits"), bounds, exact)
    plan += [{"group": "random", "sizes": s} for s in sweep]
    exp = models.export_sizes(case)
    plan += [{"group": g, "sizes": exp} for g in inputs_mod.ADVERSARIAL]
    if info.get("value_sites"):  # search for the other side of the branch before waiving it
        plan += [{"group": g, "sizes": exp} for g in domain.BRANCH]
    # from eager's domain alone, so both exporters (and every env) fingerprint the same case
    fp = models.fingerprint_sizes(case, sizes, domain.limit(case.get("size_domain") or {}, {}), exact)
    if fp is not None and not models.inside(fp, bounds):  # torch.export certified less: its smallest then
        fp = models.fingerprint_sizes(case, sizes, bounds, exact)
    if fp is not None and fp in sweep:
        plan[[p["sizes"] for p in plan].index(fp)]["fingerprint"] = True
    elif fp is not None:
        plan.append({"group": "random", "sizes": fp, "fingerprint": True})
    return plan
