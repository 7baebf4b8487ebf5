"""The smoke runner's protocol: the one definition of what crosses the process boundary.

- `Spec`: what the host (envctl certify/export) or the device (a bundle's devcert.py) asks the
  runner to do, written as spec.json;
- `RunnerResult` (with `Failure`, `Caveat`, `Precision`, `Placement`): what the runner writes
  back as result.json;
- `FAILURE_CLASSES`: the classes a failure may name, with their summaries and remedies.

Each record has `from_json` (raises `ProtocolError`, naming the field, on a missing field, a
wrong type or an unknown schema version) and `to_json`, which checks the same before it writes,
so neither side hands the other something it would refuse. The certificate body is in
envctl_smoke_certificate.py.

Standard library only, Python 3.8 syntax: the runner loads it by path beside runner.py inside
the target env, a bundle ships it in share/envctl-bundle/smoke/ for devcert.py on the device,
and envctl imports it as envctl.smoke.envctl_smoke_protocol.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SPEC_VERSION = 1
RESULT_VERSION = 1
EXPORTERS = ("torchscript", "dynamo")
DEVICES = ("cpu", "cuda", "auto")  # "auto": whatever the env's torch sees (the runner settles it)
SIMPLIFIERS = ("auto", "required", "onnxslim", "onnxsim")
RUN_STATUSES = ("passed", "failed", "skipped", "warning")
CAVEAT_KINDS = ("outside_domain", "branch_not_exercised")


class ProtocolError(ValueError):
    """A spec, result or certificate that is not the protocol's shape (the message names the field)."""


# The classes a failure may name, for the runner, the host and the device (the runner never names
# runner_crash/timeout/spec_error: those are how the host or device saw the runner end).
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


def remedy_of(klass: str) -> str:
    return FAILURE_CLASSES.get(klass, {}).get("remedy", "")


def _kind_name(kind: Any) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


def expect(data: dict, key: str, kind: Any, optional: bool = True, where: str = "") -> Any:
    """data[key] when it is a `kind` (None when missing and `optional`); else ProtocolError naming where.key.
    True/False are never numbers."""
    value = data.get(key)
    if value is None and optional:
        return None
    numeric = kind in (int, float, (int, float))
    if not isinstance(value, kind) or (isinstance(value, bool) and numeric):
        raise ProtocolError("%s%r is %s, not %s" % (where, key, type(value).__name__, _kind_name(kind)))
    return value


def _versioned(data: Any, what: str, key: str, version: int) -> None:
    """ProtocolError unless `data` is an object of this `version` (`key`) of the protocol."""
    if not isinstance(data, dict):
        raise ProtocolError("the %s is %s, not an object" % (what, type(data).__name__))
    if data.get(key) != version:
        raise ProtocolError("%s %r is %r: this envctl reads %s %d (host and runner come from different envctl "
                            "versions)" % (what, key, data.get(key), key, version))


def _texts(value: Any) -> bool:  # a list of strings
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass
class Failure:
    """The first failure of a run: its class (a key of FAILURE_CLASSES), stage, message and remedy."""

    klass: str
    stage: str = ""
    message: str = ""
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # anything else the runner recorded

    @classmethod
    def of(cls, klass: str, message: str, stage: str = "runner") -> Failure:
        """A failure the host or device saw (the runner died, hung, wrote nothing): remedy from the table."""
        return cls(klass, stage, message, remedy_of(klass))

    def to_json(self) -> dict[str, Any]:
        return dict(self.details, **{"class": self.klass, "stage": self.stage, "message": self.message,
                                     "remedy": self.remedy})

    @classmethod
    def from_json(cls, data: Any, where: str = "failure") -> Failure | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ProtocolError("'%s' is %s, not an object" % (where, type(data).__name__))
        if not isinstance(data.get("class"), str):
            raise ProtocolError("'%s' has no 'class'" % where)
        for key in ("stage", "message", "remedy"):
            expect(data, key, str, where=where + ".")
        extra = {k: v for k, v in data.items() if k not in ("class", "stage", "message", "remedy")}
        return cls(data["class"], data.get("stage") or "", data.get("message") or "", data.get("remedy") or "", extra)


