"""The certificate: what one certification found, as a typed record.

`certs/<target>.json` is this record's `to_json()`; every reader (status,
report --html, the whole-matrix run, create's "already certified") goes
through `Certificate.from_json` / `read_certificate`, so a hand-edited or
truncated file is one clear problem, never a KeyError deep in a report.

The per-run records (`runs`) are the smoke runner's own JSON (see
envctl/smoke/runner.py), kept as they came: the runner runs in another
interpreter and owns their shape.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from envctl.certify.runner_io import Caveat, Precision, RunnerResultError, check_verdict_fields
from envctl.core.hashing import digest_hex
from envctl.core.limits import short

# 2: `caveats` (what a verdict could not prove), runs[].precision (float64-judged comparison)
# and runs[].pad_notes. Version 1 files read as having none.
SCHEMA_VERSION = 2
HOST = "host"  # the target name of the interpreter envctl runs in, certified in place (`certify --target host`)


class Result(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # lock-only: nothing ran here


class Certification(str, enum.Enum):
    """How the verdict was reached."""

    RUN = "run"  # the smoke runner ran inside the env, on this host
    LOCK_ONLY = "lock-only"  # another platform, or a GPU this host lacks: only the lock was checked
    DEVICE = "device"  # run on the device by a bundle's --certify (envctl pack), filed by `certify --import`


class CertificateError(ValueError):
    """A certificate file that is not a readable envctl certificate (the message says why)."""


@dataclass
class LockRef:
    """The lock a certificate was made from."""

    path: str | None = None
    sha256: str | None = None
    fresh: bool | None = None  # lock-only certificates: was the lock fresh?
    problem: str | None = None

    @property
    def hex(self) -> str | None:
        """The digest's hex: certificates record `sha256:<hex>`, those made before bare hex (core/hashing)."""
        return digest_hex(self.sha256)


@dataclass
class Failure:
    """The first failure: its class (see FAILURE_CLASSES in the runner), stage, message and remedy."""

    klass: str
    stage: str = ""
    message: str = ""
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # anything else the runner recorded

    def to_json(self) -> dict[str, Any]:
        return {"class": self.klass, "stage": self.stage, "message": self.message, "remedy": self.remedy} | self.details

    @classmethod
    def from_json(cls, data: Any) -> "Failure | None":
        if data is None:
            return None
        if not isinstance(data, dict):
            raise CertificateError(f"'failure' is {type(data).__name__}, not an object")
        extra = {k: v for k, v in data.items() if k not in ("class", "stage", "message", "remedy")}
        return cls(str(data.get("class") or "unknown"), str(data.get("stage") or ""), str(data.get("message") or ""),
                   str(data.get("remedy") or ""), extra)


@dataclass
class Certificate:
    target: str
    result: Result
    certified: Certification
    created_at: str = ""
    envctl_version: str = ""
    certificate_version: int = SCHEMA_VERSION
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
    extra: dict[str, Any] = field(default_factory=dict)  # fields of newer envctl versions, kept as they are
    path: Path | None = field(default=None, compare=False)  # where it was read from or written to

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
        return out | self.extra

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, data: Any) -> "Certificate":
        if not isinstance(data, dict):
            raise CertificateError("not a JSON object")
        problem = shape_problem(data)  # the nested records readers walk: runs[].stages[], lock.sha256, ...
        if problem:
            raise CertificateError(problem)
        try:
            result = Result(data.get("result"))
        except ValueError:
            raise CertificateError(f"'result' is {data.get('result')!r}, not one of passed, failed, skipped") from None
        try:
            certified = Certification(data.get("certified") or ("lock-only" if result is Result.SKIPPED else "run"))
        except ValueError:
            raise CertificateError(f"'certified' is {data.get('certified')!r}, not 'run', 'lock-only' or 'device'") from None
        lock = data.get("lock")
        if lock is not None and not isinstance(lock, dict):
            raise CertificateError(f"'lock' is {type(lock).__name__}, not an object")
        runs = data.get("runs") or []
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise CertificateError("'runs' is not a list of objects")
        typed: dict[str, type | tuple[type, ...]] = {
            "host": dict, "environment": dict, "versions": dict, "versions_expected": dict, "spec": dict,
            "runner": dict, "providers_available": list, "seconds": (int, float), "target_hash": str, "xfail": str,
            "reason": str, "created_at": str, "envctl_version": str, "certificate_version": int}
        for key, kind in typed.items():
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise CertificateError(f"'{key}' has the wrong type ({type(data[key]).__name__})")
        caveats = data.get("caveats") or []
        if not isinstance(caveats, list):
            raise CertificateError(f"'caveats' is {type(caveats).__name__}, not a list")
        try:
            typed_caveats = [Caveat.from_json(c, where=f"caveats[{i}].") for i, c in enumerate(caveats)]
        except RunnerResultError as exc:
            raise CertificateError(str(exc)) from None
        known = {f.name for f in fields(cls)} - {"path", "extra"}
        return cls(
            target=str(data.get("target") or ""), result=result, certified=certified,
            created_at=data.get("created_at") or "", envctl_version=data.get("envctl_version") or "",
            certificate_version=data.get("certificate_version") or SCHEMA_VERSION, host=data.get("host") or {},
            target_hash=data.get("target_hash"), xfail=data.get("xfail"), reason=data.get("reason"),
            lock=LockRef(**{k: lock.get(k) for k in ("path", "sha256", "fresh", "problem")}) if lock else None,
            environment=data.get("environment"), ran_on_target_hardware=bool(data.get("ran_on_target_hardware")),
            failure=Failure.from_json(data.get("failure")), runs=runs, versions=data.get("versions"),
            versions_expected=data.get("versions_expected"), providers_available=data.get("providers_available"),
            spec=data.get("spec"), runner=data.get("runner"), seconds=data.get("seconds"), caveats=typed_caveats,
            extra={k: v for k, v in data.items() if k not in known})


