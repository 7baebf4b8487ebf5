"""envctl smoke runner: certify PyTorch -> ONNX -> ONNX Runtime inside one environment.

Run with the target env's interpreter:  python -I runner.py SPEC_JSON RESULT_JSON
Imports only the standard library, torch, onnx, onnxruntime, numpy (onnxscript through
torch; onnxslim/onnxsim when asked). Its siblings envctl_smoke_*.py are loaded by file
path, so nothing is added to sys.path except the spec's model_paths. Importing this
file imports nothing outside the standard library. Python 3.8+ syntax. What SPEC and RESULT
may hold is envctl_smoke_protocol's (Spec, RunnerResult, FAILURE_CLASSES): both sides check it.

SPEC (JSON object; only spec_version is required, the rest have these defaults; a key not
listed here is refused, naming it):
  spec_version: 1              target: "unknown"          opset: 17
  exporters: ["torchscript", "dynamo"]   (dynamo is skipped, with reason, on torch < 2.5)
  providers: ["CPUExecutionProvider"]    asked of ORT, in order
  required_provider: providers[0]        must be first in session.get_providers()
  device: "cpu" | "cuda" | "auto"        where the model runs for the PyTorch reference; "auto": CUDA
                               (with `providers`) when torch sees a GPU, else CPU (CPU provider only)
  expected_versions: {}        {"torch": "2.13.0", ...} vs installed; local labels (+cpu)
                               and trailing ".0"s ignored; keys are import names, "python",
                               or any distribution name (e.g. "onnxruntime-gpu")
  models: []                   "cnn" | "transformer" | "rnn" | "pkg.module:callable"
  model_paths: []              prepended to sys.path before importing user modules
  tolerances: {"atol": 1e-4, "rtol": 1e-3}   model_tolerances: {"cnn": {"atol": ..}}
                               (precedence: model_tolerances > callable's atol/rtol > tolerances)
  sizes: [1, 2, 5]             sizes tried on every dynamic axis (see envctl_smoke_models.sweep),
                               within the sizes the model accepts (envctl_smoke_domain)
  exact_sizes: false           true (envctl export --sizes): `sizes` replace the sweep, nothing added
  seed: 0                      simplify: null | "auto" | "required" | "onnxslim" | "onnxsim"
  workdir: "<result dir>/envctl-smoke-onnx"   .onnx files go to workdir/NN-model/exporter/
  dynamic: null                {name: [axis, ...] | {axis: dim_name}} replaces every model's
                               dynamic_axes (envctl export --dynamic); names must be inputs/outputs
  out: null                    "path.onnx": when everything passed, the final model (simplified if
                               that passed) is saved there (+ "path.onnx.data" if it had a sidecar)
  input_files: []              .npz/.pt files of real inputs for the user models (envctl --inputs)

A user callable returns (model, example_inputs_tuple) or {"model", "inputs", optional
"input_names", "output_names", "dynamic_axes" {name: [axis, ...] | {axis: dim_name}},
"atol", "rtol", "samples" [input tuples or {name: tensor}], "ranges" {input: [low, high]},
"max" {dim_name: largest size}}. Without "dynamic_axes", dim 0 of every input (and output)
is "batch". What the comparison feeds the model: envctl_smoke_inputs (domains, masks,
groups) and envctl_smoke_infer (the plan: samples, size sweep, adversarial groups).

RESULT (JSON, written atomically; also rewritten before each run, with "complete": false
and "in_progress": {"model", "exporter"}, so a crash still tells where it happened):
  {"result_version": 1, "target", "status": "passed" | "failed", "complete": true,
   "versions": {...}, "providers_available": [...], "stages": [the "versions" stage],
   "placement": {"device", "providers", "required_provider"} the run used ("auto" settled),
   "runs": [{"model", "exporter", "status": "passed" | "failed" | "skipped", "stages": [...],
             "failure", "files", "opset_written", "ir_version", "fingerprint",
             "caveats": [{"kind", "message", "where"}]}],
   "failure": first failure or null, "seconds", "out_files": [what "out" wrote],
   "measured_limits": {"max_opset", "max_ir"} this onnxruntime loads (the "limits" stage)}
  stage:   {"name", "status": passed|failed|skipped|warning, "seconds", "details", "message"}
           every run lists the whole ladder: pre_export, export, checker, session, inference,
           simplify (stages after a fatal failure are "skipped"). An env_mismatch fails the
           result but the runs still go ahead, so the report shows what would have worked.
  failure: {"class", "stage", "message", "remedy"}   class: a key of FAILURE_CLASSES
  caveats: what the verdict could not prove: "outside_domain" (sizes or inputs the model itself
           refuses, skipped), "branch_not_exercised" (a value-dependent line no input flipped)
  fingerprint (ORT outputs with every dynamic axis = 2, or the smallest size the model accepts;
           with exact_sizes the smallest accepted of `sizes`): {"sizes", "input_sha256",
           "outputs": [{"name", "shape", "dtype", "samples" (16 evenly spaced), "mean", "l2"}]}
  Non-finite floats are written as the strings "nan", "inf", "-inf".

Exit: 0 a result was written (whatever its status); 2 bad arguments; 3 unreadable spec.
"""
import copy
import faulthandler
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List


