"""What crosses the boundary to the smoke runner, as typed records.

The runner runs in another interpreter and writes JSON; the host must never
trust that JSON's shape. `RunnerResult.from_json` checks every field the host
reads, so a runner that writes a missing or wrong-typed field (a mixed-version
runner, a crash mid-write, a hostile model that rewrites the file) becomes a
classified `runner_crash`, never an AttributeError or KeyError in envctl.
The spec's own checks live with the runner (envctl_smoke_env.load_spec), which
is the side that must refuse a bad spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("passed", "failed", "skipped", "warning")


class RunnerResultError(ValueError):
    """The runner's result file is not the shape the host reads (the message says which field)."""


def _expect(data: dict, key: str, kind: type | tuple[type, ...], *, optional: bool = True, where: str = "") -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        what = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RunnerResultError(f"{where}{key!r} is {type(value).__name__}, not {what}")
    return value


CAVEAT_KINDS = ("outside_domain", "branch_not_exercised")


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
        return f"{self.model} [{self.exporter}]: {self.message}"

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Caveat:
        """One caveat; RunnerResultError (a ValueError) naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise RunnerResultError(f"{where}is {type(data).__name__}, not an object")
        for key in ("model", "exporter", "kind", "message"):
            _expect(data, key, str, optional=False, where=where)
        if data["kind"] not in CAVEAT_KINDS:
            raise RunnerResultError(f"{where}'kind' is {data['kind']!r}, not one of {', '.join(CAVEAT_KINDS)}")
        _expect(data, "where", str, where=where)
        return cls(data["model"], data["exporter"], data["kind"], data["message"], data.get("where"))


def run_caveats(runs: list[dict[str, Any]]) -> list[Caveat]:
    """Every run's caveats (the runner lists them per run without model and exporter), typed."""
    out: list[Caveat] = []
    for i, run in enumerate(runs):
        for j, raw in enumerate(run.get("caveats") or []):
            if not isinstance(raw, dict):
                raise RunnerResultError(f"runs[{i}].caveats[{j}] is {type(raw).__name__}, not an object")
            caveat = Caveat.from_json({"model": run.get("model"), "exporter": run.get("exporter")} | raw,
                                      where=f"runs[{i}].caveats[{j}].")
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
    def from_json(cls, data: Any, where: str = "precision") -> "Precision":
        if not isinstance(data, dict):
            raise RunnerResultError(f"'{where}' is {type(data).__name__}, not an object")
        if not isinstance(data.get("precision_limited"), bool):
            raise RunnerResultError(f"'{where}.precision_limited' is {data.get('precision_limited')!r}, not true/false")
        for key in ("onnx_vs_torch32", "torch32_vs_torch64", "onnx_vs_torch64", "factor"):
            value = data.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise RunnerResultError(f"'{where}.{key}' is {type(value).__name__}, not a number")
        if not isinstance(data.get("output", ""), str):
            raise RunnerResultError(f"'{where}.output' is {type(data['output']).__name__}, not text")
        return cls(precision_limited=data["precision_limited"], onnx_vs_torch32=float(data["onnx_vs_torch32"]),
                   torch32_vs_torch64=float(data["torch32_vs_torch64"]),
                   onnx_vs_torch64=float(data["onnx_vs_torch64"]), factor=float(data["factor"]),
                   output=data.get("output") or "")


def check_verdict_fields(run: dict, where: str) -> None:
    """runs[i].precision (see Precision) and runs[i].pad_notes (a list of text), when present."""
    if run.get("precision") is not None:
        Precision.from_json(run["precision"], f"{where}precision")
    notes = run.get("pad_notes")
    if notes is not None and not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise RunnerResultError(f"'{where}pad_notes' is not a list of text")


