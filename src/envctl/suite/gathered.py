"""`envctl report --drift DIR`: the cross-target check over certificates made elsewhere.

In CI each target is certified in its own job, on its own runner; the fan-in
job gathers their certificates (one folder per job, or copies named after
the job) and compares them here exactly as `envctl certify --all` compares
the targets it ran itself: the same outcomes, the same drift() over the
outputs' fingerprints, the same Markdown summary (appended to
$GITHUB_STEP_SUMMARY when set). A target certified on several platforms
appears once per platform ("name@platform"), so its platforms are compared
with each other too.
"""

from __future__ import annotations

import time
from pathlib import Path

from envctl.certify.certificate import Certificate, CertificateError, read_certificate
from envctl.core.errors import EnvctlError
from envctl.suite.certify_all import SuiteResult, TargetResult, drift, outcome_of, write_reports

__all__ = ["gather", "drift_report"]


def _platform(cert: Certificate) -> str:
    return str((cert.host or {}).get("platform") or "")


def _files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise EnvctlError(f"no certificates at {folder}: it is neither a folder nor a file.")
    return sorted(p for p in folder.rglob("*.json") if p.is_file())


def gather(folders: list[Path]) -> list[TargetResult]:
    """Every certificate under `folders`, one result per (target, platform); the newest wins a tie."""
    newest: dict[tuple[str, str], Certificate] = {}
    for folder in folders:
        for path in _files(folder):
            try:
                cert = read_certificate(path)
            except CertificateError as exc:
                raise EnvctlError(str(exc), hint="the folder should hold only envctl certificates (certs/*.json)") from None
            key = (cert.target, _platform(cert))
            if key not in newest or cert.created_at > newest[key].created_at:
                newest[key] = cert
    if not newest:
        raise EnvctlError(f"no certificates under {', '.join(str(f) for f in folders)}.",
                          hint="a certify job writes certs/<target>.json; did the jobs upload them?")
    several = {t for t, _ in newest if sum(1 for u, _ in newest if u == t) > 1}
    results = []
    for (target, platform), cert in newest.items():
        spec = cert.spec or {}
        results.append(TargetResult(
            target=f"{target}@{platform}" if target in several else target,
            outcome=outcome_of(cert.result.value, cert.xfail), seconds=float(cert.seconds or 0.0),
            xfail=cert.xfail, reason=cert.reason, failure=cert.failure.to_json() if cert.failure else None,
            certificate=cert, certificate_path=cert.path, models=tuple(spec.get("models") or ()),
            exporters=tuple(spec.get("exporters") or ()), platform=platform))
    return results


def drift_report(folders: list[Path], *, matrix: Path, markdown: Path | None = None,
                 fail_on_drift: bool = False) -> SuiteResult:
    started = time.monotonic()
    results = gather(folders)
    suite = SuiteResult(Path(matrix), results, drift(results), time.monotonic() - started, fail_on_drift=fail_on_drift)
    write_reports(suite, None, markdown)
    return suite
