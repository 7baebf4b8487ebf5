"""Where each target stands in the pipeline, and the one command to run next.

Every stage is content-addressed (each records the hash of its input), so status only compares
recorded hashes: the rendered file's header against the target definition,
the lock's recorded spec hash against the rendered file, the env's recorded
lock sha256 and the certificate's lock sha256 against the lock file's bytes.
Nothing here imports conda_lock or rattler, solves, or runs a Python: a
status of a whole matrix takes a fraction of a second.

Each stage is a `Stage(state, detail)` with state one of:
  ok, missing, stale, failed (a fresh certificate that failed), n/a (the env
  of a target that cannot run on this host), unknown (cannot be told).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from envctl.certify.certificate import Certificate, CertificateError, read_certificate
from envctl.core.errors import EnvctlError
from envctl.core.hashing import digest_hex
from envctl.core.paths import device_cert_path
from envctl.host.runnable import runnability
from envctl.matrix.loader import Target, load_matrix

__all__ = ["Stage", "TargetStatus", "project_status", "target_status", "status_json", "cert_summary"]



@dataclass(frozen=True)
class Stage:
    state: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "n/a")


@dataclass
class TargetStatus:
    target: str
    runs_here: bool
    not_here_reason: str | None
    rendered: Stage
    render_fresh: Stage
    locked: Stage
    lock_fresh: Stage
    env: Stage
    certified: Stage
    cert_fresh: Stage
    certificate: dict[str, Any] | None = None  # path, result, certified, created_at, hostname, failure class, xfail
    next: str | None = None
    why: str = ""
    lock_sha256: str | None = None
    xfail: str | None = None
    device: dict[str, Any] | None = None  # certs/<t>.device.json (a bundle's --certify, imported): run on device

    @property
    def summary(self) -> str:
        """One word for the row: certified, lock-only, failed, expected-fail, unexpected-pass, stale, incomplete."""
        if self.next is not None:
            return "stale" if any(s.state == "stale" for s in self.stages().values()) else "incomplete"
        cert = self.certificate or {}
        if cert.get("certified") == "lock-only":
            return "lock-only"
        if cert.get("result") == "failed":
            return "expected-fail" if self.xfail else "failed"
        return "unexpected-pass" if self.xfail else "certified"

    def stages(self) -> dict[str, Stage]:
        return {name: getattr(self, name) for name in
                ("rendered", "render_fresh", "locked", "lock_fresh", "env", "certified", "cert_fresh")}

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "summary": self.summary, "runs_here": self.runs_here,
            "not_here_reason": self.not_here_reason,
            "stages": {name: asdict(stage) for name, stage in self.stages().items()},
            "lock_sha256": self.lock_sha256, "xfail": self.xfail,
            "certificate": self.certificate, "device_certificate": self.device, "next": self.next, "why": self.why,
        }


def _read_cert(path: Path) -> tuple[Certificate | None, str]:
    try:
        return read_certificate(path), ""
    except CertificateError as exc:
        return None, str(exc)


def cert_summary(cert: Certificate, path: Path) -> dict[str, Any]:
    return {
        "path": str(path), "result": cert.result.value, "certified": cert.certified.value,
        "created_at": cert.created_at or None, "hostname": cert.host.get("hostname"),
        "host_platform": cert.host.get("platform"), "failure_class": cert.failure.klass if cert.failure else None,
        "reason": cert.reason, "lock_sha256": digest_hex(cert.lock.sha256) if cert.lock else None,
        "caveats": [c.line() for c in cert.caveats],  # what a passed verdict could not prove
    }


def target_status(root: Path, target: Target, *, facts: dict | None = None) -> TargetStatus:
    from envctl.core.paths import default_prefix
    from envctl.create.build import env_state
    from envctl.lock.lockfile import lock_path
    from envctl.lock.solve import check_locks
    from envctl.lock.lockfile import read_lock_meta
    from envctl.core.paths import env_file
    from envctl.lock.render import recorded_target_hash

    name = target.name
    runnable = runnability(target, facts)
    here, why_not = runnable.runs_here, runnable.reason
    env_path = env_file(root, target)
    recorded = recorded_target_hash(env_path)
    rendered = Stage("ok", str(env_path)) if env_path.exists() else Stage("missing", f"no {env_path}")
    if not env_path.exists():
        render_fresh = Stage("missing", "not rendered")
    elif recorded == target.definition_hash():
        render_fresh = Stage("ok", "matches the matrix")
    else:
        render_fresh = Stage("stale", "the matrix entry changed since it was rendered")

    lock_file = lock_path(root, target)
    lock_sha = None
    try:
        lock_sha = digest_hex(read_lock_meta(lock_file).sha256)
        locked = Stage("ok", str(lock_file))
    except EnvctlError as exc:
        locked = Stage("missing" if not lock_file.exists() else "stale", exc.message if lock_file.exists() else f"no {lock_file}")
    if lock_sha is None:
        lock_fresh = Stage("missing", "not locked")
    else:
        problems = check_locks(root, [target])
        lock_fresh = Stage("stale", problems[0].reason) if problems else Stage("ok", "matches the rendered spec")

    if not here:
        env = Stage("n/a", f"lock-only here: {why_not}")
    else:
        prefix = default_prefix(root, target)
        state = env_state(prefix)
        if state is None:
            env = Stage("missing", f"no env at {prefix}")
        elif lock_sha is None:
            env = Stage("stale", "the env's lock is gone")
        elif digest_hex(state.get("lock_sha256")) == lock_sha:
            env = Stage("ok", f"{prefix} matches its lock")
        else:
            env = Stage("stale", f"{prefix} was built from another lock")

    from envctl.core.paths import cert_path

    path = cert_path(root, name)
    data, problem = _read_cert(path)
    summary: dict[str, Any] | None = None
    if data is None:
        certified = Stage("missing", problem)
        cert_fresh = Stage("missing", "no certificate")
    else:
        summary = cert_summary(data, path)
        when = f"{summary['created_at'] or '?'} on {summary['hostname'] or '?'}"
        result = summary["result"] if summary["certified"] != "lock-only" else "lock-only"
        certified = Stage("failed" if result == "failed" else "ok", f"{result} {when}")
        cert_lock = summary["lock_sha256"]
        if lock_sha is None:
            cert_fresh = Stage("stale", "there is no current lock to compare it with")
        elif cert_lock is None:
            cert_fresh = Stage("unknown", "the certificate records no lock hash")
        elif cert_lock == lock_sha:
            cert_fresh = Stage("ok", "made from the current lock")
        else:
            cert_fresh = Stage("stale", f"made from lock {cert_lock[:12]}, the lock is now {lock_sha[:12]}")
    status = TargetStatus(name, here, why_not, rendered, render_fresh, locked, lock_fresh, env, certified, cert_fresh,
                          certificate=summary, lock_sha256=lock_sha, xfail=target.xfail,
                          device=_device_cert(root, name, lock_sha))
    status.next, status.why = _next(status)
    return status


def _device_cert(root: Path, name: str, lock_sha: str | None) -> dict[str, Any] | None:
    """The imported device certificate's summary (`envctl certify --import`), with whether it is for this lock."""
    path = device_cert_path(root, name)
    data, _ = _read_cert(path)
    if data is None:
        return None
    summary = cert_summary(data, path)
    summary["fresh"] = bool(lock_sha) and summary["lock_sha256"] == lock_sha
    return summary


