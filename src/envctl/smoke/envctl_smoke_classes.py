"""Failure classes of the envctl smoke runner: the table (class -> summary, remedy), the
message patterns that classify exceptions, remedies per exporter, and clean one-line
messages (innermost cause, no terminal colour codes).

Standard library only: the host reads FAILURE_CLASSES by loading runner.py by path, which
loads this file. Python 3.8+ syntax.
"""
import re

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
                  "rewrite the op; or try the {other} exporter or a newer opset"},
    "opset_unsupported": {
        "summary": "the opset is beyond what torch.onnx or this onnxruntime supports",
        "remedy": "lower the target opset to what both support (ORT 1.16: <=19, 1.17+: >=20; "
                  "TorchScript exporter: <=20) or upgrade onnxruntime"},
    "ir_version_unsupported": {
        "summary": "the model's IR version is newer than this onnxruntime reads",
        "remedy": "upgrade onnxruntime (dynamo writes IR 10: ORT>=1.18; opset 19-20 via TorchScript "
                  "is IR 9: ORT>=1.15) or export at a lower opset<torchscript| with the TorchScript exporter>"},
    "checker_failure": {
        "summary": "onnx.checker (full_check) rejected the exported model",
        "remedy": "align onnx with torch (the exporter may emit ops/opsets this onnx does not know): "
                  "upgrade onnx or lower the opset; report it to torch.onnx if it persists"},
    "ep_fallback": {
        "summary": "onnxruntime did not put the required execution provider first (CPU fallback)",
        "remedy": "install onnxruntime-gpu (alone, not beside onnxruntime) matching the CUDA/cuDNN "
                  "major and make its libraries findable (onnxruntime.preload_dlls())"},
    "dynamic_axis_ignored": {
        "summary": "the ONNX graph froze a dynamic axis at its export size (file:line named when the tracer warned)",
        "remedy": "keep shapes in tensors in forward (at the named line, where one is named): no int(x.size(1)), "
                  "range(x.shape[1]) loops or .tolist() of sizes (vectorise the loop, or use torch ops on x.shape); "
                  "torch.cond for shape-dependent control flow<dynamo|, or use the dynamo exporter>"
                  "<torchscript|, or export with the TorchScript exporter and let the size sweep judge it>"},
    "value_dependent_branch": {
        "summary": "the export kept one branch of Python control flow on a tensor's values (file:line named)",
        "remedy": "replace the Python `if`, loop or list on tensor values (.item(), .tolist(), bool(t)) at the "
                  "named line with torch.where, masking or torch.cond"
                  "<dynamo| (the dynamo exporter refuses such code instead of freezing it)>; if the other "
                  "branch can never happen, declare the inputs' `ranges` or give real `samples`"},
    "numeric_mismatch": {
        "summary": "ONNX Runtime outputs differ from PyTorch beyond atol + rtol * abs(ref) where a user reads them, "
                   "and further than float32 PyTorch itself is from float64",
        "remedy": "the export computes something else: look for custom symbolics or autograd.Functions, "
                  "in-place ops and Python state read in forward; compare exporters/opsets<dynamo| (try the "
                  "dynamo exporter)>; report it to torch.onnx with the inputs the message names"},
    "nondeterministic_model": {
        "summary": "PyTorch itself gives different outputs for the same inputs in eval mode (a random op, or state)",
        "remedy": "make forward deterministic in eval: F.dropout(x, p, training=self.training) (or nn.Dropout), "
                  "no torch.rand*/bernoulli outside training, no state carried from call to call (a cache, a "
                  "counter); ONNX cannot match a moving answer"},
    "model_error": {
        "summary": "the model callable raised, returned something unusable, or its forward failed",
        "remedy": "return (model, example_inputs_tuple) or {'model', 'inputs'}; run the callable by "
                  "hand in the env to see the traceback"},
    "export_failure": {
        "summary": "torch.onnx.export failed",
        "remedy": "read the innermost error (the detail keeps torch's wrapper text); try the {other} "
                  "exporter or another opset<torchscript|; torch.onnx.export(..., dynamo=True, report=True) "
                  "writes an export report>"},
    "runtime_error": {
        "summary": "onnxruntime failed to load or run the model",
        "remedy": "read the ORT message: a missing .onnx.data sidecar (ship it beside the model) or an opset/IR "
                  "this onnxruntime does not read stops the load; on a GPU, retry on CPUExecutionProvider to "
                  "isolate the EP"},
    "simplify_failure": {
        "summary": "onnxslim/onnxsim failed on the exported model",
        "remedy": "drop simplify for this target or pin a known-good simplifier version"},
    "resource_exhausted": {
        "summary": "out of disk space, memory or open files (ENOSPC / ENOMEM / EMFILE) at the named path",
        "remedy": "free space where the message points (or set TMPDIR to a larger disk), free memory or "
                  "shrink the sizes (--sizes), or raise the open-files limit (ulimit -n)"},
    "simplifier_missing": {
        "summary": "simplify was required but no simplifier (onnxslim/onnxsim) is installed in the env",
        "remedy": "add onnxslim (or onnxsim) to the target's pip_extra (or pip install it for "
                  "--target host), or use simplify 'auto' to skip when none is installed"},
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
    (r"No space left on device|ENOSPC|\[Errno 28\]|Cannot allocate memory|ENOMEM|\[Errno 12\]|MemoryError"
     r"|std::bad_alloc|Too many open files|EMFILE|\[Errno 24\]|Disk quota exceeded", "resource_exhausted", None),
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
     "(a Dim range)<torchscript|, or use the TorchScript exporter and let the shape sweep judge it>"),
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


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # colour codes torch puts in its messages
RESOURCE = PATTERNS[0][0]


