"""The certificate: what one certification found, as a typed record, and the one function that
assembles it from a runner's result, wherever the runner ran.

`certs/<target>.json` is `Certificate.to_json()`; every reader (status, report --html, the
whole-matrix run, create's "already certified", `certify --import`) goes through
`Certificate.from_json`, so a hand-edited or truncated file is one clear problem naming the
field, never a KeyError deep in a report. `assemble` is called by `envctl certify` on the host
and by a bundle's devcert.py on the device, so both write the same body.

The per-run records (`runs`) are the runner's own JSON, kept as they came and checked by the
protocol (envctl_smoke_protocol). Standard library only, Python 3.8 syntax, like the protocol.
"""
from __future__ import annotations

import enum
import json
import reprlib
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

# Imported two ways: as envctl.smoke.envctl_smoke_certificate by envctl, and by its bare name beside the
# protocol on a device (mypy checks the first: always_true in pyproject.toml).
_ON_HOST = bool(__package__)
if _ON_HOST:
    from .envctl_smoke_protocol import Caveat, Failure, Precision, ProtocolError, RunnerResult, Spec, \
        check_verdict_fields, run_caveats
else:  # beside the protocol file: a bundle's smoke/ folder, which devcert.py puts on sys.path
    from envctl_smoke_protocol import Caveat, Failure, Precision, ProtocolError, RunnerResult, Spec, \
        check_verdict_fields, run_caveats

# 2: `caveats` (what a verdict could not prove), runs[].precision (float64-judged comparison)
# and runs[].pad_notes. Version 1 files read as having none; newer versions are refused.
CERTIFICATE_VERSION = 2
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother = 60, 60


class CertificateError(ProtocolError):
    """A certificate file that is not a readable envctl certificate (the message says why)."""