# field -> allowed types (None allowed everywhere it is listed with type(None)).
_TOP = {"result": (str,), "certified": (str, type(None)), "created_at": (str, type(None)), "reason": (str, type(None)),
        "host": (dict, type(None)), "lock": (dict, type(None)), "spec": (dict, type(None)), "failure": (dict, type(None)),
        "runs": (list, type(None)), "versions": (dict, type(None)), "versions_expected": (dict, type(None)),
        "runner": (dict, type(None)), "seconds": (int, float, type(None)), "xfail": (str, type(None)),
        "target": (str, type(None))}
_TEXT = (str, type(None))
_NUM = (int, float, type(None))
_LOCK = {"path": _TEXT, "sha256": _TEXT}
_FAILURE = {"class": _TEXT, "stage": _TEXT, "message": _TEXT, "remedy": _TEXT}
_RUN = {"model": _TEXT, "exporter": _TEXT, "status": _TEXT, "failure": (dict, type(None)), "stages": (list, type(None)),
        "worst": (dict, type(None))}
_STAGE = {"name": _TEXT, "status": _TEXT, "message": _TEXT, "seconds": _NUM}


def _check(where: str, data: Any, schema: dict[str, tuple]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"'{where}' is {type(data).__name__}, not a mapping")
    for key, types in schema.items():
        if key in data and not isinstance(data[key], types):
            raise ValueError(f"'{where + '.' if where else ''}{key}' is {short(data[key], 60)}, "
                             f"not {' or '.join(t.__name__ for t in types if t is not type(None))}")


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
            _check(f"runs[{i}]", run, _RUN)
            if run.get("failure") is not None:
                _check(f"runs[{i}].failure", run["failure"], _FAILURE)
            try:
                check_verdict_fields(run, f"runs[{i}].")
            except RunnerResultError as exc:
                raise ValueError(str(exc)) from None
            for j, stage in enumerate(run.get("stages") or []):
                _check(f"runs[{i}].stages[{j}]", stage, _STAGE)
        spec = data.get("spec") or {}
        for key in ("exporters", "providers", "models"):
            if not isinstance(spec.get(key) or [], list) or not all(isinstance(v, str) for v in spec.get(key) or []):
                raise ValueError(f"'spec.{key}' is not a list of names")
        runner = data.get("runner") or {}
        stages = runner.get("stages") or []
        if not isinstance(stages, list):
            raise ValueError("'runner.stages' is not a list")
        for j, stage in enumerate(stages):
            _check(f"runner.stages[{j}]", stage, _STAGE)
        nvidia = (data.get("host") or {}).get("nvidia") or {}
        if not isinstance(nvidia, dict) or not isinstance(nvidia.get("gpus") or [], list) \
                or not all(isinstance(g, dict) and isinstance(g.get("name", ""), str) for g in nvidia.get("gpus") or []):
            raise ValueError("'host.nvidia' is not a mapping with a list of GPUs")
    except ValueError as exc:
        return str(exc)
    return None


def read_certificate(path: Path) -> Certificate:
    """Load a certificate; CertificateError (with the path) when it is missing, unreadable or malformed."""
    from envctl.core.errors import EnvctlError, FileMissing
    from envctl.core.limits import MAX_JSON_BYTES, read_json

    try:
        data = read_json(Path(path), MAX_JSON_BYTES, "certificate")  # capped, regular file, bounded depth
    except FileMissing:
        raise CertificateError(f"no certificate at {path}") from None
    except EnvctlError as exc:
        raise CertificateError(f"unreadable certificate {path}: {exc.message}") from None
    try:
        cert = Certificate.from_json(data)
    except CertificateError as exc:
        raise CertificateError(f"{path} is not an envctl certificate: {exc}") from None
    cert.path = Path(path)
    return cert
