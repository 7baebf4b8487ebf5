"""`envctl certify --import CERT`: file a device certificate under certs/ once it is shown to be for this lock.

A bundle's `--certify` writes the certificate on the device (devcert.py). It
belongs to a target only while the lock it was made from is the target's
current lock: the sha256 it records must equal the lock file's. It is filed
as certs/<target>.device.json, beside the certificate made here (often
lock-only for a Jetson target: solved, not run), and status and the HTML
report show both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from envctl.core.atomic import ensure_inside, write_text_atomic
from envctl.core.errors import EnvctlError


def device_cert_path(root: Path, name: str) -> Path:
    return root / "certs" / f"{name}.device.json"


def import_certificate(matrix_path: Path, cert_file: Path) -> tuple[Path, dict]:
    from envctl.certify.certificate import Certificate, CertificateError
    from envctl.matrix.project import Project

    try:
        data = json.loads(Path(cert_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EnvctlError("no such certificate file", file=cert_file) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EnvctlError(f"not a readable JSON certificate: {exc}", file=cert_file) from None
    if not isinstance(data, dict) or "result" not in data or "target" not in data:
        raise EnvctlError("not an envctl certificate (no `target` and `result`)", file=cert_file)
    if data.get("certified") != "device":
        raise EnvctlError(f"not a device certificate (certified: {data.get('certified')!r}); "
                          "import the file a bundle's `--certify` wrote", file=cert_file)
    name = str(data["target"])
    try:
        Certificate.from_json(data)
    except CertificateError as exc:
        raise EnvctlError(f"not a valid envctl certificate: {exc}", file=cert_file) from None
    project = Project.load(matrix_path)
    root, target = project.root, project.target(name)
    lock = root / "locks" / f"{target.name}.conda-lock.yml"
    try:
        current = hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError:
        raise EnvctlError(f"target '{name}' has no lock here ({lock}) to check the certificate against", file=cert_file,
                          hint=f"Run `envctl lock {name}`.") from None
    recorded = str((data.get("lock") or {}).get("sha256") or "").split(":", 1)[-1]
    if recorded != current:
        raise EnvctlError(
            f"the certificate was made from another lock of '{name}' (sha256 {recorded[:12] or 'none'}); "
            f"the lock is now {current[:12]}. It certifies nothing about the current lock; nothing was filed.",
            file=cert_file, hint=f"Pack the current lock (`envctl pack --target {name}`) and certify that bundle on the device.",
        )
    path = ensure_inside(root, device_cert_path(root, name), "certificate")
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path, data