def device_label(s: TargetStatus) -> str:
    """'run on device: passed (jetson01)', '(stale)' when the lock changed since; '' without one."""
    if not s.device:
        return ""
    host = s.device.get("hostname") or "?"
    return f"run on device: {s.device.get('result')} ({host}){'' if s.device['fresh'] else ' (stale)'}"


def _next(s: TargetStatus) -> tuple[str | None, str]:
    """The first stage not done decides the one command to run (each command redoes what it needs)."""
    t = s.target
    if not (s.render_fresh.ok and s.lock_fresh.ok):
        first = s.render_fresh if not s.render_fresh.ok else s.lock_fresh
        # `lock` renders first when environment.yml is missing or stale.
        return f"envctl lock {t}", f"{'environment.yml' if first is s.render_fresh else 'lock'}: {first.detail}"
    if not s.env.ok:
        return f"envctl create --target {t}", s.env.detail
    if not s.cert_fresh.ok:
        return f"envctl certify --target {t}", f"certificate: {s.cert_fresh.detail if s.certified.state != 'missing' else 'none yet'}"
    return None, "up to date"


def project_status(matrix_path: Path, targets: list[str] | None = None) -> list[TargetStatus]:
    """Status of the chosen targets (default: all), in matrix order."""
    from envctl.core.paths import project_root

    matrix = load_matrix(matrix_path)
    chosen = matrix.select(targets) if targets else list(matrix.targets.values())
    root = project_root(matrix_path)
    return [target_status(root, t) for t in chosen]


def status_json(matrix_path: Path, statuses: list[TargetStatus]) -> dict[str, Any]:
    return {"matrix": str(matrix_path), "targets": [s.to_json() for s in statuses]}


# ---------------------------------------------------------------- table
