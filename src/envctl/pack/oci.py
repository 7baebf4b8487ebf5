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
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from envctl.core.errors import EnvctlError, WriteFailed
from envctl.core.hashing import sha256_bytes, sha256_digest, sha256_file, sha256_hasher
from envctl.core.limits import short
from envctl.core.prefixrule import check_prefix
from envctl.core.text import printable
from envctl.pack.bundle import PackResult, lock_file, pick_platform, prepare, resolve_target

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCH = {"linux-64": "amd64", "linux-aarch64": "arm64", "linux-ppc64le": "ppc64le"}  # OCI's GOARCH names
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class _Blobs:
    """blobs/sha256/<hex> in a work folder, each added once."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True)

    def add_bytes(self, data: bytes, media_type: str) -> dict:
        digest = sha256_bytes(data)
        (self.dir / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def add_file(self, path: Path, media_type: str) -> dict:
        digest = sha256_file(path)
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
    diff_id = sha256_file(raw)
    blob = work / "layer.tar.gz"
    with open(raw, "rb") as src, open(blob, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
    raw.unlink()
    return blob, f"sha256:{diff_id}"


MAX_BASE_JSON = 4 << 20  # an OCI index, manifest or config is a few KB
_DIGEST = re.compile(r"\Asha256:[0-9a-f]{64}\Z")


def _open_base(base: Path) -> tarfile.TarFile:
    """The --base archive, once shown to be a regular file (a FIFO or /dev/zero would hang or fill memory)."""
    try:
        info = os.stat(base)
    except OSError as exc:
        raise EnvctlError(f"--base cannot be read: {exc.strerror or exc}", file=base) from None
    if not stat.S_ISREG(info.st_mode):
        raise EnvctlError("--base must be a regular file (an OCI image archive)", file=base)
    try:
        return tarfile.open(base, mode="r:")  # seekable: members are found by name without reading the layers
    except (OSError, tarfile.TarError) as exc:
        raise EnvctlError(f"--base is not a readable OCI image archive: {exc}", file=base) from None


def _read_base(base: Path, arch: str, blobs: _Blobs) -> tuple[dict, list[dict]]:
    """The base image's config and layer descriptors, its layers streamed into `blobs`.

    Every blob must be the size its descriptor declares and hash to its digest; sizes are
    checked before anything is read, JSON documents are capped, layers are copied in chunks.
    """
    def bad(message: str) -> EnvctlError:
        return EnvctlError(f"--base: {message}; nothing was written", file=base)

    def member(name: str, declared: int | None) -> tarfile.TarInfo:
        try:
            info = tar.getmember(name)
        except KeyError:
            raise EnvctlError(f"--base is not an OCI image archive (no {name}); save it with "
                              "`skopeo copy ... oci-archive:FILE` or `podman save --format oci-archive`", file=base) from None
        if not info.isfile():
            raise bad(f"{name} is not a regular file in the archive")
        if declared is not None and info.size != declared:
            raise bad(f"{name} is {info.size} bytes, its descriptor says {declared}")
        return info

    def descriptor(desc: object) -> tuple[str, int]:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) or not _DIGEST.match(desc["digest"]):
            raise bad(f"a descriptor has no valid sha256 digest ({short(desc)})")
        size = desc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"the descriptor of {desc['digest']} has no valid size ({short(size)})")
        return desc["digest"], size

    def stream(info: tarfile.TarInfo, sink=None) -> str:
        handle = tar.extractfile(info)
        assert handle is not None
        digest = sha256_hasher()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
        return digest.hexdigest()

    def json_doc(name: str, declared: int | None, digest: str | None) -> dict:
        info = member(name, declared)
        if info.size > MAX_BASE_JSON:
            raise bad(f"{name} is {info.size} bytes; an OCI index, manifest or config over {MAX_BASE_JSON} is refused")
        data = tar.extractfile(info).read()  # type: ignore[union-attr]
        if digest is not None and sha256_digest(data) != digest:
            raise bad(f"{name} does not match its digest")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise bad(f"{name} is not JSON ({short(str(exc))})") from None
        if not isinstance(doc, dict):
            raise bad(f"{name} is not a JSON object")
        return doc

    def blob_doc(desc: object) -> dict:
        digest, size = descriptor(desc)
        return json_doc("blobs/" + digest.replace(":", "/"), size, digest)

    tar = _open_base(base)
    with tar:
        try:
            index = json_doc("index.json", None, None)
            manifest = blob_doc(index["manifests"][0])
            if manifest.get("mediaType") == INDEX_TYPE or "manifests" in manifest:  # multi-platform: pick ours
                found = [m for m in manifest["manifests"]
                         if isinstance(m, dict) and (m.get("platform") or {}).get("architecture") == arch]
                if not found:
                    raise EnvctlError(f"the base image has no {arch} variant", file=base)
                manifest = blob_doc(found[0])
            config = blob_doc(manifest["config"])
            layer_descs = manifest.get("layers", [])
            if not isinstance(layer_descs, list):
                raise bad("the manifest's layers are not a list")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise bad(f"unreadable OCI index or manifest ({short(str(exc))})") from None
        if config.get("architecture") != arch:
            raise EnvctlError(f"the base image is for {printable(config.get('architecture'))}, the env for {arch}", file=base)
        layers = []
        for desc in layer_descs:
            digest, size = descriptor(desc)
            info = member("blobs/" + digest.replace(":", "/"), size)
            tmp = blobs.dir / f".incoming-{digest[7:]}"
            with open(tmp, "wb") as sink:
                got = stream(info, sink)
            if "sha256:" + got != digest:
                tmp.unlink()
                raise bad(f"the layer {digest} does not match its digest (its content hashes to sha256:{got})")
            os.replace(tmp, blobs.dir / got)
            layers.append({"mediaType": desc.get("mediaType", LAYER_TYPE), "digest": digest, "size": size})
    return config, layers


def _arch(platform: str) -> str:
    if platform not in ARCH:
        raise EnvctlError(f"OCI images here are Linux only; {platform} has no image architecture")
    return ARCH[platform]


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
    check_prefix(env_path, "--env-path")
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".envctl-pack-", dir=out.parent))
    try:
        layout = work / "layout"
        blobs = _Blobs(layout)
        base_config: dict = {}
        base_layers: list[dict] = []
        if base:  # checked (and its layers streamed in) before the env is built: a bad base fails fast
            root, target = resolve_target(matrix_path, name)
            base_platform = pick_platform(target, lock_file(root, target), platform)
            base_config, base_layers = _read_base(base, _arch(base_platform), blobs)
        root, target, lock, built, cert, info = prepare(matrix_path, name, platform, work, progress)
        arch = _arch(built.platform)
        env = work / "env"
        manifest = {**info, "prefix_files": built.prefix_files, "symlinks": {}}
        try:
            installer.relocate(str(env), manifest, env_path)
        except installer.Refused as exc:
            raise EnvctlError(str(exc)) from None
        (env / "share" / "envctl-bundle" / "info.json").write_text(
            json.dumps({**{k: v for k, v in info.items() if k != "placeholder"}, "installed_prefix": env_path}, indent=1) + "\n")
        installer.write_state(str(env), {**info}, env_path, "oci")
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
        raise WriteFailed(f"cannot write the image {out}: {exc.strerror or exc} ({exc.filename or ''}); "
                          "nothing was written") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
