"""Stages of one model x exporter smoke run: pre_export, export, checker, session,
inference (+ fingerprint) and simplify.

Each stage function takes a `details` dict that it fills as it goes (so a failure keeps
what was learned), returns what later stages need, and signals outcomes by exception:
StageSkip, StageFailure (already classified), or anything else (the runner classifies).
Imports: standard library, torch, onnx, onnxruntime, numpy (+ an optional simplifier).
"""
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

import envctl_smoke_models as models


class StageSkip(Exception):
    """The stage does not apply here; the message says why."""


class StageFailure(Exception):
    """A failure whose class is already known. `value` is still handed to later stages."""

    def __init__(self, cls, message, value=None):
        super().__init__(message)
        self.cls, self.value = cls, value


def warn(details, text):
    details.setdefault("warnings", []).append(text)


def torch_release():
    return tuple(int(x) for x in re.findall(r"\d+", torch.__version__.split("+")[0])[:2])


def dynamo_unavailable():
    """Why the dynamo exporter cannot run here, or None when it can."""
    if torch_release() < (2, 5) or "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return "torch %s has no torch.onnx.export(dynamo=True) (needs torch >= 2.5)" % torch.__version__
    return None


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


def pre_export(details, case, device, seed):
    """Put the model in eval mode on `device`, run it once at the export sizes, check what
    comes out. Returns the export inputs (tensors on device)."""
    model = case["model"]
    if model.training:
        warn(details, "the callable returned a model in training mode; model.eval() applied "
                      "(dropout/BatchNorm would otherwise export in training behaviour)")
    model.eval()
    model.to(device)
    sizes = models.export_sizes(case)
    inputs = [t.to(device) for t in models.make_inputs(case, sizes, seed)]
    details.update(export_sizes=sizes, input_dtypes=[str(t.dtype) for t in case["inputs"]],
                   input_shapes=[list(t.shape) for t in inputs])
    if any(t.dtype == torch.float64 for t in case["inputs"]):
        warn(details, "float64 inputs: deployments run float32; convert the model with .float()")
    outs = torch_outputs(model, inputs)
    details["output_shapes"] = [list(t.shape) for t in outs]
    if any(t.dim() == 0 for t in outs):
        raise StageFailure("model_error", "an output is a 0-d scalar (a loss or metric?); export the "
                                          "inference graph whose outputs keep the batch axis")
    devices = {str(t.device) for t in list(model.parameters()) + list(model.buffers()) + inputs + outs}
    details["devices"] = sorted(devices)
    if len(devices) > 1:
        raise StageFailure("model_error", "tensors on several devices: %s" % sorted(devices))
    names = case["output_names"] or (["output"] if len(outs) == 1 else
                                     ["output_%d" % i for i in range(len(outs))])
    if len(names) != len(outs):
        raise StageFailure("model_error", "%d output_names for %d outputs" % (len(names), len(outs)))
    case["output_names"] = [str(n) for n in names]
    axes = case["dynamic_axes"]
    if "batch" in sizes and not any(n in axes for n in case["output_names"]):
        for n, t in zip(case["output_names"], outs):  # batch follows through unless told otherwise
            if t.dim() >= 1:
                axes[n] = {0: "batch"}
    details["dynamic_axes"] = {n: {str(a): d for a, d in ax.items()} for n, ax in axes.items()}
    return inputs


def read_back(path):
    m = onnx.load(path, load_external_data=False)

    def dims(values):
        return {v.name: [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                         for d in v.type.tensor_type.shape.dim] for v in values}
    return {"opset_imports": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
            "ir_version": m.ir_version, "producer": "%s %s" % (m.producer_name, m.producer_version),
            "inputs": dims(m.graph.input), "outputs": dims(m.graph.output)}


def _note_warnings(details, caught):
    seen = []
    for w in caught:
        where = "/".join(str(w.filename).replace(os.sep, "/").split("/")[-2:])
        text = "%s (%s:%s): %s" % (w.category.__name__, where, w.lineno,
                                   str(w.message).strip().splitlines()[0][:300])
        if text not in seen:
            seen.append(text)
    details["export_warnings"] = seen[:15]
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    for w in caught:  # tracing froze a decision in the model's own code (torch's input checks are benign)
        text = "TracerWarning in %s:%s: %s" % (os.path.basename(w.filename), w.lineno,
                                               str(w.message).strip().splitlines()[0][:200])
        if (w.category.__name__ == "TracerWarning" and not os.path.abspath(w.filename).startswith(torch_dir)
                and text not in details.get("warnings", [])):
            warn(details, text)


