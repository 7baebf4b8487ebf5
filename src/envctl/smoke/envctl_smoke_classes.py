"""How the envctl smoke runner classifies a failure: the message patterns that pick a class
for an exception, remedies per exporter, and clean one-line messages (innermost cause, no
terminal colour codes).

The table of classes itself is the protocol's (envctl_smoke_protocol.FAILURE_CLASSES).
Standard library only, Python 3.8+ syntax.
"""
import re

from envctl_smoke_protocol import FAILURE_CLASSES  # sibling (loaded by path first): the one table

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
    """A failure whose class is already known. `value` is still handed to later stages;
    `remedy` (runner.py reads it) replaces the class's own when given."""

    def __init__(self, cls, message, value=None, remedy=None):
        super().__init__(message)
        self.cls, self.value, self.remedy = cls, value, remedy


def warn(details, text):
    details.setdefault("warnings", []).append(text)