@dataclass
class Spec:
    """What the runner is asked to do (see runner.py's docstring for each field)."""

    target: str = "unknown"
    opset: int = 17
    exporters: list[str] = field(default_factory=lambda: list(EXPORTERS))
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    required_provider: str | None = None  # None: providers[0] (settled by the runner)
    device: str = "cpu"
    expected_versions: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    model_paths: list[str] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)
    model_tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=lambda: [1, 2, 5])
    exact_sizes: bool = False
    seed: int = 0
    simplify: str | None = None
    workdir: str | None = None  # None: <result dir>/envctl-smoke-onnx (the runner decides)
    dynamic: dict[str, Any] | None = None
    out: str | None = None
    input_files: list[str] = field(default_factory=list)

    def check(self) -> Spec:
        """This spec, or ProtocolError naming the first field that is wrong."""
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        checks = [
            ("target", isinstance(self.target, str), "a name"),
            ("opset", isinstance(self.opset, int) and not isinstance(self.opset, bool), "an integer"),
            ("exporters", _texts(self.exporters) and set(self.exporters) <= set(EXPORTERS),
             "a list of 'torchscript'/'dynamo'"),
            ("providers", _texts(self.providers) and bool(self.providers), "a non-empty list of provider names"),
            ("required_provider", self.required_provider is None or isinstance(self.required_provider, str),
             "a provider name"),
            ("device", self.device in DEVICES, "one of " + ", ".join(DEVICES)),
            ("expected_versions", isinstance(self.expected_versions, dict)
             and all(isinstance(v, str) for v in self.expected_versions.values()), "an object {name: version}"),
            ("models", _texts(self.models), "a list of strings"),
            ("model_paths", _texts(self.model_paths), "a list of folders"),
            ("tolerances", isinstance(self.tolerances, dict) and all(number(v) for v in self.tolerances.values()),
             "an object {atol, rtol} of numbers"),
            ("model_tolerances", isinstance(self.model_tolerances, dict) and all(
                isinstance(t, dict) and all(number(v) for v in t.values()) for t in self.model_tolerances.values()),
             "an object {model: {atol, rtol}}"),
            ("sizes", isinstance(self.sizes, list) and bool(self.sizes) and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.sizes), "integers >= 1"),
            ("exact_sizes", isinstance(self.exact_sizes, bool), "true or false"),
            ("seed", isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
             "an integer >= 0"),
            ("simplify", self.simplify is None or self.simplify in SIMPLIFIERS,
             "null or one of " + ", ".join(SIMPLIFIERS)),
            ("workdir", self.workdir is None or isinstance(self.workdir, str), "a folder"),
            ("dynamic", self.dynamic is None or (isinstance(self.dynamic, dict) and all(
                isinstance(v, (list, dict)) for v in self.dynamic.values())),
             "an object {input_name: [axis, ...] | {axis: dim_name}}"),
            ("out", self.out is None or (isinstance(self.out, str) and self.out.endswith(".onnx")),
             "a path ending in .onnx"),
            ("input_files", _texts(self.input_files), "a list of .npz/.pt paths"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise ProtocolError("spec %r is %r: it must be %s" % (name, getattr(self, name), what))
        return self

    def to_json(self) -> dict[str, Any]:
        return dict({"spec_version": SPEC_VERSION}, **asdict(self.check()))

    @classmethod
    def from_json(cls, data: Any) -> Spec:
        """A spec object; a null field takes its default (except simplify, where null means none)."""
        _versioned(data, "spec", "spec_version", SPEC_VERSION)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(k) for k in data if k != "spec_version" and k not in known)
        if unknown:
            raise ProtocolError("spec field %s is not part of spec_version %d" % (", ".join(map(repr, unknown)),
                                                                                 SPEC_VERSION))
        return cls(**{k: v for k, v in data.items() if k in known and (v is not None or k == "simplify")}).check()

    def recorded(self, placement: Placement | None) -> dict[str, Any]:
        """What a certificate records as the run's spec: the placement the runner settled, when it did."""
        out = {k: getattr(self, k) for k in ("opset", "exporters", "providers", "required_provider", "device",
                                             "models", "tolerances", "sizes", "seed", "simplify")}
        out.update(placement.as_spec() if placement is not None else {})
        return out