@dataclass(frozen=True)
class Placement:
    """Where the run went: the device the PyTorch reference ran on and the ONNX Runtime providers asked
    for. The runner settles a spec's device "auto" itself, so the host never imports torch to ask."""

    device: str  # "cpu" | "cuda"
    providers: tuple[str, ...]
    required_provider: str

    @classmethod
    def from_json(cls, data: Any) -> "Placement | None":
        if data is None:
            return None  # a runner that stopped before it imported torch
        if not isinstance(data, dict):
            raise RunnerResultError(f"'placement' is {type(data).__name__}, not an object")
        device = data.get("device")
        if device not in ("cpu", "cuda"):
            raise RunnerResultError(f"'placement.device' is {device!r}, not 'cpu' or 'cuda'")
        providers = data.get("providers")
        if not isinstance(providers, list) or not providers or not all(isinstance(p, str) for p in providers):
            raise RunnerResultError("'placement.providers' is not a non-empty list of provider names")
        required = _expect(data, "required_provider", str, optional=False, where="placement.")
        return cls(device=device, providers=tuple(providers), required_provider=required)

    def as_spec(self) -> dict[str, Any]:
        """The spec's own keys, settled: what a certificate records as the run's spec."""
        return {"device": self.device, "providers": list(self.providers), "required_provider": self.required_provider}


def _named_stages(stages: list, where: str) -> list:
    """Readers index every stage by its name (certify, export, the JUnit and HTML reports)."""
    for j, stage in enumerate(stages):
        if not (isinstance(stage, dict) and isinstance(stage.get("name"), str)):
            raise RunnerResultError(f"{where}[{j}] is not an object with a 'name'")
    return stages


@dataclass
class RunnerResult:
    status: str  # "passed" | "failed"
    runs: list[dict[str, Any]] = field(default_factory=list)  # per model x exporter; model/exporter/status checked
    stages: list[dict[str, Any]] = field(default_factory=list)  # the runner's own stages (versions, save)
    failure: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    providers_available: list[str] | None = None
    measured_limits: dict[str, Any] | None = None
    caveats: list[Caveat] = field(default_factory=list)  # what the verdicts could not prove
    placement: Placement | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the checked JSON, for fields only some readers use

    def get(self, key: str, default: Any = None) -> Any:
        """Read-only access for readers of optional, runner-specific fields (out_files, in_progress, ...)."""
        return self.raw.get(key, default)

    @classmethod
    def from_json(cls, data: Any) -> "RunnerResult":
        if not isinstance(data, dict):
            raise RunnerResultError(f"the result is {type(data).__name__}, not an object")
        status = data.get("status")
        if status not in ("passed", "failed"):
            raise RunnerResultError(f"'status' is {status!r}, not 'passed' or 'failed'")
        runs = _expect(data, "runs", list) or []
        for i, run in enumerate(runs):
            where = f"runs[{i}]."
            if not isinstance(run, dict):
                raise RunnerResultError(f"runs[{i}] is {type(run).__name__}, not an object")
            _expect(run, "model", str, optional=False, where=where)
            _expect(run, "exporter", str, optional=False, where=where)
            if run.get("status") not in RUN_STATUSES:
                raise RunnerResultError(f"{where}'status' is {run.get('status')!r}")
            _named_stages(_expect(run, "stages", list, where=where) or [], f"runs[{i}].stages")
            _expect(run, "failure", dict, where=where)
            _expect(run, "caveats", list, where=where)
            check_verdict_fields(run, where)
        stages = _named_stages(_expect(data, "stages", list) or [], "stages")
        failure = _expect(data, "failure", dict)
        if failure is not None and not isinstance(failure.get("class"), str):
            raise RunnerResultError("'failure' has no 'class'")
        return cls(status=status, runs=runs, stages=stages, failure=failure,
                   versions=_expect(data, "versions", dict),
                   providers_available=_expect(data, "providers_available", list),
                   measured_limits=_expect(data, "measured_limits", dict), caveats=run_caveats(runs),
                   placement=Placement.from_json(data.get("placement")), raw=data)
