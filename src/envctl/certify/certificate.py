"""The certificate on the host: reading `certs/<target>.json` (capped, a clear error naming the file).

The record itself, its checks and the one function that assembles it live with the runner's
protocol (envctl/smoke/envctl_smoke_certificate.py), so a bundle's devcert.py on the device
writes the same body as `envctl certify` here; this module re-exports them for envctl's readers.
"""

from __future__ import annotations

from pathlib import Path

from envctl.smoke.envctl_smoke_certificate import (
    CERTIFICATE_VERSION,
    Certificate,
    CertificateError,
    Certification,
    LockRef,
    Result,
    assemble,
    shape_problem,
)
from envctl.smoke.envctl_smoke_protocol import Failure

SCHEMA_VERSION = CERTIFICATE_VERSION  # the name envctl's readers and tests use
HOST = "host"  # the target name of the interpreter envctl runs in, certified in place (`certify --target host`)

__all__ = ["HOST", "SCHEMA_VERSION", "Certificate", "CertificateError", "Certification", "Failure", "LockRef",
           "Result", "assemble", "read_certificate", "shape_problem"]


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
