"""`envctl certify --import CERT`: file a device certificate under certs/ once it is shown to be for this lock.

A bundle's `--certify` writes the certificate on the device (devcert.py). It
belongs to a target only while the lock it was made from is the target's
current lock: the sha256 it records must equal the lock file's. It is filed
as certs/<target>.device.json, beside the certificate made here (often
lock-only for a Jetson target: solved, not run), and status and the HTML
report show both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from envctl.core.atomic import SAFE_NAME, ensure_inside, write_text_atomic
from envctl.core.errors import EnvctlError
from envctl.core.jsonread import load_json
from envctl.core.hashing import digest_hex
from envctl.core.limits import MAX_JSON_BYTES, read_text, short
from envctl.core.paths import device_cert_path
from envctl.lock.lockfile import load_lock, lock_path
from envctl.core.text import printable



def import_certificate(matrix_path: Path, cert_file: Path) -> tuple[Path, dict]:
    """File `cert_file` under certs/ once it is shown to be a device certificate of the target's current lock.

    The file is read like every file envctl parses (regular file, 16 MiB cap, bounded
    nesting); it must record the sha256 of the lock it was made from, and that must be
    the current lock's. What is printed from it goes through `printable` (core/text).
    """
    from envctl.certify.certificate import Certificate, CertificateError
    from envctl.matrix.project import Project

    data = load_json(read_text(Path(cert_file), MAX_JSON_BYTES, "certificate"), "certificate", Path(cert_file))
    if not isinstance(data, dict) or "result" not in data or "target" not in data:
        raise EnvctlError("not an envctl certificate (no `target` and `result`)", file=cert_file)
    if data.get("certified") != "device":
        raise EnvctlError(f"not a device certificate (certified: {short(data.get('certified'))}); "
                          "import the file a bundle's `--certify` wrote", file=cert_file)
    if not isinstance(data["target"], str) or not SAFE_NAME.fullmatch(data["target"]):
        raise EnvctlError(f"the certificate names no valid target ({short(data['target'])})", file=cert_file)
    name = data["target"]
    recorded = _lock_hash(data, cert_file)
    try:
        Certificate.from_json(data)
    except CertificateError as exc:
        raise EnvctlError(f"not a valid envctl certificate: {printable(exc)}", file=cert_file) from None
    project = Project.load(matrix_path)
    root, target = project.root, project.target(name)
    lock = lock_path(root, target)
    if not os.path.lexists(lock):
        raise EnvctlError(f"target '{name}' has no lock here ({lock}) to check the certificate against", file=cert_file,
                          hint=f"Run `envctl lock {name}`.")
    current = load_lock(lock).hex
    if recorded != current:
        raise EnvctlError(
            f"the certificate was made from another lock of '{name}' (sha256 {recorded[:12]}); "
            f"the lock is now {current[:12]}. It certifies nothing about the current lock; nothing was filed.",
            file=cert_file, hint=f"Pack the current lock (`envctl pack --target {name}`) and certify that bundle on the device.",
        )
    path = ensure_inside(root, device_cert_path(root, name), "certificate")
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path, data


def _lock_hash(data: dict, cert_file: Path) -> str:
    """The sha256 the certificate records for its lock (`lock.sha256`, optionally `sha256:`-prefixed), or EnvctlError."""
    lock = data.get("lock")
    value = lock.get("sha256") if isinstance(lock, dict) else None
    recorded = digest_hex(value)
    if recorded is None:
        raise EnvctlError(f"the certificate records no lock hash (lock.sha256 is {short(value)}); a device certificate "
                          "is filed only when it names the lock it was made from. Nothing was filed.", file=cert_file)
    return recorded


def summary(path: Path, data: dict) -> str:
    """The line `certify --import` prints: every field from the file made safe for a terminal."""
    said = data.get("host")
    host = said if isinstance(said, dict) else {}
    return (f"filed {path}: {printable(data.get('target'))} {printable(data.get('result'))} on device "
            f"{printable(host.get('hostname', '?'))} ({printable(data.get('created_at', '?'))})")
