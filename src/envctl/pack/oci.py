"""`envctl pack --format oci`: the target's env as an OCI image archive, written without any container daemon.

The archive is an OCI image layout in a tar (oci-layout, index.json,
blobs/sha256/...), which `podman load`, `docker load` (25+) and
`skopeo copy oci-archive:FILE ...` read. One gzip layer holds the env,
materialised for the target platform and relocated to a fixed path
(default /opt/envctl/env) at pack time; the image config carries the
activation (`PATH` with the env's bin first, `CONDA_PREFIX`,
`CONDA_DEFAULT_ENV`, `CONDA_SHLVL`), and the manifest's annotations the lock
hash and the certificate summary. `--base ARCHIVE` stacks the layer on the
image in another OCI archive (its layers, config and environment kept).
Spec: https://github.com/opencontainers/image-spec (image-layout.md, manifest.md, config.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from envctl.core.errors import EnvctlError
from envctl.pack.bundle import PackResult, prepare

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCH = {"linux-64": "amd64", "linux-aarch64": "arm64", "linux-ppc64le": "ppc64le"}  # OCI's GOARCH names
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Blobs:
    """blobs/sha256/<hex> in a work folder, each added once."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True)

    def add_bytes(self, data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.dir / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def add_file(self, path: Path, media_type: str) -> dict:
        digest = _sha256(path)
        os.replace(path, self.dir / digest)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": (self.dir / digest).stat().st_size}


def _layer(env: Path, env_path: str, work: Path) -> tuple[Path, str]:
    """(gzip layer file, diff_id): the env under env_path, parents included, owned by root."""
    raw = work / "layer.tar"
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tar:
        parts = PurePosixPath(env_path).parts[1:]
        for i in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)

        def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        tar.add(env, arcname="/".join(parts), recursive=True, filter=owner)
    diff_id = _sha256(raw)
    blob = work / "layer.tar.gz"
    with open(raw, "rb") as src, open(blob, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
    raw.unlink()
    return blob, f"sha256:{diff_id}"


def _read_base(base: Path, arch: str, blobs: _Blobs) -> tuple[dict, list[dict]]:
    """The base image's config and layer descriptors, its blobs copied into `blobs`."""
    try:
        tar = tarfile.open(base)
    except (OSError, tarfile.TarError) as exc:
        raise EnvctlError(f"--base is not a readable OCI image archive: {exc}", file=base) from None
    with tar:
        def read(name: str) -> bytes:
            try:
                member = tar.extractfile(name)
            except KeyError:
                member = None
            if member is None:
                raise EnvctlError(f"--base is not an OCI image archive (no {name}); save it with "
                                  "`skopeo copy ... oci-archive:FILE` or `podman save --format oci-archive`", file=base)
            return member.read()

        def blob(descriptor: dict) -> bytes:
            return read("blobs/" + descriptor["digest"].replace(":", "/"))

        try:
            index = json.loads(read("index.json"))
            desc = index["manifests"][0]
            manifest = json.loads(blob(desc))
            if manifest.get("mediaType") == INDEX_TYPE or "manifests" in manifest:  # multi-platform: pick ours
                found = [m for m in manifest["manifests"] if (m.get("platform") or {}).get("architecture") == arch]
                if not found:
                    raise EnvctlError(f"the base image has no {arch} variant", file=base)
                manifest = json.loads(blob(found[0]))
            config = json.loads(blob(manifest["config"]))
        except (KeyError, IndexError, ValueError) as exc:
            raise EnvctlError(f"--base: unreadable OCI index or manifest ({exc})", file=base) from None
        if config.get("architecture") != arch:
            raise EnvctlError(f"the base image is for {config.get('architecture')}, the env for {arch}", file=base)
        layers = []
        for layer in manifest.get("layers", []):
            data = blob(layer)
            layers.append(blobs.add_bytes(data, layer.get("mediaType", LAYER_TYPE)))
    return config, layers


def _activation(env_path: str, target: str, base_env: list[str]) -> list[str]:
    env = dict(item.split("=", 1) for item in base_env if "=" in item)
    env["PATH"] = f"{env_path}/bin:" + env.get("PATH", DEFAULT_PATH)
    env.update(CONDA_PREFIX=env_path, CONDA_DEFAULT_ENV=target, CONDA_SHLVL="1")
    return [f"{k}={v}" for k, v in env.items()]


def pack_oci(matrix_path: Path, name: str, out: Path, *, platform: str | None = None, base: Path | None = None,
             env_path: str = "/opt/envctl/env", progress=None) -> PackResult:
    from envctl.create.build import env_size
    from envctl.pack import installer

    started = time.monotonic()
    if not env_path.startswith("/") or ".." in PurePosixPath(env_path).parts or env_path.rstrip("/") == "":
        raise EnvctlError(f"--env-path must be an absolute folder path, not {env_path!r}")
    env_path = env_path.rstrip("/")
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".envctl-pack-", dir=out.parent))
    try:
        root, target, lock, built, cert, info = prepare(matrix_path, name, platform, work, progress)
        arch = ARCH.get(built.platform)
        if arch is None:
            raise EnvctlError(f"OCI images here are Linux only; {built.platform} has no image architecture")
        env = work / "env"
        manifest = {**info, "prefix_files": built.prefix_files, "symlinks": {}}
        try:
            installer.relocate(str(env), manifest, env_path)
        except installer.Refused as exc:
            raise EnvctlError(str(exc)) from None
        (env / "share" / "envctl-bundle" / "info.json").write_text(
            json.dumps({**{k: v for k, v in info.items() if k != "placeholder"}, "installed_prefix": env_path}, indent=1) + "\n")
        installer.write_state(str(env), {**info}, env_path, "oci")
        layout = work / "layout"
        blobs = _Blobs(layout)
        base_config, base_layers = _read_base(base, arch, blobs) if base else ({}, [])
        if progress:
            progress("layer", message=f"writing the env as one layer at {env_path}")
        layer_file, diff_id = _layer(env, env_path, work)
        layer = blobs.add_file(layer_file, LAYER_TYPE)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        cfg = dict(base_config.get("config") or {})
        cfg["Env"] = _activation(env_path, target.name, cfg.get("Env") or [])
        if not base or not cfg.get("Cmd"):
            cfg["Cmd"] = [f"{env_path}/bin/python"]
        annotations = {
            "org.opencontainers.image.title": f"envctl {target.name} ({built.platform})",
            "org.opencontainers.image.created": now,
            "dev.envctl.target": target.name,
            "dev.envctl.platform": built.platform,
            "dev.envctl.lock.sha256": info["lock_sha256"],
            "dev.envctl.certificate": cert or "none for this lock",
            "dev.envctl.env-path": env_path,
        }
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **annotations}
        config = {
            "created": now, "architecture": arch, "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": list((base_config.get("rootfs") or {}).get("diff_ids", [])) + [diff_id]},
            "history": list(base_config.get("history") or []) + [
                {"created": now, "created_by": f"envctl pack --target {target.name} --format oci", "comment": cert or ""}],
        }
        config_desc = blobs.add_bytes(json.dumps(config, sort_keys=True).encode(), CONFIG_TYPE)
        image = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc,
                 "layers": base_layers + [layer], "annotations": annotations}
        manifest_desc = blobs.add_bytes(json.dumps(image, sort_keys=True).encode(), MANIFEST_TYPE)
        manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": target.name}
        manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE,
                                                       "manifests": [manifest_desc]}))
        tmp = work / "image.tar"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in ("oci-layout", "index.json", "blobs"):
                tar.add(layout / entry, arcname=entry, recursive=True)
        os.replace(tmp, out)
        return PackResult(out, target.name, built.platform, "oci", out.stat().st_size, env_size(env)[0],
                          sum(1 for p in env.rglob("*") if p.is_file()), info["counts"], info["lock_sha256"], cert,
                          time.monotonic() - started)
    except OSError as exc:
        raise EnvctlError(f"cannot write the image {out}: {exc.strerror or exc} ({exc.filename or ''}); nothing was written",
                          exit_code=1) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