@dataclass(frozen=True)
class Caveat:
    """What a verdict could not prove, for one model and exporter: sizes or inputs the model
    itself refuses ("outside_domain", skipped), or a value-dependent line that no input tried
    flipped ("branch_not_exercised"). `where`: the dim or file:line it is about."""

    model: str
    exporter: str
    kind: str
    message: str
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "exporter": self.exporter, "kind": self.kind, "message": self.message,
                "where": self.where}

    def line(self) -> str:
        return "%s [%s]: %s" % (self.model, self.exporter, self.message)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Caveat:
        if not isinstance(data, dict):
            raise ProtocolError("%sis %s, not an object" % (where, type(data).__name__))
        for key in ("model", "exporter", "kind", "message"):
            expect(data, key, str, optional=False, where=where)
        if data["kind"] not in CAVEAT_KINDS:
            raise ProtocolError("%s'kind' is %r, not one of %s" % (where, data["kind"], ", ".join(CAVEAT_KINDS)))
        expect(data, "where", str, where=where)
        return cls(data["model"], data["exporter"], data["kind"], data["message"], data.get("where"))


def run_caveats(runs: list[dict[str, Any]]) -> list[Caveat]:
    """Every run's caveats (the runner lists them per run without model and exporter), typed."""
    out: list[Caveat] = []
    for i, run in enumerate(runs):
        for j, raw in enumerate(run.get("caveats") or []):
            if not isinstance(raw, dict):
                raise ProtocolError("runs[%d].caveats[%d] is %s, not an object" % (i, j, type(raw).__name__))
            caveat = Caveat.from_json(dict({"model": run.get("model"), "exporter": run.get("exporter")}, **raw),
                                      where="runs[%d].caveats[%d]." % (i, j))
            if caveat not in out:
                out.append(caveat)
    return out


@dataclass(frozen=True)
class Precision:
    """A run's comparison judged against PyTorch in float64 (runs[].precision): the largest
    differences ONNX vs float32 PyTorch, float32 PyTorch vs float64, ONNX vs float64, and
    whether ONNX stayed within `factor` times float32's own error (a pass, precision_limited)."""

    precision_limited: bool
    onnx_vs_torch32: float
    torch32_vs_torch64: float
    onnx_vs_torch64: float
    factor: float
    output: str = ""

    @classmethod
    def from_json(cls, data: Any, where: str = "precision") -> Precision:
        if not isinstance(data, dict):
            raise ProtocolError("'%s' is %s, not an object" % (where, type(data).__name__))
        if not isinstance(data.get("precision_limited"), bool):
            raise ProtocolError("'%s.precision_limited' is %r, not true/false" % (where, data.get("precision_limited")))
        for key in ("onnx_vs_torch32", "torch32_vs_torch64", "onnx_vs_torch64", "factor"):
            value = data.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ProtocolError("'%s.%s' is %s, not a number" % (where, key, type(value).__name__))
        if not isinstance(data.get("output", ""), str):
            raise ProtocolError("'%s.output' is %s, not text" % (where, type(data["output"]).__name__))
        return cls(precision_limited=data["precision_limited"], onnx_vs_torch32=float(data["onnx_vs_torch32"]),
                   torch32_vs_torch64=float(data["torch32_vs_torch64"]),
                   onnx_vs_torch64=float(data["onnx_vs_torch64"]), factor=float(data["factor"]),
                   output=data.get("output") or "")


def check_verdict_fields(run: dict, where: str) -> None:
    """runs[i].precision (see Precision) and runs[i].pad_notes (a list of text), when present."""
    if run.get("precision") is not None:
        Precision.from_json(run["precision"], where + "precision")
    notes = run.get("pad_notes")
    if notes is not None and not _texts(notes):
        raise ProtocolError("'%spad_notes' is not a list of text" % where)


