"""What `certify --import` and `pack` read: special and oversized files, forged certificates, hostile base images.

Every file is read through the capped, regular-file reader (core/limits.py);
JSON nesting is bounded (core/jsonread.py); what is printed from a
certificate goes through core/text.printable; a base image's blobs must match
their declared sizes and digests and are streamed, never read whole. No env
is built here (the project is locked only), so these run in the fast tier.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import broken_locks
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.platform import host_platform
from support.packing import PACK_TARGET as TARGET

pytestmark = pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only")

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """envctl in a subprocess: a read that hangs fails the test by its timeout instead of hanging the suite."""
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or str(REPO / "src"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "envctl", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture
def project(pack_project: Path, tmp_path: Path) -> Path:
    """A copy of the session's locked project, free to file into and to damage."""
    root = tmp_path / "proj"
    shutil.copytree(pack_project, root, symlinks=True, ignore=shutil.ignore_patterns(".envctl", "*.device.json"))  # a device cert another test filed there
    return root


def matrix(root: Path) -> str:
    return str(root / "envs" / "matrix.yaml")


def lock_sha(root: Path) -> str:
    return hashlib.sha256((root / "locks" / f"{TARGET}.conda-lock.yml").read_bytes()).hexdigest()


def device_cert(root: Path, **changes) -> dict:
    cert = {"certificate_version": 1, "target": TARGET, "result": "passed", "certified": "device",
            "created_at": "2026-01-01T00:00:00+00:00", "host": {"hostname": "jetson01"},
            "lock": {"path": f"bundle:{TARGET}", "sha256": lock_sha(root)}}
    cert.update(changes)
    return cert


def filed(root: Path) -> Path:
    return root / "certs" / f"{TARGET}.device.json"


# ---------------------------------------------------------------- certify --import: what it reads


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder", "sparse-60MiB", "nested-100000", "nested-900", "not-utf8"])
def test_import_refuses_special_oversized_and_pathological_files(project: Path, tmp_path: Path, kind: str):
    path = tmp_path / "cert.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "sparse-60MiB":
        with open(path, "wb") as handle:  # valid JSON: the certificate, then 60 MiB of whitespace
            handle.write(json.dumps(device_cert(project)).encode())
            handle.write(b" " * (60 << 20))
    elif kind.startswith("nested"):
        depth = int(kind.split("-")[1])
        body = json.dumps(device_cert(project))[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
        path.write_text(body)
    else:
        path.write_bytes(b'{"target": "\xff\xfe"}')
    proc = cli("certify", "--import", str(path), "--matrix", matrix(project), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(path) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not filed(project).exists()


def test_import_refuses_when_the_project_lock_is_a_fifo_or_a_device(project: Path, tmp_path: Path):
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(device_cert(project)))
    lock = project / "locks" / f"{TARGET}.conda-lock.yml"
    for special in ("fifo", "/dev/zero"):
        lock.unlink()
        os.mkfifo(lock) if special == "fifo" else os.symlink(special, lock)
        broken_locks.declare(lock)  # the session's every-lock check must not read it
        proc = cli("certify", "--import", str(cert), "--matrix", matrix(project), timeout=60)
        assert proc.returncode == 2 and "regular file" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not filed(project).exists()


@pytest.mark.parametrize("lock", [None, "absent", "a string", {}, {"sha256": None}, {"sha256": ""}, {"sha256": 5},
                                  {"sha256": "abc"}, {"path": "x"}, "md5-prefixed", "upper-case"])
def test_import_refuses_a_certificate_without_a_valid_lock_hash(project: Path, tmp_path: Path, lock):
    cert = device_cert(project)
    if lock == "absent":
        del cert["lock"]
    elif lock == "md5-prefixed":
        cert["lock"] = {"sha256": "md5:" + lock_sha(project)}
    elif lock == "upper-case":
        cert["lock"] = {"sha256": lock_sha(project).upper() + "0"}
    else:
        cert["lock"] = lock
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(cert))
    result = CliRunner().invoke(app, ["certify", "--import", str(path), "--matrix", matrix(project)])
    assert result.exit_code == 2 and "lock hash" in result.output, result.output
    assert not filed(project).exists()


def test_import_accepts_the_current_lock_hash_with_or_without_its_algorithm(project: Path, tmp_path: Path):
    for value in (lock_sha(project), "sha256:" + lock_sha(project)):
        path = tmp_path / "cert.json"
        path.write_text(json.dumps(device_cert(project, lock={"sha256": value})))
        result = CliRunner().invoke(app, ["certify", "--import", str(path), "--matrix", matrix(project)])
        assert result.exit_code == 0, result.output
        assert json.loads(filed(project).read_text())["lock"]["sha256"] == value


ESCAPES = ["\x1b]0;owned\x07", "\x1b[2J\x1b[H", "\nfiled certs/other.json: other passed", "\r", "\x9b31m", "\u202e",
           "\x00", "\x08\x08\x08"]


