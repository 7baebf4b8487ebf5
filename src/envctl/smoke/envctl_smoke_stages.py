"""Stages of one model x exporter smoke run: pre_export, export, checker, session,
inference (+ fingerprint) and simplify.

Each stage function takes a `details` dict that it fills as it goes (so a failure keeps
what was learned), returns what later stages need, and signals outcomes by exception:
StageSkip, StageFailure (already classified), or anything else (the runner classifies).
Imports: standard library, torch, onnx, onnxruntime, numpy (+ an optional simplifier).
"""
import inspect
import os
import re
import shutil
import sys
import warnings

import onnx
import onnxruntime as ort
import torch

import envctl_smoke_compare as compare
import envctl_smoke_domain as domain
import envctl_smoke_inputs as inputs_mod
import envctl_smoke_models as models
from envctl_smoke_infer import cases_for, fingerprint, inference, torch_outputs  # noqa: F401 (the runner's API)


class StageSkip(Exception):
    """The stage does not apply here; the message says why."""


from envctl_smoke_classes import StageFailure, warn  # noqa: E402  (sibling: the one definition)


def torch_release():
    return tuple(int(x) for x in re.findall(r"\d+", torch.__version__.split("+")[0])[:2])


def dynamo_unavailable():
    """Why the dynamo exporter cannot run here, or None when it can."""
    if torch_release() < (2, 5) or "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return "torch %s has no torch.onnx.export(dynamo=True) (needs torch >= 2.5)" % torch.__version__
    return None


def pre_export(details, case, device, seed, input_files=()):
    """Put the model in eval mode on `device`, learn what its inputs look like (domains,
    samples, limits), run it once on the export inputs, check what comes out. Returns the
    export inputs (tensors on device): the example itself where its sizes allow."""
    model = case["model"]
    if model.training:
        warn(details, "the callable returned a model in training mode; model.eval() applied "
                      "(dropout/BatchNorm would otherwise export in training behaviour)")
    model.eval()
    case["samples"] = models.load_samples(case, input_files)
    case["domains"], case["limits"] = inputs_mod.analyse(case, case["samples"])
    details.update(domains=inputs_mod.describe_domains(case), limits=case["limits"], samples=len(case["samples"]))
    model.to(device)
    sizes = models.export_sizes(case)
    as_example = [tuple(s) for s in models.input_shapes(case, sizes)] == [tuple(t.shape) for t in case["inputs"]]
    # The example, as a bare torch.onnx.export would trace it; generated only where a dynamic
    # dim is below 2 (torch.export specializes 0/1, and tracing at 1 hides broadcasting bugs).
    inputs = [t.to(device) for t in (case["inputs"] if as_example else models.make_inputs(case, sizes, seed))]
    details.update(export_sizes=sizes, input_dtypes=[str(t.dtype) for t in case["inputs"]],
                   input_shapes=[list(t.shape) for t in inputs],
                   export_inputs="the example" if as_example else "generated at the export sizes")
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


def _graphs_differ(details, case, kw, path, seed):
    """Export again from inputs chosen to flip a value-dependent branch ("large", then
    "zeros"); True when a graph differs from the one exported from the example."""
    sizes = models.export_sizes(case)
    device = next((t.device for t in case["model"].parameters()), torch.device("cpu"))
    for group in ("large", "zeros"):
        alt = path[:-5] + ".alt-%s.onnx" % group
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(case["model"], tuple(t.to(device) for t in models.make_inputs(
                    case, sizes, seed, group)), alt, **kw)
            if compare.graphs_differ(path, alt):
                details["graph_differs_on"] = group
                return True
        except Exception as e:  # the branch the other inputs take does not even export
            details["graph_differs_on"] = "%s (export raised %s)" % (group, type(e).__name__)
            return True
        finally:
            for f in (alt, alt + ".data"):
                if os.path.exists(f):
                    os.remove(f)
    return False


def _by_signature(model, shapes):
    """The per-input dynamic shapes laid out as torch.export binds the inputs: one entry per
    parameter of forward, the inputs that fall into `*args` nested as one tuple (a wrapper's
    `forward(self, *inputs)` binds all of them to its one parameter)."""
    try:
        params = list(inspect.signature(model.forward if isinstance(model, torch.nn.Module) else model).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the flat layout, as given
        return shapes
    laid, rest = [], list(shapes)
    for p in params:
        if not rest:
            break
        if p.kind == p.VAR_POSITIONAL:
            laid.append(tuple(rest))
            rest = []
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            laid.append(rest.pop(0))
    return tuple(laid) if not rest else shapes


def export(details, case, exporter, path, opset, inputs, seed=0):
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
                  dynamic_shapes=None if all(s is None for s in shapes) else _by_signature(case["model"], shapes))
        # Since 2.6 the weights go to a .onnx.data sidecar by default, even for tiny models.
        if "external_data" in params:
            kw["external_data"] = False
        details["external_data_kwarg"] = kw.get("external_data", "unsupported")
        details["dynamic_shapes"] = [None if s is None else {str(a): str(v) for a, v in s.items()}
                                     for s in shapes]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            program = torch.onnx.export(case["model"], tuple(inputs), path, **kw)
        finally:
            _note_warnings(details, caught)
    if exporter == "dynamo":  # the sizes torch.export certified: the sweep stays inside them
        details["range_constraints"] = domain.export_ranges(program, case)
        details["caveats"] = domain.range_caveats(case, details["range_constraints"])
    sites = compare.value_sites(caught, os.path.dirname(os.path.abspath(torch.__file__)))
    details["value_sites"] = sites
    details["shape_sites"] = compare.shape_sites(caught, os.path.dirname(os.path.abspath(torch.__file__)))
    if sites and exporter == "torchscript":  # the trace may have kept one branch: look twice
        details["graphs_differ"] = _graphs_differ(details, case, kw, path, seed)
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
