"""The inference stage of the envctl smoke runner: the comparison plan (your samples, the
size sweep, the adversarial groups, the fingerprint case), PyTorch against ONNX Runtime
on each, and the verdict (value_dependent_branch, numeric_mismatch, dynamic_axis_ignored).

Imports: standard library, torch, numpy and the runner's own siblings (loaded by path
before this one). Raises StageFailure (same protocol as envctl_smoke_stages').
"""
import hashlib
import json
import re

import numpy as np
import torch

import envctl_smoke_compare as compare
import envctl_smoke_domain as domain
import envctl_smoke_inputs as inputs_mod
import envctl_smoke_models as models


from envctl_smoke_classes import StageFailure, warn  # noqa: E402,F401  (sibling: the one definition)


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
    with torch.no_grad():
        return [t.detach() for t in _flatten(model(*inputs))]


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


_SHAPE_ERROR = re.compile(r"shape|dimension|broadcast|reshape", re.I)


def sizes_of(case, tensors):
    """{dim_name: size} read off actual tensors (samples, the example)."""
    out = {}
    for name, t in zip(case["input_names"], tensors):
        for axis, dim in case["dynamic_axes"].get(name, {}).items():
            if axis < t.dim():
                out.setdefault(dim, int(t.shape[axis]))
    return out


def _verdict(details, export_info, failures, exp_sizes):
    """The classified failure for the numeric mismatches seen (or None), and the waiver note."""
    sites = export_info.get("value_sites") or []
    signal = bool(sites) or bool(export_info.get("graphs_differ"))
    where = ("at " + ", ".join(sites)) if sites else "(the graphs exported from two input groups differ)"
    # differences on inputs shaped like the trace's, or on the user's own data: values, not shapes
    at_export = [f for f in failures if f["sizes"] == exp_sizes or f["group"] in inputs_mod.ADVERSARIAL
                 or f["group"] in domain.BRANCH or f["group"] == "samples"]
    if signal and at_export:
        f = at_export[0]
        return StageFailure("value_dependent_branch", "the trace kept one branch of value-dependent code %s: %s"
                            % (where, f["text"]))
    if signal and not failures:
        warn(details, "value-dependent code %s was waived: the branch-flipping inputs (%s) all match"
             % (where, ", ".join(inputs_mod.ADVERSARIAL + domain.BRANCH)))
        details.setdefault("caveats", []).extend(domain.branch_caveats(sites, ()))
    if failures:
        return StageFailure("numeric_mismatch", failures[0]["text"])
    return None


def inference(details, case, sess, cases, seed, tol, refs, graph_outputs, device, export_info=None):
    """Run PyTorch and ORT on every case ({"group", "sizes"[, "sample"]}): the user's samples
    first, the sweep, the adversarial groups at the export sizes; compare; return the
    fingerprint of the all-2 random case. `refs` caches PyTorch outputs (simplify reuses them)."""
    atol, rtol = tol
    exp_sizes = models.export_sizes(case)
    details.update(atol=atol, rtol=rtol, export_sizes=exp_sizes, cases=[])
    problem, fp, failures = None, None, []
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
        try:
            if key not in refs:
                outs = torch_outputs(case["model"], [t.to(device) for t in tensors])
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
                                       % (group, sizes, e))
                problem.remedy = ("PyTorch itself fails on %s: fix the model or those inputs (the traceback is "
                                  "in the stage's detail); the export is not judged on them"
                                  % ("your own data" if group == "samples" else "the example"))
            continue
        why = None if group in ("samples", "example") else domain.outside(case, refs[key])
        if why:
            rec.update(passed=None, skipped=why)
            continue
        try:
            got = sess.run(None, _feed(case, sess, tensors))
        except Exception as e:
            rec["error"] = "onnxruntime: %s: %s" % (type(e).__name__, str(e)[:500])
            if sizes != exp_sizes and _SHAPE_ERROR.search(str(e)):
                e = StageFailure("dynamic_axis_ignored", "ORT fails at %s (exported at %s): a shape is "
                                 "frozen in the graph. %s" % (sizes, exp_sizes, str(e)[:300]))
            problem = problem or e
            continue
        if c.get("fingerprint"):
            fp = fingerprint(case, sizes, got, tensors)
        ref = refs[key]
        if len(got) != len(ref):
            problem = problem or StageFailure("numeric_mismatch", "ONNX has %d outputs, PyTorch %d"
                                              % (len(got), len(ref)))
        label = "on your data (sample %d)" % c["sample"] if group == "samples" else "on the %s inputs" % group
        for name, r, g in zip(case["output_names"], ref, got):
            out = {"name": name, "shape": list(r.shape), "ort_shape": list(g.shape)}
            if r.shape != g.shape:
                out["passed"] = False
                cls = "dynamic_axis_ignored" if sizes != exp_sizes else "numeric_mismatch"
                problem = problem or StageFailure(cls, "output %r at %s: ONNX shape %s, PyTorch %s"
                                                  % (name, sizes, list(g.shape), list(r.shape)))
            else:
                out.update(compare.compare(r, g, atol * domain.ATOL_SCALE.get(group, 1.0), rtol))
                if out["nonfinite_matched"]:
                    warn(details, "output %r: %d NaN/Inf at the same positions in PyTorch and ONNX Runtime "
                                  "%s at %s (counted as matching)" % (name, out["nonfinite_matched"], label, sizes))
                if not out["passed"]:
                    arrays = [t.numpy() for t in tensors]
                    note = compare.rows_note(out, r.shape[0] if r.ndim else 0, case["input_names"], arrays,
                                             case["domains"], inputs_mod.shared_by)
                    failures.append({"group": group, "sizes": sizes, "text": (
                        "output %r %s at %s: max_abs %.3g, max_rel %.3g, %d elements outside atol=%g "
                        "rtol=%g%s" % (name, label, sizes, out["max_abs"], out["max_rel"], out["violations"],
                                       atol, rtol, note))})
            declared = (graph_outputs or {}).get(name) or []
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
    verdict = _verdict(details, export_info or {}, failures, exp_sizes)
    if verdict is not None and (problem is None or (verdict.cls == "value_dependent_branch"
                                                    and getattr(problem, "cls", "") == "numeric_mismatch")):
        problem = verdict
    if problem is not None:
        if isinstance(problem, StageFailure):
            problem.value = fp
        raise problem
    return fp


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