def _load_sibling(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # a .py path always has a spec and a loader
        raise ImportError("cannot load %s from %s" % (name, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so the stages module's `import envctl_smoke_models` finds it
    spec.loader.exec_module(module)
    return module


# The protocol (spec, result, failure classes) and the classifier: standard library only.
P = _load_sibling("envctl_smoke_protocol")
_C = _load_sibling("envctl_smoke_classes")
FAILURE_CLASSES, PATTERNS, LADDER, STAGE_DEFAULT = _C.FAILURE_CLASSES, _C.PATTERNS, _C.LADDER, _C.STAGE_DEFAULT
strip_ansi, for_exporter, classify, _chain, _innermost, _path_in, _failure = (
    _C.strip_ansi, _C.for_exporter, _C.classify, _C._chain, _C._innermost, _C._path_in, _C._failure)

class _Fail(Exception):
    """Classified failure raised by the runner itself. The stage wrapper recognises any
    exception with a `cls` attribute (so also envctl_smoke_stages.StageFailure)."""

    def __init__(self, cls, message, value=None, remedy=None):
        super().__init__(message)
        self.cls, self.value, self.remedy = cls, value, remedy


# Where the host follows the run: one JSON line as each stage starts and ends (the file the host
# names in ENVCTL_SMOKE_PROGRESS; nothing without it). Best effort: progress never fails a run.
_PROGRESS = {"path": os.environ.get("ENVCTL_SMOKE_PROGRESS"), "model": None, "sizes": None}


def progress(event, stage, **info):
    if not _PROGRESS["path"]:
        return
    line = dict(info, event=event, stage=stage, model=_PROGRESS["model"])
    if stage == "inference":
        line["sizes"] = _PROGRESS["sizes"]
    try:
        with open(_PROGRESS["path"], "a") as handle:
            handle.write(json.dumps(line) + "\n")
    except (OSError, TypeError, ValueError):
        pass


def run_stage(stages, name, fn, *args, **kw):
    """Run fn(details, *args) as a recorded stage. Returns (value, failure or None, record).
    kw: exporter (whose remedies must not recommend it), where (the path a resource_exhausted
    failure names when the error itself names none)."""
    exporter, where = kw.get("exporter"), kw.get("where")
    rec = {"name": name, "status": "passed", "seconds": 0.0, "details": {}, "message": ""}
    stages.append(rec)
    progress("start", name, exporter=exporter)
    t0, value, fail = time.perf_counter(), None, None
    try:
        value = fn(rec["details"], *args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit from a user module included
        if type(e).__name__ == "StageSkip":
            rec.update(status="skipped", message=str(e))
        elif (known := getattr(e, "cls", None)) in FAILURE_CLASSES:  # a StageFailure names its class
            rec.update(status="failed", message=strip_ansi(str(e)))
            fail = _failure(known, name, str(e), getattr(e, "remedy", None), exporter)
            value = getattr(e, "value", None)
        else:
            cls, remedy = classify(name, e)
            tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()[-20:]
            outer = _chain(e).splitlines()[0] if _chain(e) else type(e).__name__
            first = _innermost(e)
            site = re.search(r"Caused by: \(([^()\s]+:\d+)(?: in (\w+))?\)", _chain(e))
            if site and not re.search(r"(^|/)(torch|_export|_dynamo|fx|_subclasses)/", site.group(1)):
                # torch.export names the user's line that forced a data-dependent guard
                first += " (at %s%s)" % (os.path.basename(site.group(1)),
                                         " in %s" % site.group(2) if site.group(2) else "")
            path = _path_in(e) or where  # a failed write() names no file: the stage's folder does
            if cls == "resource_exhausted" and path and path not in first:
                first += " (at %s)" % path
            # the one-liner is the root cause; torch's wrapper text stays in the stage's detail
            rec.update(status="failed", message=strip_ansi(("%s\n" % outer if outer != first else "") + "\n".join(tail)))
            fail = _failure(cls, name, first[:1000], remedy, exporter)
    if rec["status"] == "passed" and rec["details"].get("warnings"):
        rec.update(status="warning", message="; ".join(rec["details"]["warnings"])[:2000])
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    progress("end", name, exporter=exporter, status=rec["status"], seconds=rec["seconds"])
    return value, fail, rec


def _tolerances(spec, case, ref):
    tol = {"atol": 1e-4, "rtol": 1e-3}
    tol.update({k: v for k, v in spec["tolerances"].items() if k in tol})
    tol.update({k: case.get(k) for k in tol if case.get(k) is not None})
    tol.update({k: v for k, v in spec["model_tolerances"].get(ref, {}).items() if k in tol})
    return float(tol["atol"]), float(tol["rtol"])


def _simplify_stage(details, S, ctx, path):
    """Simplify, then checker + session + inference again, compared against PyTorch."""
    out = S.simplify(details, path, ctx["spec"]["simplify"], path[:-5] + ".simplified.onnx")
    spec = ctx["spec"]

    def sub(name, fn, *args):
        d = details.setdefault(name, {})
        try:
            return fn(d, *args)
        except Exception as e:  # the unsimplified model passed this, so blame the simplifier
            known = getattr(e, "cls", None)
            cls = known if known in FAILURE_CLASSES else classify(name, e)[0]
            text = str(e) if known else _chain(e).splitlines()[0]
            raise _Fail(cls, "%s after %s %s: %s" % (name, details["tool"], details["version"], text[:1000]),  # noqa: B904 - the cause is in the text
                        remedy="the simplifier broke what the plain export got right: drop simplify "
                               "for this target or try the other simplifier/version (%s)"
                               % FAILURE_CLASSES[cls]["summary"])
        finally:
            for w in d.get("warnings", []):
                S.warn(details, "%s: %s" % (name, w))
    sub("checker", S.check, out)
    sess = sub("session", S.open_session, out, spec["providers"], spec["required_provider"])
    info = S.read_back(out)
    sub("inference", S.inference, ctx["case"], sess, ctx["cases"], spec["seed"], ctx["tol"],
        ctx["refs"], info["outputs"], spec["device"], ctx["export_info"])


def _verdict_notes(run, details):
    """What the verdict rests on, at the run's top level (the certificate reads it): PyTorch
    float32 and ONNX against float64 (the three numbers), and the pad-position notes."""
    checked = details.get("precision") or []
    if checked:  # a mismatch float32 does not explain first, else the worst it does
        real = [p for p in checked if not p["precision_limited"]]
        worst = real[0] if real else max(checked, key=lambda p: p["onnx_vs_torch32"])
        run["precision"] = {k: worst[k] for k in ("precision_limited", "onnx_vs_torch32", "torch32_vs_torch64",
                                                  "onnx_vs_torch64", "factor", "output")}
    run["pad_notes"] = list(details.get("pad_notes") or [])[:20]


def _fill_ladder(stages, why="an earlier stage failed"):
    done = {st["name"] for st in stages}
    stages.extend({"name": n, "status": "skipped", "seconds": 0.0, "details": {},
                   "message": "not run: " + why} for n in LADDER if n not in done)


def run_model(spec, index, ref, M, S, emit, D):
    """All exporters for one model; returns the runs. emit(model, exporter) saves progress."""
    pre_stages: List[Dict[str, Any]] = []
    ctx = {"spec": spec, "refs": {}}
    _PROGRESS.update(model=ref, sizes=spec.get("sizes"))

    def prepare(details):
        ctx["case"] = case = M.load_case(ref, spec["seed"])
        if spec["dynamic"] is not None:  # the caller's axes win over the callable's
            case["dynamic_axes"] = {str(k): M._axes_map(v, str(k)) for k, v in spec["dynamic"].items()}
        files = [] if ref in M.BUILTIN_NAMES else spec["input_files"]  # --inputs are for the user's models
        inputs = S.pre_export(details, case, spec["device"], spec["seed"], files)
        D.learn(details, case, spec["sizes"], spec["exact_sizes"], spec["seed"], spec["device"], M)
        unknown = sorted(set(case["dynamic_axes"]) - set(case["input_names"]) - set(case["output_names"]))
        if spec["dynamic"] is not None and unknown:
            raise _Fail("model_error", "dynamic axes name %s, which the model does not have (inputs %s, "
                        "outputs %s)" % (unknown, case["input_names"], case["output_names"]),
                        remedy="use the model's input/output names (the callable's input_names/output_names)")
        return inputs
    emit(ref, None)
    inputs, pre_fail, _ = run_stage(pre_stages, "pre_export", prepare)
    runs = []
    for exporter in spec["exporters"]:
        run = {"model": ref, "exporter": exporter, "status": "passed", "stages": copy.deepcopy(pre_stages),
               "failure": pre_fail, "files": [], "opset_written": None, "ir_version": None,
               "fingerprint": None}
        runs.append(run)
        if pre_fail:
            run["status"] = "failed"
            _fill_ladder(run["stages"])
            continue
        emit(ref, exporter)
        case, stages = ctx["case"], run["stages"]
        folder = os.path.join(spec["workdir"], "%02d-%s" % (index, re.sub(r"[^\w.-]+", "_", ref)), exporter)
        shutil.rmtree(folder, ignore_errors=True)  # a stale sidecar must not be listed as shipped
        os.makedirs(folder)
        path = os.path.join(folder, "model.onnx")

        def step(name, fn, *args):
            value, fail, rec = run_stage(stages, name, fn, *args, exporter=exporter, where=folder)  # noqa: B023 - called in this iteration
            if fail and run["failure"] is None:  # noqa: B023
                run["failure"] = fail  # noqa: B023
            return value, rec
        files, rec = step("export", S.export, case, exporter, path, spec["opset"], inputs, spec["seed"])
        run.update(files=rec["details"].get("files", []), opset_written=rec["details"].get("opset_written"),
                   ir_version=rec["details"].get("ir_version"))
        if rec["status"] == "skipped":
            run["status"] = "skipped"
            _fill_ladder(stages, "export skipped")
            continue
        if files is not None:
            step("checker", S.check, path)
            sess, _ = step("session", S.open_session, path, spec["providers"], spec["required_provider"])
            if sess is not None:
                ctx.update(tol=_tolerances(spec, case, ref), export_info=rec["details"],
                           cases=S.cases_for(case, spec["sizes"], rec["details"], spec["exact_sizes"]))
                run["fingerprint"], inf = step("inference", S.inference, case, sess, ctx["cases"], spec["seed"],
                                               ctx["tol"], ctx["refs"], rec["details"].get("graph_outputs"),
                                               spec["device"], ctx["export_info"])
                _verdict_notes(run, inf["details"])
                step("simplify", _simplify_stage, S, ctx, path)
        _fill_ladder(stages)
        run["status"] = "failed" if run["failure"] else "passed"
    for run in runs:  # what the verdict could not prove (sizes the model refuses, branches never taken)
        run["caveats"] = [c for st in run["stages"] if st["name"] != "simplify"
                          for c in st["details"].get("caveats", [])]
    return runs


def _clean(obj):
    if isinstance(obj, str):
        return strip_ansi(obj)
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)  # noqa: PLR0124 - NaN != NaN
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return _clean(obj.item()) if hasattr(obj, "item") else str(obj)


def write_result(result, path):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".envctl-result-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_clean(result), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(spec, result_path, E):
    t0 = time.perf_counter()
    result = {"result_version": P.RESULT_VERSION, "target": spec["target"], "status": "failed",
              "complete": False, "in_progress": None, "versions": {}, "providers_available": [],
              "stages": [], "runs": [], "failure": None, "seconds": 0.0}

    def emit(model, exporter):  # if the process dies now, the file on disk says where
        where = "loading %s" % model if exporter is None else "%s with the %s exporter" % (model, exporter)
        result.update(in_progress={"model": model, "exporter": exporter},
                      seconds=round(time.perf_counter() - t0, 3),
                      failure=_failure("runner_crash", "runner", "the runner stopped during " + where))
        write_result(result, result_path)
    try:
        _, fail, rec = run_stage(result["stages"], "versions", E.versions_stage, spec)
        result["versions"] = rec["details"].get("versions", {})
        result["providers_available"] = rec["details"].get("providers_available", [])
        result["placement"] = E.resolve_placement(spec, result["versions"])
        failures = [fail] if fail else []
        if not rec["details"].get("import_errors") or set(rec["details"]["import_errors"]) == {"onnxscript"}:
            _, _, lim = run_stage(result["stages"], "limits", _load_sibling("envctl_smoke_probe").limits_stage)
            result["measured_limits"] = {k: lim["details"].get(k) for k in ("max_opset", "max_ir")}
            if lim["status"] == "failed":  # a probe that breaks says nothing about the models
                lim["status"] = "warning"
            _load_sibling("envctl_smoke_builtins")  # the models module imports the names from it
            _load_sibling("envctl_smoke_limits")  # and the --inputs bounds
            M = _load_sibling("envctl_smoke_models")
            for sibling in ("envctl_smoke_inputs", "envctl_smoke_compare", "envctl_smoke_domain",
                            "envctl_smoke_reference", "envctl_smoke_infer"):
                _load_sibling(sibling)  # before the stages module, which imports them
            D = sys.modules["envctl_smoke_domain"]
            S = _load_sibling("envctl_smoke_stages")
            M.add_model_paths(spec["model_paths"])
            os.makedirs(spec["workdir"], exist_ok=True)
            for i, ref in enumerate(spec["models"]):
                result["runs"].extend(run_model(spec, i, ref, M, S, emit, D))
        failures += [r["failure"] for r in result["runs"] if r["failure"]]
        if spec["out"] and not failures:
            _, fail, _ = run_stage(result["stages"], "save", S.save_final, result, spec["out"], where=spec["out"])
            failures += [fail] if fail else []
        result["failure"] = failures[0] if failures else None
        result["complete"] = True
    except Exception as e:  # a runner bug: still hand the host a result it can read
        tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()[-20:]
        result["failure"] = _failure("runner_crash", "runner", "\n".join(tail))
    result.update(status="failed" if result["failure"] else "passed", in_progress=None,
                  seconds=round(time.perf_counter() - t0, 3))
    try:  # the host reads it through the same check: a runner bug is named here, not misread there
        P.RunnerResult.from_json(_clean(result))
    except P.ProtocolError as e:
        result.update(status="failed", failure=_failure("runner_crash", "runner",
                                                        "the runner wrote a result the protocol refuses: %s" % e))
    write_result(result, result_path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -I runner.py SPEC_JSON RESULT_JSON\n")
        return 2
    faulthandler.enable()  # a segfault in native code still leaves a Python stack on stderr
    E = _load_sibling("envctl_smoke_env")
    try:
        spec = E.load_spec(argv[0], argv[1])
    except (OSError, ValueError, E.SpecError) as e:
        sys.stderr.write("envctl smoke runner: unreadable spec %s: %s\n" % (argv[0], e))
        return 3
    run(spec, argv[1], E)
    return 0


if __name__ == "__main__":
    sys.exit(main())
