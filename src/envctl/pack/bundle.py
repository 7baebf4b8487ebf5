"""`envctl pack`: one self-extracting file holding a target's env for its platform, and its packages.

Layout (like conda's constructor installers: a shell header, then the payload):

    header.sh (fixed size, sizes and hashes of what follows)
    env payload:  tar.gz of the materialised prefix, with share/envctl-bundle/
                  (the lock, environment.yml, the certificate when it is for
                  this lock, the smoke runner and its spec, installer.py,
                  devcert.py, info.json and manifest.json: every file's sha256)
    pkgs payload: tar of every locked conda package and wheel (pkgs/conda, pkgs/pip),
                  uncompressed (they are compressed already); install skips it
                  apart from checking its sha256.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from envctl import __version__
from envctl.core.errors import EnvctlError, WriteFailed
from envctl.core.jsonread import load_json
from envctl.core.limits import MAX_JSON_BYTES, MAX_MATRIX_BYTES, read_regular
from envctl.core.prefixrule import SH_BRACKET
from envctl.core.text import printable
from envctl.pack import DEVCERT_PATH, HEADER_PATH, INSTALLER_PATH, PREFIXRULE_PATH, PROCESS_PATH
from envctl.pack.materialise import MACHINES, PLACEHOLDER, Materialised, materialise
from envctl.core.hashing import sha256_file
from envctl.lock.lockfile import load_lock

META = Path("share") / "envctl-bundle"
NUMBER_WIDTH = 20
# The env payload's compression -> tar's flag for it. `none` installs faster (no gunzip) for a bigger file.
COMPRESS = {"gzip": "z", "none": ""}  # header fields are padded so the header's size does not depend on them


@dataclass(frozen=True)
class PackResult:
    path: Path
    target: str
    platform: str
    format: str
    size_bytes: int
    env_bytes: int  # the materialised env, unpacked
    files: int
    packages: dict
    lock_sha256: str
    certificate: str | None  # what certificate went in
    seconds: float

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def resolve_target(matrix_path: Path, name: str):
    from envctl.matrix.project import Project

    project = Project.load(matrix_path)
    return project.root, project.target(name)


def pick_platform(target, lock: Path, platform: str | None) -> str:
    from envctl.host.platform import host_platform
    from envctl.lock.lockfile import read_lock_meta

    platforms = read_lock_meta(lock).platforms
    if platform:
        return platform  # materialise refuses it, naming the lock's platforms, if the lock lacks it
    if len(platforms) == 1:
        return platforms[0]
    if host_platform() in platforms:
        return host_platform()
    raise EnvctlError(f"the lock covers {', '.join(platforms)}; choose one with --platform", file=lock)


def lock_file(root: Path, target) -> Path:
    from envctl.lock.lockfile import lock_path
    from envctl.lock.solve import check_locks

    path = lock_path(root, target)
    if not path.is_file():
        raise EnvctlError(f"no lock for target '{target.name}': {path} does not exist",
                          hint=f"Run `envctl lock {target.name}` first; a bundle is made from the lock.")
    stale = check_locks(root, [target])
    if stale:
        raise EnvctlError(f"the lock of '{target.name}' is stale: {stale[0].reason}", file=path,
                          hint=f"Run `envctl lock {target.name}` first; a bundle is made from the current lock.")
    return path


def prepare(matrix_path: Path, name: str, platform: str | None, work: Path, progress=None):
    """Materialise the env with its share/envctl-bundle folder; (root, target, lock, Materialised, cert name, info)."""
    root, target = resolve_target(matrix_path, name)
    lock = lock_file(root, target)
    platform = pick_platform(target, lock, platform)
    env = work / "env"
    built = materialise(lock, target, platform, env, progress)
    lock_sha = load_lock(lock).hex  # the bundle's info and the device's certificate spell it bare (pack/header.sh)
    cert = _add_meta(root, target, lock, lock_sha, built, env / META, progress)
    info = {
        "bundle_version": 1, "target": target.name, "platform": platform, "machine": MACHINES.get(platform, platform),
        "lock_sha256": lock_sha, "envctl_version": __version__, "python_version": built.python_version,
        "placeholder": PLACEHOLDER, "certificate": cert,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"conda": len(built.conda), "pip": len(built.pip)},
    }
    (env / META / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return root, target, lock, built, cert, info


def _add_meta(root: Path, target, lock: Path, lock_sha: str, built: Materialised, meta: Path,
              progress=None) -> str | None:
    from envctl.certify.certify import build_spec, expected_versions, provider_order
    from envctl.core.paths import cert_path, env_file
    from envctl.host.runnable import GPU_PROVIDERS
    from envctl.smoke import RUNNER_PATH

    meta.mkdir(parents=True, exist_ok=True)
    # Project files are read through the capped, regular-file reader: a FIFO or /dev/zero planted at
    # one of these names must not hang the pack or fill memory and disk.
    (meta / lock.name).write_bytes(load_lock(lock).data)
    spec_file = env_file(root, target)
    if os.path.lexists(spec_file):
        (meta / "environment.yml").write_bytes(read_regular(spec_file, MAX_MATRIX_BYTES, "rendered environment.yml"))
    smoke = meta / "smoke"
    smoke.mkdir()
    for path in sorted(RUNNER_PATH.parent.glob("*.py")):
        if path.name != "__init__.py":
            shutil.copyfile(path, smoke / path.name)
    shutil.copyfile(INSTALLER_PATH, meta / "installer.py")
    shutil.copyfile(DEVCERT_PATH, meta / "devcert.py")
    shutil.copyfile(PREFIXRULE_PATH, meta / "prefixrule.py")  # the installer's prefix check, the one rule envctl uses
    shutil.copyfile(PROCESS_PATH, meta / "process.py")  # devcert's start/kill of the runner's tree: envctl's own helper
    # The team's own smoke models travel along when they are single modules of the project.
    models = meta / "models"
    for model in target.models:
        if ":" in model:
            module = root / (model.split(":", 1)[0].replace(".", "/") + ".py")
            if module.is_file():
                models.mkdir(exist_ok=True)
                shutil.copyfile(module, models / module.name)
    device = "cuda" if target.execution_provider in GPU_PROVIDERS else "cpu"
    spec = build_spec(target, root, device=device, providers=provider_order(target.execution_provider),
                      required=target.execution_provider, expected=expected_versions(lock, built.platform))
    spec.model_paths = []  # devcert.py points it at the installed models folder
    # The runner's spec plus what only devcert reads (it takes these three keys off before the run).
    device_spec = dict(spec.to_json(), timeout=target.timeout, xfail=target.xfail, target_hash=target.definition_hash())
    (meta / "spec.json").write_text(json.dumps(device_spec, indent=2) + "\n", encoding="utf-8")
    cert = cert_path(root, target.name)
    if not os.path.lexists(cert):
        return None
    try:
        raw = read_regular(cert, MAX_JSON_BYTES, "certificate")
        data = load_json(raw, "certificate", cert)
    except EnvctlError as exc:
        if progress:
            progress("certificate", message=f"not shipping {cert}: {exc}")
        return None
    if not isinstance(data, dict):
        return None
    recorded = str((data.get("lock") or {}).get("sha256") or "").split(":", 1)[-1]
    if recorded != lock_sha:
        return None  # a certificate of another lock says nothing about this env
    (meta / "certificate.json").write_bytes(raw)
    return printable(f"{data.get('result')} ({data.get('certified')}, {data.get('created_at')})")


def write_manifest(env: Path, built: Materialised, info: dict) -> tuple[Path, dict]:
    files: dict[str, list] = {}
    symlinks: dict[str, str] = {}
    manifest_rel = str(META / "manifest.json")
    for dirpath, dirnames, filenames in os.walk(env):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, env)
            if os.path.islink(path):
                symlinks[rel] = os.readlink(path)
            elif rel != manifest_rel:
                files[rel] = [sha256_file(Path(path)), os.path.getsize(path)]
    packages = {f"pkgs/{a.manager}/{a.filename}": [a.sha256, a.path.stat().st_size] for a in built.conda + built.pip}
    manifest = dict(info, files=files, symlinks=symlinks, packages=packages, prefix_files=built.prefix_files)
    manifest_path = env / manifest_rel
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest_path, manifest


def _tar_env(env: Path, out: Path, compress: str) -> None:
    # gzip level 1: about twice as fast as the default 6 here, for a bundle ~13% larger (libtorch sample).
    if compress == "gzip":
        archive = tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT, compresslevel=1)
    else:
        archive = tarfile.open(out, "w", format=tarfile.GNU_FORMAT)
    with archive as tar:
        for entry in sorted(os.listdir(env)):
            tar.add(env / entry, arcname=entry, recursive=True)


def _tar_pkgs(built: Materialised, out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for archive in built.conda + built.pip:
            info = tar.gettarinfo(str(archive.path), arcname=f"pkgs/{archive.manager}/{archive.filename}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(archive.path, "rb") as handle:
                tar.addfile(info, handle)


def header(fields: dict[str, str]) -> bytes:
    text = HEADER_PATH.read_text(encoding="utf-8")
    for key, value in fields.items():
        text = text.replace(f"@@{key}@@", value)
    return text.encode()


def pack_bundle(matrix_path: Path, name: str, out: Path, *, platform: str | None = None, compress: str = "gzip",
                progress=None) -> PackResult:
    started = time.monotonic()
    if compress not in COMPRESS:
        raise EnvctlError(f"--compress must be one of {', '.join(COMPRESS)}, not {compress!r}")
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".envctl-pack-", dir=out.parent))
    try:
        root, target, lock, built, cert, info = prepare(matrix_path, name, platform, work, progress)
        env = work / "env"
        if progress:
            progress("manifest", message="recording every file's sha256")
        manifest_path, manifest = write_manifest(env, built, info)
        if progress:
            progress("payload", message=f"compressing the env ({len(manifest['files'])} files) and adding the packages")
        env_tar, pkgs_tar = work / "env.tar.gz", work / "pkgs.tar"
        _tar_env(env, env_tar, compress)
        _tar_pkgs(built, pkgs_tar)
        manifest_sha = sha256_file(manifest_path)
        fields = {
            "TARGET": target.name, "PLATFORM": built.platform, "LOCK_SHA256": info["lock_sha256"], "VERSION": __version__,
            "MANIFEST_SHA256": manifest_sha, "ENV_SHA256": sha256_file(env_tar), "PREFIX_CHARS": SH_BRACKET, "PKGS_SHA256": sha256_file(pkgs_tar), "BUNDLE_ID": manifest_sha,
            "MACHINE": info["machine"], "MAX_PREFIX": str(len(PLACEHOLDER)), "TAR_Z": COMPRESS[compress],
            "ENV_SIZE": str(env_tar.stat().st_size).ljust(NUMBER_WIDTH), "PKGS_SIZE": str(pkgs_tar.stat().st_size).ljust(NUMBER_WIDTH),
            "HEADER_SIZE": "0".ljust(NUMBER_WIDTH),
        }
        size = len(header(fields))
        fields["HEADER_SIZE"] = str(size).ljust(NUMBER_WIDTH)
        head = header(fields)
        assert len(head) == size
        tmp = work / "bundle.sh"
        with open(tmp, "wb") as handle:
            handle.write(head)
            for part in (env_tar, pkgs_tar):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, handle, 1 << 20)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)  # same folder as the work dir: atomic
        from envctl.create.build import env_size

        return PackResult(out, target.name, built.platform, "sh", out.stat().st_size, env_size(env)[0],
                          len(manifest["files"]), info["counts"], info["lock_sha256"], cert, time.monotonic() - started)
    except OSError as exc:
        raise WriteFailed(f"cannot write the bundle {out}: {exc.strerror or exc} ({exc.filename or ''}); "
                          "nothing was written") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
