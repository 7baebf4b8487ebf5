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
        stages = _named_stages(_expect(data, "stages", list) or [], "stages")
        failure = _expect(data, "failure", dict)
        if failure is not None and not isinstance(failure.get("class"), str):
            raise RunnerResultError("'failure' has no 'class'")
        return cls(status=status, runs=runs, stages=stages, failure=failure,
                   versions=_expect(data, "versions", dict),
                   providers_available=_expect(data, "providers_available", list),
                   measured_limits=_expect(data, "measured_limits", dict), raw=data)