@pytest.mark.parametrize("forged", ESCAPES)
def test_import_prints_no_raw_control_characters_from_the_certificate(project: Path, tmp_path: Path, forged: str):
    cert = device_cert(project, host={"hostname": f"jet{forged}son"}, created_at=f"2026{forged}",
                       result="passed")
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(cert))
    proc = cli("certify", "--import", str(path), "--matrix", matrix(project))
    assert proc.returncode == 0, proc.stderr
    shown = proc.stdout + proc.stderr
    assert forged not in shown and not any(c in shown for c in "\x1b\x07\x9b\r\x00\x08\u202e")
    assert shown.count("\n") == 1 and "jet" in shown


@pytest.mark.parametrize("field", ["target", "certified", "result"])
def test_import_refuses_forged_names_without_echoing_them_raw(project: Path, tmp_path: Path, field: str):
    cert = device_cert(project, **{field: f"{TARGET}\x1b]0;owned\x07\nline"})
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(cert))
    proc = cli("certify", "--import", str(path), "--matrix", matrix(project))
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\x07" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not filed(project).exists()


# ---------------------------------------------------------------- pack --format oci --base


def base_image(path: Path, tamper: str | None = None, layer_bytes: bytes = b"base image for envctl tests\n",
               extra_layer: bool = False) -> None:
    """An OCI image archive written by hand, with one kind of damage (`tamper`)."""
    def add(tar, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def blob_name(d: str) -> str:
        return "blobs/" + d.replace(":", "/")

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as layer:
        add(layer, "etc/base-release", layer_bytes)
    layers = [raw.getvalue()] + ([b"second layer"] if extra_layer else [])
    with tarfile.open(path, "w") as tar:
        descs = []
        for i, data in enumerate(layers):
            d = digest(data)
            stored = data
            last = i == len(layers) - 1
            if tamper == "layer-content" and last:
                stored = data[:-1] + bytes([data[-1] ^ 1])  # same size, other bytes
            add(tar, blob_name(d), stored)
            size = len(data) + (1 if tamper == "layer-size" and last else 0)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
        if tamper == "digest-traversal":
            descs[0]["digest"] = "sha256:../../../../etc/passwd"
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": [digest(x) for x in layers]}}).encode()
        config_digest = digest(config)
        add(tar, blob_name(config_digest), config.replace(b"amd64", b"AMD64") if tamper == "config-content" else config)
        manifest = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                              "digest": config_digest, "size": len(config)},
                               "layers": descs}).encode()
        add(tar, blob_name(digest(manifest)), manifest)
        index = {"schemaVersion": 2, "manifests": [{"digest": digest(manifest), "size": len(manifest)}]}
        index_bytes = json.dumps(index).encode()
        if tamper == "index-huge":
            index_bytes = index_bytes[:-1] + b', "pad": "' + b"x" * (5 << 20) + b'"}'
        add(tar, "index.json", index_bytes)
        add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')


def pack_oci(project: Path, base: Path, out: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return cli("pack", "--target", TARGET, "--format", "oci", "--base", str(base), "--out", str(out),
               "--matrix", matrix(project), timeout=timeout)


@pytest.mark.parametrize("tamper", ["layer-content", "layer-size", "config-content", "index-huge", "digest-traversal",
                                    "fifo", "dev-zero", "folder"])
def test_a_base_image_that_does_not_match_its_own_digests_and_sizes_is_refused(project: Path, tmp_path: Path,
                                                                              tamper: str):
    base = tmp_path / "base.tar"
    if tamper == "fifo":
        os.mkfifo(base)
    elif tamper == "dev-zero":
        os.symlink("/dev/zero", base)
    elif tamper == "folder":
        base.mkdir()
    else:
        base_image(base, tamper)
    out = tmp_path / "image.tar"
    proc = pack_oci(project, base, out, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--base" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".envctl-pack-")]


def test_base_layers_are_streamed_not_read_whole(project: Path, tmp_path: Path):
    """A 256 MiB layer, then a second one whose digest is wrong: refused, and the first never sat in memory."""
    base = tmp_path / "base.tar"
    base_image(base, "layer-content", layer_bytes=os.urandom(1 << 20) * 256, extra_layer=True)
    script = ("import resource, subprocess, sys; "
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
              "sys.stderr.write(p.stderr)")
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "envctl", "pack", "--target", TARGET,
                           "--format", "oci", "--base", str(base), "--out", str(tmp_path / "image.tar"), "--matrix",
                           matrix(project)], capture_output=True, text=True, env=env, timeout=600)
    rc, peak_mib = (int(x) for x in proc.stdout.split())
    assert rc == 2 and "does not match its digest" in proc.stderr, proc.stderr
    assert peak_mib < 200, f"pack peaked at {peak_mib} MiB reading a 256 MiB layer"
