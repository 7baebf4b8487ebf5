"""envctl smoke runner: certify PyTorch -> ONNX -> ONNX Runtime inside one environment.

Run with the target env's interpreter:  python -I runner.py SPEC_JSON RESULT_JSON
Imports only the standard library, torch, onnx, onnxruntime, numpy (onnxscript through
torch; onnxslim/onnxsim when asked). Its siblings envctl_smoke_*.py are loaded by file
path, so nothing is added to sys.path except the spec's model_paths. Importing this
file (e.g. by path, to read FAILURE_CLASSES) imports nothing outside the standard library.
Python 3.8+ syntax.

SPEC (JSON object; only spec_version is required, the rest have these defaults):
  spec_version: 1              target: "unknown"          opset: 17
  exporters: ["torchscript", "dynamo"]   (dynamo is skipped, with reason, on torch < 2.5)
  providers: ["CPUExecutionProvider"]    asked of ORT, in order
  required_provider: providers[0]        must be first in session.get_providers()
  device: "cpu" | "cuda"                 where the model runs for the PyTorch reference
  expected_versions: {}        {"torch": "2.13.0", ...} vs installed; local labels (+cpu)
                               and trailing ".0"s ignored; keys are import names, "python",
                               or any distribution name (e.g. "onnxruntime-gpu")
  models: []                   "cnn" | "transformer" | "rnn" | "pkg.module:callable"
  model_paths: []              prepended to sys.path before importing user modules
  tolerances: {"atol": 1e-4, "rtol": 1e-3}   model_tolerances: {"cnn": {"atol": ..}}
                               (precedence: model_tolerances > callable's atol/rtol > tolerances)
  sizes: [1, 2, 5]             sizes tried on every dynamic axis (see envctl_smoke_models.sweep)
  seed: 0                      simplify: null | "auto" | "onnxslim" | "onnxsim"
  workdir: "<result dir>/envctl-smoke-onnx"   .onnx files go to workdir/NN-model/exporter/
  dynamic: null                {name: [axis, ...] | {axis: dim_name}} replaces every model's
                               dynamic_axes (envctl export --dynamic); names must be inputs/outputs
  out: null                    "path.onnx": when everything passed, the final model (simplified if
                               that passed) is saved there (+ "path.onnx.data" if it had a sidecar)

A user callable returns (model, example_inputs_tuple) or {"model", "inputs", optional
"input_names", "output_names", "dynamic_axes" {name: [axis, ...] | {axis: dim_name}},
"atol", "rtol"}. Without "dynamic_axes", dim 0 of every input (and output) is "batch".

RESULT (JSON, written atomically; also rewritten before each run, with "complete": false
and "in_progress": {"model", "exporter"}, so a crash still tells where it happened):
  {"result_version": 1, "target", "status": "passed" | "failed", "complete": true,
   "versions": {...}, "providers_available": [...], "stages": [the "versions" stage],
   "runs": [{"model", "exporter", "status": "passed" | "failed" | "skipped", "stages": [...],
             "failure", "files", "opset_written", "ir_version", "fingerprint"}],
   "failure": first failure or null, "seconds", "out_files": [what "out" wrote]}
  stage:   {"name", "status": passed|failed|skipped|warning, "seconds", "details", "message"}
           every run lists the whole ladder: pre_export, export, checker, session, inference,
           simplify (stages after a fatal failure are "skipped"). An env_mismatch fails the
           result but the runs still go ahead, so the report shows what would have worked.
  failure: {"class", "stage", "message", "remedy"}   class: a key of FAILURE_CLASSES
  fingerprint (ORT outputs with every dynamic axis = 2): {"sizes", "input_sha256",
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

RESULT_VERSION = 1

# One table for the runner and the host (which adds runner_crash/timeout/spec_error itself).
FAILURE_CLASSES = {
    "env_mismatch": {
        "summary": "installed versions differ from the lock, or the env cannot reach its device",
        "remedy": "recreate the env from its lock (envctl create) and keep pip from upgrading over it; "
                  "for 'cuda' targets install the torch build matching the driver's CUDA"},
    "import_error": {
        "summary": "torch, onnx, onnxruntime, numpy or onnxscript fails to import in the env",
        "remedy": "pin protobuf to the range onnx needs (onnx>=1.23: protobuf>=6.31.1), numpy<2 for "
                  "builds against numpy 1 (onnxruntime<=1.18, torch<=2.2); install onnxscript for dynamo"},
    "unsupported_operator": {
        "summary": "an operator has no ONNX translation (exporter) or no kernel (onnxruntime)",
        "remedy": "register a custom symbolic/ONNX function (dynamo: custom_translation_table) or "
                  "rewrite the op; or try the other exporter or a newer opset"},
    "opset_unsupported": {
        "summary": "the opset is beyond what torch.onnx or this onnxruntime supports",
        "remedy": "lower the target opset to what both support (ORT 1.16: <=19, 1.17+: >=20; "
                  "TorchScript exporter: <=20) or upgrade onnxruntime"},
    "ir_version_unsupported": {
        "summary": "the model's IR version is newer than this onnxruntime reads",
        "remedy": "upgrade onnxruntime (dynamo writes IR 10: ORT>=1.18; opset 19-20 via TorchScript "
                  "is IR 9: ORT>=1.15) or export at a lower opset with the TorchScript exporter"},
    "checker_failure": {
        "summary": "onnx.checker (full_check) rejected the exported model",
        "remedy": "align onnx with torch (the exporter may emit ops/opsets this onnx does not know): "
                  "upgrade onnx or lower the opset; report it to torch.onnx if it persists"},
    "ep_fallback": {
        "summary": "onnxruntime did not put the required execution provider first (CPU fallback)",
        "remedy": "install onnxruntime-gpu (alone, not beside onnxruntime) matching the CUDA/cuDNN "
                  "major and make its libraries findable (onnxruntime.preload_dlls())"},
    "dynamic_axis_ignored": {
        "summary": "the ONNX graph froze a dynamic axis at its export size",
        "remedy": "no Python ints from tensor shapes (int(x.size(0)), shape-based ifs) in forward; "
                  "script data-dependent control flow (torch.cond) or use the dynamo exporter"},
    "numeric_mismatch": {
        "summary": "ONNX Runtime outputs differ from PyTorch beyond atol + rtol*|ref|",
        "remedy": "look for Python control flow on shapes/values frozen at export (tracing keeps one "
                  "branch, dynamo may specialize it): use torch.cond/torch.where; else compare "
                  "exporters/opsets, or widen this model's atol/rtol"},
    "model_error": {
        "summary": "the model callable raised, returned something unusable, or its forward failed",
        "remedy": "return (model, example_inputs_tuple) or {'model', 'inputs'}; run the callable by "
                  "hand in the env to see the traceback"},
    "export_failure": {
        "summary": "torch.onnx.export failed",
        "remedy": "read the traceback; try the other exporter or another opset; dynamo: "
                  "torch.onnx.export(..., report=True) writes an export report"},
    "runtime_error": {
        "summary": "onnxruntime failed to load or run the model",
        "remedy": "read the ORT message; ship the .onnx.data sidecar with the model; check opset/IR "
                  "against this onnxruntime; retry on CPUExecutionProvider to isolate the EP"},
    "simplify_failure": {
        "summary": "onnxslim/onnxsim failed on the exported model",
        "remedy": "drop simplify for this target or pin a known-good simplifier version"},
    "runner_crash": {
        "summary": "the runner died without a complete result (segfault, OOM, abort in native code)",
        "remedy": "rerun `python -I runner.py spec.json out.json` in the env; a crash at import "
                  "usually means mixed native builds (conda and pip torch/onnxruntime/protobuf)"},
    "timeout": {
        "summary": "the smoke run exceeded the host's time limit",
        "remedy": "shrink the models or sizes, look for a hang in CUDA EP start-up (driver/cuDNN "
                  "mismatch), or raise the timeout"},
    "spec_error": {
        "summary": "the runner could not read the spec (exit code 3)",
        "remedy": "host and runner disagree on the spec format: regenerate it with the same envctl"},
}

# (pattern, class, specific remedy or None): first match wins. Searched in the
# "Type: message" lines of the exception and its causes, not in file paths.
PATTERNS = [
    (r"Descriptors cannot be created directly", "import_error",
     "onnx's generated code is older than protobuf: upgrade onnx, or pin protobuf<=3.20.x"),
    (r"cannot import name 'runtime_version'", "import_error",
     "onnx >= 1.23 needs protobuf >= 6.31.1 (5.26 at the very least)"),
    (r"_ARRAY_API not found|compiled using NumPy 1\.x", "import_error",
     "a module built for numpy 1 meets numpy 2: pin numpy<2, or onnxruntime>=1.19 / torch>=2.3"),
    (r"No module named 'onnxscript|onnxscript\._framework_apis", "import_error",
     "the dynamo exporter needs onnxscript (new enough for this torch) and onnx_ir"),
    (r"Module onnx is not installed|No module named 'onnx'", "import_error", "install onnx"),
    (r"Torch not compiled with CUDA|Found no NVIDIA driver|no CUDA GPUs are available", "env_mismatch",
     "this torch cannot use CUDA: install the CUDA build matching the driver, check the GPU is visible"),
    (r"Unsupported model IR version", "ir_version_unsupported", None),
    (r"Unsupported ONNX opset version|is under development|Current official support for domain"
     r"|highest opset version supported", "opset_unsupported", None),
    (r"Exporting the operator .* is not supported|UnsupportedOperatorError|No decomposition"
     r"|No ONNX function found|NotImplementedError|not implemented|Could not find an implementation",
     "unsupported_operator", None),
    (r"GuardOnDataDependentSymNode|data-dependent|Constraints violated", "export_failure",
     "data-dependent control flow or a shape guard: rewrite it with torch.cond, or relax the axis "
     "(a Dim range), or use the TorchScript exporter and let the shape sweep judge it"),
    (r"GetFileLength .* failed|external data", "runtime_error",
     "the .onnx.data sidecar is missing: ship it beside the model, or export external_data=False"),
    (r"Failed to create CUDAExecutionProvider|Require cuDNN|libcudnn|libcublas|LoadLibrary failed",
     "ep_fallback", None),
    (r"ModuleNotFoundError|ImportError", "import_error", None),
]
LADDER = ("pre_export", "export", "checker", "session", "inference", "simplify")
STAGE_DEFAULT = {"versions": "import_error", "pre_export": "model_error", "export": "export_failure",
                 "checker": "checker_failure", "session": "runtime_error",
                 "inference": "runtime_error", "simplify": "simplify_failure"}


def _chain(exc):
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append("%s: %s" % (type(exc).__name__, exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def classify(stage, exc):
    """(class, remedy) for an exception (or message text) raised in `stage`."""
    text = exc if isinstance(exc, str) else _chain(exc)
    if stage != "pre_export":  # a raising user callable is model_error whatever it says
        for pattern, cls, remedy in PATTERNS:
            if re.search(pattern, text):
                return cls, remedy or FAILURE_CLASSES[cls]["remedy"]
    cls = STAGE_DEFAULT.get(stage, "runtime_error")
    return cls, FAILURE_CLASSES[cls]["remedy"]


def _failure(cls, stage, message, remedy=None):
    return {"class": cls, "stage": stage, "message": message[:2000],
            "remedy": remedy or FAILURE_CLASSES[cls]["remedy"]}


class _Fail(Exception):
    """Classified failure raised by the runner itself. The stage wrapper recognises any
    exception with a `cls` attribute (so also envctl_smoke_stages.StageFailure)."""

    def __init__(self, cls, message, value=None, remedy=None):
        super().__init__(message)
        self.cls, self.value, self.remedy = cls, value, remedy


def run_stage(stages, name, fn, *args):
    """Run fn(details, *args) as a recorded stage. Returns (value, failure or None, record)."""
    rec = {"name": name, "status": "passed", "seconds": 0.0, "details": {}, "message": ""}
    stages.append(rec)
    t0, value, fail = time.perf_counter(), None, None
    try:
        value = fn(rec["details"], *args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit from a user module included
        if type(e).__name__ == "StageSkip":
            rec.update(status="skipped", message=str(e))
        elif getattr(e, "cls", None) in FAILURE_CLASSES:
            rec.update(status="failed", message=str(e))
            fail = _failure(e.cls, name, str(e), getattr(e, "remedy", None))
            value = getattr(e, "value", None)
        else:
            cls, remedy = classify(name, e)
            tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()[-20:]
            rec.update(status="failed", message="\n".join(tail))
            first = _chain(e).splitlines()[0] if _chain(e) else type(e).__name__
            fail = _failure(cls, name, first[:1000], remedy)
    if rec["status"] == "passed" and rec["details"].get("warnings"):
        rec.update(status="warning", message="; ".join(rec["details"]["warnings"])[:2000])
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return value, fail, rec


def _load_sibling(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so the stages module's `import envctl_smoke_models` finds it
    spec.loader.exec_module(module)
    return module


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
            cls = e.cls if getattr(e, "cls", None) in FAILURE_CLASSES else classify(name, e)[0]
            text = str(e) if getattr(e, "cls", None) else _chain(e).splitlines()[0]
            raise _Fail(cls, "%s after %s %s: %s" % (name, details["tool"], details["version"], text[:1000]),
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
        ctx["refs"], info["outputs"], spec["device"])


def _fill_ladder(stages, why="an earlier stage failed"):
    done = {st["name"] for st in stages}
    stages.extend({"name": n, "status": "skipped", "seconds": 0.0, "details": {},
                   "message": "not run: " + why} for n in LADDER if n not in done)


def run_model(spec, index, ref, M, S, emit):
    """All exporters for one model; returns the runs. emit(model, exporter) saves progress."""
    pre_stages, ctx = [], {"spec": spec, "refs": {}}

    def prepare(details):
        ctx["case"] = case = M.load_case(ref, spec["seed"])
        if spec["dynamic"] is not None:  # the caller's axes win over the callable's
            case["dynamic_axes"] = {str(k): M._axes_map(v, str(k)) for k, v in spec["dynamic"].items()}
        inputs = S.pre_export(details, case, spec["device"], spec["seed"])
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
            value, fail, rec = run_stage(stages, name, fn, *args)
            if fail and run["failure"] is None:
                run["failure"] = fail
            return value, rec
        files, rec = step("export", S.export, case, exporter, path, spec["opset"], inputs)
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
                sizes = spec["sizes"]
                ctx.update(tol=_tolerances(spec, case, ref), cases=M.sweep(case, sizes))
                all2 = {d: 2 for d in M.dim_names(case)}
                if all2 not in ctx["cases"]:
                    ctx["cases"].append(all2)  # the fingerprint case, the same in every env
                run["fingerprint"], _ = step("inference", S.inference, case, sess, ctx["cases"], spec["seed"],
                                             ctx["tol"], ctx["refs"], rec["details"].get("graph_outputs"),
                                             spec["device"])
                step("simplify", _simplify_stage, S, ctx, path)
        _fill_ladder(stages)
        run["status"] = "failed" if run["failure"] else "passed"
    return runs


def _clean(obj):
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)
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
    result = {"result_version": RESULT_VERSION, "target": spec["target"], "status": "failed",
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
        failures = [fail] if fail else []
        if not rec["details"].get("import_errors") or set(rec["details"]["import_errors"]) == {"onnxscript"}:
            _load_sibling("envctl_smoke_builtins")  # the models module imports the names from it
            M, S = _load_sibling("envctl_smoke_models"), _load_sibling("envctl_smoke_stages")
            M.add_model_paths(spec["model_paths"])
            os.makedirs(spec["workdir"], exist_ok=True)
            for i, ref in enumerate(spec["models"]):
                result["runs"].extend(run_model(spec, i, ref, M, S, emit))
        failures += [r["failure"] for r in result["runs"] if r["failure"]]
        if spec["out"] and not failures:
            _, fail, _ = run_stage(result["stages"], "save", S.save_final, result, spec["out"])
            failures += [fail] if fail else []
        result["failure"] = failures[0] if failures else None
        result["complete"] = True
    except Exception as e:  # a runner bug: still hand the host a result it can read
        tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()[-20:]
        result["failure"] = _failure("runner_crash", "runner", "\n".join(tail))
    result.update(status="failed" if result["failure"] else "passed", in_progress=None,
                  seconds=round(time.perf_counter() - t0, 3))
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