def export(details, case, exporter, path, opset, inputs):
    """torch.onnx.export with dynamic batch (+ declared axes). Returns the files to ship."""
    params = inspect.signature(torch.onnx.export).parameters
    axes = case["dynamic_axes"]
    kw = dict(input_names=case["input_names"], output_names=case["output_names"],
              opset_version=opset, do_constant_folding=True)
    if exporter == "torchscript":
        if "dynamo" in params:
            kw["dynamo"] = False  # the default became True in torch 2.9
        kw["dynamic_axes"] = {n: dict(a) for n, a in axes.items()}
        details["dynamic_axes"] = {n: {str(k): v for k, v in a.items()} for n, a in axes.items()}
    else:
        why = dynamo_unavailable()
        if why:
            raise StageSkip(why)
        from torch.export import Dim
        dims = {d: Dim(re.sub(r"\W", "_", d)) for d in models.dim_names(case)}
        shapes = tuple({a: dims[d] for a, d in axes.get(n, {}).items()} or None
                       for n in case["input_names"])
        kw.update(dynamo=True, verbose=False,
                  dynamic_shapes=None if all(s is None for s in shapes) else shapes)
        # Since 2.6 the weights go to a .onnx.data sidecar by default, even for tiny models.
        if "external_data" in params:
            kw["external_data"] = False
        details["external_data_kwarg"] = kw.get("external_data", "unsupported")
        details["dynamic_shapes"] = [None if s is None else {str(a): str(v) for a, v in s.items()}
                                     for s in shapes]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(case["model"], tuple(inputs), path, **kw)
        finally:
            _note_warnings(details, caught)
    folder = os.path.dirname(path)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    details["sidecar_written"] = os.path.exists(path + ".data")
    details["files"] = files
    info = read_back(path)
    details.update(opset_written=info["opset_imports"].get("ai.onnx"), ir_version=info["ir_version"],
                   opset_imports=info["opset_imports"], producer=info["producer"],
                   graph_inputs=info["inputs"], graph_outputs=info["outputs"])
    if details["opset_written"] != opset:
        why = (" (dynamo builds at opset 18 and keeps 18 when onnx's version converter fails)"
               if exporter == "dynamo" and opset < 18 else "")
        warn(details, "requested opset %s but the file says %s%s" % (opset, details["opset_written"], why))
    for name, ax in axes.items():
        written = info["inputs"].get(name)
        for a in ax if written else ():
            if a < len(written) and isinstance(written[a], int):
                raise StageFailure("dynamic_axis_ignored", "input %r axis %d was declared dynamic but "
                                   "was written with fixed size %d" % (name, a, written[a]), files)
    return files


def check(details, path):
    onnx.checker.check_model(path, full_check=True)
    info = read_back(path)
    size = os.path.getsize(path)
    sidecar = os.path.getsize(path + ".data") if os.path.exists(path + ".data") else 0
    details.update(opset_imports=info["opset_imports"], ir_version=info["ir_version"],
                   model_bytes=size, sidecar_bytes=sidecar, total_bytes=size + sidecar)


def open_session(details, path, providers, required):
    details.update(requested=list(providers), available=ort.get_available_providers())
    sess = ort.InferenceSession(path, providers=list(providers))
    got = sess.get_providers()
    details["providers"] = got
    if required and (not got or got[0] != required):
        raise StageFailure("ep_fallback", "required %s, but the session runs on %s (available here: %s)"
                           % (required, got, details["available"]), sess)
    return sess


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


def _compare(ref, got, atol, rtol):
    r, g = _as_float(ref), _as_float(got)
    diff = np.abs(g - r)
    nz = np.abs(r) > 0
    bad = ~np.isclose(g, r, atol=atol, rtol=rtol)  # |g - r| <= atol + rtol * |r|, as np.allclose
    return {"max_abs": float(diff.max()) if diff.size else 0.0,
            "max_rel": float((diff[nz] / np.abs(r[nz])).max()) if nz.any() else 0.0,
            "violations": int(bad.sum()), "passed": not bool(bad.any())}


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