class Result(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # lock-only: nothing ran here


class Certification(str, enum.Enum):
    """How the verdict was reached."""

    RUN = "run"  # the smoke runner ran inside the env, on this host
    LOCK_ONLY = "lock-only"  # another platform, or a GPU this host lacks: only the lock was checked
    DEVICE = "device"  # run on the device by a bundle's --certify (envctl pack), filed by `certify --import`


@dataclass
class LockRef:
    """The lock a certificate was made from."""

    path: str | None = None
    sha256: str | None = None
    fresh: bool | None = None  # lock-only certificates: was the lock fresh?
    problem: str | None = None  # sha256: `sha256:<hex>`, or bare hex (a bundle's, older files): core/hashing reads both


@dataclass
class Certificate:
    target: str
    result: Result
    certified: Certification
    created_at: str = ""
    envctl_version: str = ""
    certificate_version: int = CERTIFICATE_VERSION
    host: dict[str, Any] = field(default_factory=dict)
    target_hash: str | None = None
    xfail: str | None = None
    reason: str | None = None  # why lock-only
    lock: LockRef | None = None
    environment: dict[str, str] | None = None  # prefix, python
    ran_on_target_hardware: bool = False
    failure: Failure | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, Any] | None = None
    versions_expected: dict[str, str] | None = None
    providers_available: list[str] | None = None
    spec: dict[str, Any] | None = None
    runner: dict[str, Any] | None = None
    seconds: float | None = None
    caveats: list[Caveat] = field(default_factory=list)  # sizes the model refuses, branches never flipped
    extra: dict[str, Any] = field(default_factory=dict)  # measured_limits, findings, bundle: kept as they are
    path: Any = field(default=None, compare=False)  # where it was read from or written to (a Path on the host)

    @property
    def passed(self) -> bool:
        return self.result is Result.PASSED

    @property
    def precision(self) -> list[tuple[str, str, Precision]]:
        """(model, exporter, Precision) of every run whose comparison was judged against PyTorch
        in float64 (from_json has checked their shape)."""
        return [(str(r.get("model")), str(r.get("exporter")), Precision.from_json(r["precision"]))
                for r in self.runs if r.get("precision") is not None]

    @property
    def lock_only(self) -> bool:
        return self.certified is Certification.LOCK_ONLY

    @property
    def prefix(self) -> str | None:
        return (self.environment or {}).get("prefix")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "path"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Failure):
                value = value.to_json()
            elif f.name == "caveats":
                value = [c.to_json() for c in value]
            elif isinstance(value, LockRef):
                value = {k: v for k, v in asdict(value).items() if v is not None or k in ("path", "sha256")}
            out[f.name] = value
        out.update(self.extra)
        return out

    def dumps(self) -> str:
        """The file's text; what it writes reads back (from_json), so a bad field never reaches disk."""
        data = json.loads(json.dumps(self.to_json(), default=str))
        return json.dumps(Certificate.from_json(data).to_json(), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, data: Any) -> Certificate:
        if not isinstance(data, dict):
            raise CertificateError("not a JSON object")
        problem = shape_problem(data)  # the nested records readers walk: runs[].stages[], lock.sha256, ...
        if problem:
            raise CertificateError(problem)
        try:
            result = Result(data.get("result"))
        except ValueError:
            raise CertificateError("'result' is %r, not one of passed, failed, skipped" % (data.get("result"),)) from None
        try:
            certified = Certification(data.get("certified") or ("lock-only" if result is Result.SKIPPED else "run"))
        except ValueError:
            raise CertificateError("'certified' is %r, not 'run', 'lock-only' or 'device'"
                                   % (data.get("certified"),)) from None
        lock = data.get("lock")
        runs = data.get("runs") or []
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise CertificateError("'runs' is not a list of objects")
        typed: dict[str, Any] = {
            "host": dict, "environment": dict, "versions": dict, "versions_expected": dict, "spec": dict,
            "runner": dict, "providers_available": list, "seconds": (int, float), "target_hash": str, "xfail": str,
            "reason": str, "created_at": str, "envctl_version": str, "certificate_version": int}
        for key, kind in typed.items():
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise CertificateError("'%s' has the wrong type (%s)" % (key, type(data[key]).__name__))
        version = data.get("certificate_version") or CERTIFICATE_VERSION
        if version > CERTIFICATE_VERSION:
            raise CertificateError("'certificate_version' is %d; this envctl reads certificates up to version %d "
                                   "(upgrade envctl to read it)" % (version, CERTIFICATE_VERSION))
        caveats = data.get("caveats") or []
        if not isinstance(caveats, list):
            raise CertificateError("'caveats' is %s, not a list" % type(caveats).__name__)
        try:
            typed_caveats = [Caveat.from_json(c, where="caveats[%d]." % i) for i, c in enumerate(caveats)]
            failure = Failure.from_json(data.get("failure"))
        except ProtocolError as exc:
            raise CertificateError(str(exc)) from None
        known = {f.name for f in fields(cls)} - {"path", "extra"}
        return cls(
            target=str(data.get("target") or ""), result=result, certified=certified,
            created_at=data.get("created_at") or "", envctl_version=data.get("envctl_version") or "",
            certificate_version=version, host=data.get("host") or {},
            target_hash=data.get("target_hash"), xfail=data.get("xfail"), reason=data.get("reason"),
            lock=LockRef(**{k: lock.get(k) for k in ("path", "sha256", "fresh", "problem")}) if lock else None,
            environment=data.get("environment"), ran_on_target_hardware=bool(data.get("ran_on_target_hardware")),
            failure=failure, runs=runs, versions=data.get("versions"),
            versions_expected=data.get("versions_expected"), providers_available=data.get("providers_available"),
            spec=data.get("spec"), runner=data.get("runner"), seconds=data.get("seconds"), caveats=typed_caveats,
            extra={k: v for k, v in data.items() if k not in known})


# field -> allowed types (None allowed everywhere it is listed with type(None)).
_NONE = type(None)
_TEXT = (str, _NONE)
_TOP = {"result": (str,), "certified": _TEXT, "created_at": _TEXT, "reason": _TEXT, "host": (dict, _NONE),
        "lock": (dict, _NONE), "spec": (dict, _NONE), "failure": (dict, _NONE), "runs": (list, _NONE),
        "versions": (dict, _NONE), "versions_expected": (dict, _NONE), "runner": (dict, _NONE),
        "seconds": (int, float, _NONE), "xfail": _TEXT, "target": _TEXT, "certificate_version": (int, _NONE)}
_LOCK = {"path": _TEXT, "sha256": _TEXT}
_FAILURE = {"class": _TEXT, "stage": _TEXT, "message": _TEXT, "remedy": _TEXT}
_RUN = {"model": _TEXT, "exporter": _TEXT, "status": _TEXT, "failure": (dict, _NONE), "stages": (list, _NONE),
        "worst": (dict, _NONE)}
_STAGE = {"name": _TEXT, "status": _TEXT, "message": _TEXT, "seconds": (int, float, _NONE)}