@dataclass(frozen=True)
class Placement:
    """Where the run went: the device the PyTorch reference ran on and the ONNX Runtime providers asked
    for. The runner settles a spec's device "auto" itself, so the host never imports torch to ask."""

    device: str  # "cpu" | "cuda"
    providers: tuple[str, ...]
    required_provider: str

    @classmethod
    def from_json(cls, data: Any) -> Placement | None:
        if data is None:
            return None  # a runner that stopped before it imported torch
        if not isinstance(data, dict):
            raise ProtocolError("'placement' is %s, not an object" % type(data).__name__)
        if data.get("device") not in ("cpu", "cuda"):
            raise ProtocolError("'placement.device' is %r, not 'cpu' or 'cuda'" % (data.get("device"),))
        providers = data.get("providers")
        if not _texts(providers) or not providers:
            raise ProtocolError("'placement.providers' is not a non-empty list of provider names")
        required = expect(data, "required_provider", str, optional=False, where="placement.")
        return cls(device=data["device"], providers=tuple(providers), required_provider=required)

    def as_spec(self) -> dict[str, Any]:
        """The spec's own keys, settled: what a certificate records as the run's spec."""
        return {"device": self.device, "providers": list(self.providers), "required_provider": self.required_provider}


def named_stages(stages: list, where: str) -> list:
    """Readers index every stage by its name (certify, export, the JUnit and HTML reports)."""
    for j, stage in enumerate(stages):
        if not (isinstance(stage, dict) and isinstance(stage.get("name"), str)):
            raise ProtocolError("%s[%d] is not an object with a 'name'" % (where, j))
    return stages


@dataclass
class RunnerResult:
    """result.json, checked: every field a reader walks has the type it expects."""

    status: str  # "passed" | "failed"
    runs: list[dict[str, Any]] = field(default_factory=list)  # per model x exporter; model/exporter/status checked
    stages: list[dict[str, Any]] = field(default_factory=list)  # the runner's own stages (versions, limits, save)
    failure: Failure | None = None
    versions: dict[str, Any] | None = None
    providers_available: list[str] | None = None
    measured_limits: dict[str, Any] | None = None
    caveats: list[Caveat] = field(default_factory=list)  # what the verdicts could not prove
    placement: Placement | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the checked JSON, for fields only some readers use

    def get(self, key: str, default: Any = None) -> Any:  # optional fields few readers use (out_files, ...)
        return self.raw.get(key, default)

    def to_json(self) -> dict[str, Any]:
        return RunnerResult.from_json(self.raw).raw

    @classmethod
    def from_json(cls, data: Any) -> RunnerResult:
        _versioned(data, "result", "result_version", RESULT_VERSION)
        if data.get("status") not in ("passed", "failed"):
            raise ProtocolError("'status' is %r, not 'passed' or 'failed'" % (data.get("status"),))
        runs = expect(data, "runs", list) or []
        for i, run in enumerate(runs):
            where = "runs[%d]." % i
            if not isinstance(run, dict):
                raise ProtocolError("runs[%d] is %s, not an object" % (i, type(run).__name__))
            expect(run, "model", str, optional=False, where=where)
            expect(run, "exporter", str, optional=False, where=where)
            if run.get("status") not in RUN_STATUSES:
                raise ProtocolError("%s'status' is %r" % (where, run.get("status")))
            named_stages(expect(run, "stages", list, where=where) or [], "runs[%d].stages" % i)
            Failure.from_json(run.get("failure"), "runs[%d].failure" % i)
            expect(run, "caveats", list, where=where)
            check_verdict_fields(run, where)
        stages = named_stages(expect(data, "stages", list) or [], "stages")
        return cls(status=data["status"], runs=runs, stages=stages, failure=Failure.from_json(data.get("failure")),
                   versions=expect(data, "versions", dict),
                   providers_available=expect(data, "providers_available", list),
                   measured_limits=expect(data, "measured_limits", dict), caveats=run_caveats(runs),
                   placement=Placement.from_json(data.get("placement")), raw=data)