def inference(details, case, sess, cases, seed, tol, refs, graph_outputs, device):
    """Run PyTorch and ORT on every case of the sweep; compare; return the fingerprint of
    the all-2 case. `refs` caches PyTorch outputs across calls (simplify reuses them)."""
    atol, rtol = tol
    exp_sizes = models.export_sizes(case)
    details.update(atol=atol, rtol=rtol, export_sizes=exp_sizes, cases=[])
    problem, fp = None, None
    for sizes in cases:
        rec = {"sizes": sizes, "outputs": [], "passed": False}
        details["cases"].append(rec)
        tensors = models.make_inputs(case, sizes, seed)
        key = json.dumps(sizes, sort_keys=True)
        try:
            if key not in refs:
                outs = torch_outputs(case["model"], [t.to(device) for t in tensors])
                refs[key] = [t.cpu().numpy() for t in outs]
        except Exception as e:
            rec["error"] = "PyTorch: %s: %s" % (type(e).__name__, e)
            problem = problem or StageFailure("model_error", "PyTorch forward failed at %s: %s" % (sizes, e))
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
        if all(v == 2 for v in sizes.values()):
            fp = fingerprint(case, sizes, got, tensors)
        ref = refs[key]
        if len(got) != len(ref):
            problem = problem or StageFailure("numeric_mismatch", "ONNX has %d outputs, PyTorch %d"
                                              % (len(got), len(ref)))
        for name, r, g in zip(case["output_names"], ref, got):
            out = {"name": name, "shape": list(r.shape), "ort_shape": list(g.shape)}
            if r.shape != g.shape:
                out["passed"] = False
                cls = "dynamic_axis_ignored" if sizes != exp_sizes else "numeric_mismatch"
                problem = problem or StageFailure(cls, "output %r at %s: ONNX shape %s, PyTorch %s"
                                                  % (name, sizes, list(g.shape), list(r.shape)))
            else:
                out.update(_compare(r, g, atol, rtol))
                if not out["passed"]:
                    problem = problem or StageFailure(
                        "numeric_mismatch", "output %r at %s: max_abs %.3g, max_rel %.3g, %d elements "
                        "outside atol=%g rtol=%g" % (name, sizes, out["max_abs"], out["max_rel"],
                                                     out["violations"], atol, rtol))
            declared = (graph_outputs or {}).get(name) or []
            if len(declared) == g.ndim and any(isinstance(d, int) and d != n for d, n in zip(declared, g.shape)):
                note = "output %r is declared %s in the graph but its shape varies at run time" % (name, declared)
                if note not in details.get("warnings", []):  # consumers that trust it (TensorRT) break
                    warn(details, note)
            rec["outputs"].append(out)
        rec["passed"] = len(got) == len(ref) and all(o["passed"] for o in rec["outputs"])
    if problem is not None:
        if isinstance(problem, StageFailure):
            problem.value = fp
        raise problem
    return fp


def simplify(details, path, mode, out_path):
    """Simplify with onnxslim/onnxsim; returns the path of the simplified model.

    `auto` uses whichever is installed and skips, saying so, when neither is; `required`
    does the same but fails when neither is; `onnxslim` / `onnxsim` fail when that one is absent.
    """
    if not mode:
        raise StageSkip("not requested (spec simplify is null)")
    tools = ["onnxslim", "onnxsim"] if mode in ("auto", "required") else [mode]
    missing = []
    for tool in tools:
        try:
            lib = __import__(tool)
            break
        except ImportError as e:
            missing.append("%s (%s)" % (tool, e))
    else:
        why = "no simplifier in this env (%s): %s not importable by %s" % (
            mode, " and ".join(missing), sys.executable)
        if mode == "auto":
            raise StageSkip(why + "; install onnxslim in the env to simplify, or ask for "
                                  "simplify 'required' to make its absence a failure")
        raise StageFailure("simplifier_missing", why)
    details.update(tool=tool, version=getattr(lib, "__version__", None))
    model = onnx.load(path)
    before = len(model.graph.node)
    if tool == "onnxslim":
        simplified = lib.slim(model)
    else:
        simplified, ok = lib.simplify(model)
        if not ok:
            raise StageFailure("simplify_failure", "onnxsim's own ONNX-vs-ONNX check failed")
    onnx.save(simplified, out_path)
    details.update(nodes_before=before, nodes_after=len(simplified.graph.node), path=out_path)
    return out_path


def save_final(details, result, out):
    """Save the model of the passed run at `out` (the simplified one if that passed too)."""
    passed = [r for r in result["runs"] if r["status"] == "passed"]
    if not passed:
        why = [st["message"] for r in result["runs"] for st in r["stages"] if st["status"] == "skipped"][:1]
        raise StageFailure("export_failure", "no model to save: no run passed (%s)" % (why[0] if why else "none ran"))
    run = passed[-1]
    simplified = [st["details"]["path"] for st in run["stages"] if st["name"] == "simplify" and st["status"] == "passed"]
    source = (simplified or [f for f in run["files"] if f.endswith(".onnx")])[0]
    details.update(source=source, model=run["model"], exporter=run["exporter"])
    result["out_files"] = details["files"] = save_as(source, out)


def save_as(source, out):
    """Copy the model at `source` to `out` (atomically); a sidecar becomes `out` + ".data",
    re-pointed by onnx because the model names its sidecar file inside the protobuf."""
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = out + ".envctl-tmp"
    written = [out]
    if os.path.exists(source + ".data"):
        model = onnx.load(source)  # pulls the external tensors in
        if os.path.exists(out + ".data"):  # onnx appends to an existing data file
            os.remove(out + ".data")
        # The tensors land in folder/<name of out>.data, the name the model will have.
        onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(out) + ".data")
        written.append(out + ".data")
    else:
        shutil.copyfile(source, tmp)
        if os.path.exists(out + ".data"):  # an old sidecar beside `out` would be shipped by mistake
            os.remove(out + ".data")
    os.replace(tmp, out)
    return written