def _check(where: str, data: Any, schema: dict[str, tuple]) -> None:
    if not isinstance(data, dict):
        raise ValueError("'%s' is %s, not a mapping" % (where, type(data).__name__))
    for key, types in schema.items():
        if key in data and (not isinstance(data[key], types) or (isinstance(data[key], bool) and bool not in types)):
            raise ValueError("'%s%s' is %s, not %s" % (where + "." if where else "", key, _SHORT.repr(data[key]),
                                                      " or ".join(t.__name__ for t in types if t is not _NONE)))


def shape_problem(data: Any) -> str | None:
    """Why `data` is not in the shape status and report --html walk (deeply), or None."""
    try:
        _check("", data, _TOP)
        if "result" not in data:
            raise ValueError("no 'result'")
        if data.get("lock") is not None:
            _check("lock", data["lock"], _LOCK)
        if data.get("failure") is not None:
            _check("failure", data["failure"], _FAILURE)
        for i, run in enumerate(data.get("runs") or []):
            _check("runs[%d]" % i, run, _RUN)
            if run.get("failure") is not None:
                _check("runs[%d].failure" % i, run["failure"], _FAILURE)
            try:
                check_verdict_fields(run, "runs[%d]." % i)
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
            for j, stage in enumerate(run.get("stages") or []):
                _check("runs[%d].stages[%d]" % (i, j), stage, _STAGE)
        spec = data.get("spec") or {}
        for key in ("exporters", "providers", "models"):
            if not isinstance(spec.get(key) or [], list) or not all(isinstance(v, str) for v in spec.get(key) or []):
                raise ValueError("'spec.%s' is not a list of names" % key)
        stages = (data.get("runner") or {}).get("stages") or []
        if not isinstance(stages, list):
            raise ValueError("'runner.stages' is not a list")
        for j, stage in enumerate(stages):
            _check("runner.stages[%d]" % j, stage, _STAGE)
        nvidia = (data.get("host") or {}).get("nvidia") or {}
        if not isinstance(nvidia, dict) or not isinstance(nvidia.get("gpus") or [], list) \
                or not all(isinstance(g, dict) and isinstance(g.get("name", ""), str) for g in nvidia.get("gpus") or []):
            raise ValueError("'host.nvidia' is not a mapping with a list of GPUs")
    except ValueError as exc:
        return str(exc)
    return None


def worst(run: dict) -> dict | None:
    """The largest max_abs / max_rel anywhere in a run's recorded numbers."""
    found: dict[str, Any] = {"max_abs": None, "max_rel": None}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("max_abs", "max_rel"):
                value = node.get(key)
                if isinstance(value, (int, float)) and (found[key] is None or value > found[key]):
                    found[key] = value
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(run.get("stages", []))
    return found if found["max_abs"] is not None else None


def created_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def assemble(*, target: str, envctl_version: str, certified: Certification, host: dict[str, Any],
             lock: LockRef | None, environment: dict[str, str], spec: Spec, result: RunnerResult | None,
             process: dict[str, Any], seconds: float, target_hash: str | None = None, xfail: str | None = None,
             extra: dict[str, Any] | None = None) -> Certificate:
    """The certificate of one smoke run: `result` (None when the runner left none) and `process`
    (how the runner ended: exit_code, seconds, output_tail, and a `failure` when it died, hung or
    wrote nothing readable). `extra`: what only this side knows (the host's rule findings, a bundle's facts)."""
    runs = result.runs if result is not None else []
    for run in runs:
        run["worst"] = worst(run)
    if result is not None:
        failure = result.failure
    else:
        failure = process.get("failure") if isinstance(process.get("failure"), Failure) \
            else Failure.from_json(process.get("failure"), "process.failure")
    body = dict(extra or {})
    body["measured_limits"] = result.measured_limits if result is not None else None
    runner = {k: v for k, v in process.items() if k != "failure"}
    runner["stages"] = result.stages if result is not None else []
    return Certificate(
        target=target, result=Result.PASSED if result is not None and result.status == "passed" else Result.FAILED,
        certified=certified, created_at=created_now(), envctl_version=envctl_version, host=host,
        target_hash=target_hash, xfail=xfail, lock=lock, environment=environment, ran_on_target_hardware=True,
        failure=failure, runs=runs, versions=result.versions if result is not None else None,
        versions_expected=spec.expected_versions,
        providers_available=result.providers_available if result is not None else None,
        spec=spec.recorded(result.placement if result is not None else None), runner=runner,
        seconds=round(seconds, 3), caveats=run_caveats(runs), extra=body)
