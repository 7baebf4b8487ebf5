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

SCHEMA_VERSION = 1


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
        """Bare hex digest (locks record "sha256:<hex>", certificates bare hex)."""
        return str(self.sha256).split(":", 1)[-1] if self.sha256 else None


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
    extra: dict[str, Any] = field(default_factory=dict)  # fields of newer envctl versions, kept as they are
    path: Path | None = field(default=None, compare=False)  # where it was read from or written to

    @property
    def passed(self) -> bool:
        return self.result is Result.PASSED

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
            spec=data.get("spec"), runner=data.get("runner"), seconds=data.get("seconds"),
            extra={k: v for k, v in data.items() if k not in known})


def read_certificate(path: Path) -> Certificate:
    """Load a certificate; CertificateError (with the path) when it is missing, unreadable or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CertificateError(f"no certificate at {path}") from None
    except (OSError, ValueError) as exc:
        raise CertificateError(f"unreadable certificate {path}: {exc}") from None
    try:
        cert = Certificate.from_json(data)
    except CertificateError as exc:
        raise CertificateError(f"{path} is not an envctl certificate: {exc}") from None
    cert.path = Path(path)
    return cert