def strip_ansi(text):
    return ANSI.sub("", text)


def for_exporter(remedy, exporter):
    """A remedy for a failure under `exporter`: "<E|text>" parts, which recommend exporter E,
    are dropped when E is the one that failed; "{other}" names the other exporter."""
    text = re.sub(r"<(torchscript|dynamo)\|([^>]*)>", lambda m: "" if m.group(1) == exporter else m.group(2),
                  remedy or "")
    return text.replace("{other}", {"torchscript": "dynamo", "dynamo": "TorchScript"}.get(exporter, "other"))


def _chain(exc):
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(strip_ansi("%s: %s" % (type(exc).__name__, exc)))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def _innermost(exc):
    """The root cause along `raise ... from` links: torch.onnx wraps the real error (e.g.
    "Cannot view a tensor with shape ...") in generic text about the export steps."""
    seen = set()
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    lines = [l.strip() for l in strip_ansi(str(exc)).splitlines() if l.strip()]
    return "%s: %s" % (type(exc).__name__, lines[0]) if lines else type(exc).__name__


def _path_in(exc):
    """The file an OSError in the chain names (so resource_exhausted says where)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "filename", None):
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def classify(stage, exc):
    """(class, remedy) for an exception (or message text) raised in `stage`."""
    text = exc if isinstance(exc, str) else _chain(exc)
    if re.search(RESOURCE, text):  # whatever stage: a full disk is not the model's fault
        return "resource_exhausted", FAILURE_CLASSES["resource_exhausted"]["remedy"]
    if stage != "pre_export":  # a raising user callable is model_error whatever it says
        for pattern, cls, remedy in PATTERNS:
            if re.search(pattern, text):
                return cls, remedy or FAILURE_CLASSES[cls]["remedy"]
    cls = STAGE_DEFAULT.get(stage, "runtime_error")
    return cls, FAILURE_CLASSES[cls]["remedy"]


def _failure(cls, stage, message, remedy=None, exporter=None):
    return {"class": cls, "stage": stage, "message": strip_ansi(message)[:2000],
            "remedy": for_exporter(remedy or FAILURE_CLASSES[cls]["remedy"], exporter)}


# The one exception every stage raises for a failure whose class it knows (runner.py reads `cls`).
class StageFailure(Exception):
    """A failure whose class is already known. `value` is still handed to later stages."""

    def __init__(self, cls, message, value=None):
        super().__init__(message)
        self.cls, self.value = cls, value


def warn(details, text):
    details.setdefault("warnings", []).append(text)
