"""`envctl pack`: a bundle made from the lock, installed where envctl, the channel and the network are not.

Two bundles are built once per session from the tests' local channel
(support/packing.py): the whole torch env (`bundle`), installed inside
`unshare -n -m` (no network; a private mount namespace where the channel,
every package cache, the wheel folder and envctl's own checkout are hidden
under empty tmpfs mounts) at a path containing a space and certified there;
and a small one without torch (`small_bundle`: python, pip, numpy), which the
tests of the header's and the installer's mechanics (extracting, damage, a
folder that is not an env, a full disk, an interrupted install) install.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app
from envctl.pack.materialise import PLACEHOLDER
from envctl.host.platform import host_platform
from support.packing import PACK_TARGET, SMALL_TARGET, bundle_leftovers, can_unshare, offline
from support.project import pip_target, write_project

pytestmark = [pytest.mark.slow,  # packs the whole torch env once per session
              pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only")]

REPO = Path(__file__).resolve().parents[2]
TARGET = PACK_TARGET
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def lock(matrix: Path, *names: str) -> None:
    result = invoke("lock", *names, "--matrix", str(matrix))
    assert result.exit_code == 0, result.output


@pytest.fixture
def project(pack_project: Path) -> Path:
    return pack_project  # session-wide (conftest): test_pack_hardening.py installs the same bundle


@pytest.fixture
def small_project(small_pack_project: Path) -> Path:
    return small_pack_project  # target SMALL_TARGET, no torch: for what packing does, whatever the env holds


@pytest.fixture
def small_bundle(small_pack_bundle: Path) -> Path:
    return small_pack_bundle  # no torch: for what the header and the installer do, whatever the env holds


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            data = Path(path).read_bytes()
            found += [f"{os.path.relpath(path, root)}: {n.decode()}" for n in needles if n in data]
    return found


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare(), reason="NOT PROVEN HERE: that a bundle installs with no network needs root and util-linux `unshare -n -m` "
                    "(a network namespace with no network); run the suite as root, e.g. in a container (docs/testing.md)")
def test_bundle_installs_offline_at_a_path_with_a_space_and_certifies(installed_pack_bundle: Path, project: Path):
    # Installed once per run (conftest): copied to "edge box", installed at "my envs/edge env" with no
    # network and nothing to cheat with (support.packing.install_offline); checked and certified here, offline too.
    prefix, shipped, hide = installed_pack_bundle.prefix, installed_pack_bundle.bundle, installed_pack_bundle.hidden
    device, bundle = shipped.parent, installed_pack_bundle.original
    command = (f"'{prefix}/bin/python' -I -c 'import torch, onnx, onnxruntime, sys; print(\"OK\", torch.__version__, sys.prefix)' && "
               f"'{prefix}/bin/pip' --version && "
               f"sh '{shipped}' --prefix '{prefix}' --certify --cert-out '{device}/device-cert.json'")
    proc = offline(command, hide, device)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"OK 2.13.0+cpu {prefix}" in proc.stdout
    assert "already holds this bundle's env" in proc.stdout  # the second run is a no-op, then certifies
    assert "verdict: PASSED" in proc.stdout and "cnn" in proc.stdout
    cert = json.loads((device / "device-cert.json").read_text())
    assert cert["certified"] == "device" and cert["result"] == "passed"
    assert cert["host"]["libc"].startswith("glibc") and "jetson" in cert["host"] and "nvidia" in cert["host"]
    lock_sha = (project / "locks" / f"{TARGET}.conda-lock.yml").read_bytes()
    import hashlib

    assert cert["lock"]["sha256"] == hashlib.sha256(lock_sha).hexdigest()
    # Nothing names the placeholder or the folder the env was built in (beside the bundle at pack time).
    assert files_containing(prefix, [PLACEHOLDER.encode(), str(bundle.parent / ".envctl-pack-").encode()]) == []
    state = json.loads((prefix / "conda-meta" / "envctl-state.json").read_text())
    assert state["prefix"] == str(prefix) and state["installed_from"] == "bundle"
    assert bundle_leftovers(prefix) == []
    # conda's records came along, cleaned of the packing machine's cache paths
    record = json.loads(next((prefix / "conda-meta").glob("python-*.json")).read_text())
    assert record["extracted_package_dir"] is None and record["name"] == "python"

    # The device certificate is filed back home after its lock is checked, and shows as run on device.
    matrix = project / "envs" / "matrix.yaml"
    result = invoke("certify", "--import", str(device / "device-cert.json"), "--matrix", str(matrix))
    assert result.exit_code == 0, result.output
    filed = project / "certs" / f"{TARGET}.device.json"
    assert json.loads(filed.read_text())["certified"] == "device"
    status = invoke("status", "--matrix", str(matrix), "--json")
    row = json.loads(status.output)["targets"][0]
    assert row["device_certificate"]["result"] == "passed" and row["device_certificate"]["fresh"] is True
    from envctl.core import output

    width = output.console.width
    output.console.width = 400  # one line per row, so the label is not folded
    try:
        table = invoke("status", "--matrix", str(matrix))
    finally:
        output.console.width = width
    assert "run on device: passed" in table.output
    html = project / "report.html"
    assert invoke("report", "--html", str(html), "--matrix", str(matrix)).exit_code == 0
    assert "run on device" in html.read_text()


def test_import_refuses_a_certificate_of_another_lock(small_project: Path, tmp_path: Path):
    cert = tmp_path / "other.json"
    cert.write_text(json.dumps({"certificate_version": 1, "target": SMALL_TARGET, "result": "passed", "certified": "device",
                                "created_at": "2026-01-01T00:00:00+00:00", "host": {"hostname": "jetson"},
                                "lock": {"sha256": "0" * 64}}))
    result = invoke("certify", "--import", str(cert), "--matrix", str(small_project / "envs" / "matrix.yaml"))
    assert result.exit_code == 2 and "another lock" in result.output and "0" * 12 in result.output
    assert not (small_project / "certs" / f"{SMALL_TARGET}.device.json").exists() or \
        json.loads((small_project / "certs" / f"{SMALL_TARGET}.device.json").read_text())["lock"]["sha256"] != "0" * 64


@pytest.mark.slow
def test_help_and_extract_only(small_bundle: Path, tmp_path: Path):
    bundle = small_bundle
    proc = subprocess.run(["sh", str(bundle), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--prefix DIR" in proc.stdout and "--extract-only DIR" in proc.stdout
    dest = tmp_path / "look inside"
    proc = subprocess.run(["sh", str(bundle), "--extract-only", str(dest)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    meta = dest / "env" / "share" / "envctl-bundle"
    for name in (f"{SMALL_TARGET}.conda-lock.yml", "environment.yml", "manifest.json", "installer.py", "devcert.py",
                 "smoke/runner.py", "smoke/envctl_smoke_protocol.py", "smoke/envctl_smoke_certificate.py",
                 "process.py", "spec.json"):  # devcert.py imports the protocol and process.py, as envctl does
        assert (meta / name).is_file(), name
    manifest = json.loads((meta / "manifest.json").read_text())
    lock = yaml.safe_load((meta / f"{SMALL_TARGET}.conda-lock.yml").read_text())
    locked = {p["url"].rsplit("/", 1)[1]: p["hash"]["sha256"] for p in lock["package"] if p["platform"] == "linux-64"}
    shipped = {Path(k).name: v[0] for k, v in manifest["packages"].items()}
    assert shipped == locked  # every locked package and wheel, with the lock's own sha256
    assert any(name.endswith(".whl") for name in shipped) and any(name.startswith("python-") for name in shipped)
    for rel, (_sha, _) in manifest["packages"].items():
        assert (dest / rel).is_file()
    assert ["lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py", "text"] in manifest["prefix_files"] or \
        any(mode == "text" and "_sysconfigdata" in rel for rel, mode in manifest["prefix_files"])
    assert any(rel.startswith("bin/") for rel, _ in manifest["prefix_files"])  # entry points


def _damaged(bundle: Path, dest: Path, *, truncate: int | None = None, flip: int | None = None) -> Path:
    shutil.copy(bundle, dest)
    with open(dest, "r+b") as handle:
        if truncate is not None:
            handle.truncate(truncate)
        if flip is not None:
            handle.seek(flip)
            byte = handle.read(1)
            handle.seek(flip)
            handle.write(bytes([byte[0] ^ 0xFF]))
    return dest


def _sizes(bundle: Path) -> dict[str, int]:
    head = bundle.open("rb").read(4096).decode(errors="replace")
    return {k: int(line.split("=", 1)[1].split()[0]) for line in head.splitlines()
            for k in ("HEADER_SIZE", "ENV_SIZE", "PKGS_SIZE") if line.startswith(k + "=")}


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flip-env", "flip-pkgs"])
def test_damaged_bundle_is_refused_before_dir_is_touched(small_bundle: Path, tmp_path: Path, damage: str):
    bundle = small_bundle
    sizes = _sizes(bundle)
    total = bundle.stat().st_size
    where = {"truncated": {"truncate": total - 1000},
             "flip-env": {"flip": sizes["HEADER_SIZE"] + sizes["ENV_SIZE"] // 2},
             "flip-pkgs": {"flip": sizes["HEADER_SIZE"] + sizes["ENV_SIZE"] + sizes["PKGS_SIZE"] // 2}}[damage]
    bad = _damaged(bundle, tmp_path / "bad.sh", **where)
    prefix = tmp_path / "env"
    proc = subprocess.run(["sh", str(bad), "--prefix", str(prefix)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not prefix.exists() and bundle_leftovers(prefix) == []
    if damage == "truncated":
        assert "damaged" in proc.stderr and "truncated" in proc.stderr
    elif damage == "flip-pkgs":
        assert "first bad file: pkgs/" in proc.stderr
    else:
        assert "first bad file" in proc.stderr or "last file reached" in proc.stderr


@pytest.mark.slow
def test_existing_folder_that_is_not_an_env_is_refused(small_bundle: Path, tmp_path: Path):
    bundle = small_bundle
    prefix = tmp_path / "data"
    prefix.mkdir()
    (prefix / "notes.txt").write_text("mine")
    proc = subprocess.run(["sh", str(bundle), "--prefix", str(prefix)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "is not an env" in proc.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["notes.txt"] and bundle_leftovers(prefix) == []


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare(), reason="NOT PROVEN HERE: a full disk during install needs root to mount a small tmpfs in a private mount "
                    "namespace (`unshare -m`); run the suite as root (docs/testing.md)")
def test_full_disk_leaves_dir_untouched(small_bundle: Path, tmp_path: Path):
    bundle = small_bundle  # its env (~140 MB unpacked) does not fit the 64 MB disk
    disk = tmp_path / "small disk"
    disk.mkdir()
    prefix = disk / "env"
    command = (f"mount -t tmpfs -o size=64m envctl-small '{disk}' && mkdir -p '{prefix}/conda-meta' && "
               f"echo '{{\"bundle_id\": \"older\"}}' > '{prefix}/conda-meta/envctl-state.json' && "
               f"sh '{bundle}' --prefix '{prefix}'; echo rc=$?; ls -A '{disk}'; cat '{prefix}/conda-meta/envctl-state.json'")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                          capture_output=True, text=True, timeout=900)
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert "space" in proc.stderr.lower()
    listing = proc.stdout.split("rc=1", 1)[1].split()
    assert listing[0] == "env" and '"older"}' in proc.stdout  # only the old env, unchanged; no staging left


@pytest.mark.slow
def test_interrupted_install_leaves_nothing(small_bundle: Path, tmp_path: Path):
    prefix = tmp_path / "env"
    proc = subprocess.Popen(["sh", str(small_bundle), "--prefix", str(prefix)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def unpacking() -> bool:  # files are landing in the staging folder's env (what the bundle's first step writes)
        try:
            return any(any((staging / "env").iterdir()) for staging in prefix.parent.glob(f".{prefix.name}.staging-*"))
        except OSError:  # not made yet, or removed meanwhile
            return False

    deadline = time.monotonic() + 300
    while not unpacking() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert bundle_leftovers(prefix) and proc.poll() is None, "the install never started unpacking"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert not prefix.exists() and bundle_leftovers(prefix) == []


def test_platform_the_lock_lacks_is_refused(small_project: Path, tmp_path: Path):
    result = invoke("pack", "--target", SMALL_TARGET, "--platform", "osx-arm64", "--out", str(tmp_path / "x.sh"),
                    "--matrix", str(small_project / "envs" / "matrix.yaml"))
    text = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2 and "the lock has no osx-arm64 part; it covers linux-64" in text, result.output
    assert "this machine" not in text  # pack's own words: osx-arm64 is not this machine's platform
    assert not (tmp_path / "x.sh").exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- cross-platform


@pytest.mark.slow
def test_aarch64_target_packs_here_with_aarch64_binaries(local_channel, tmp_path: Path):
    from envctl.core.paths import env_file
    from envctl.lock.render import render_target
    from envctl.lock.solve import lock_target
    from envctl.matrix.loader import load_matrix

    root = tmp_path / "proj"
    matrix = write_project(root, {"jetson": pip_target(local_channel, platforms=["linux-aarch64"], models=["cnn"],
                                                      conda_extra=["envctl-arch-probe"])})
    target = load_matrix(matrix).targets["jetson"]
    render_target(root, target, matrix)
    # PyPI's torch for aarch64 is too heavy for a test; numpy's wheel carries aarch64 binaries all the same.
    path = env_file(root, target)
    text = path.read_text()
    headers = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(text)
    doc["dependencies"] = [d for d in doc["dependencies"] if not isinstance(d, dict)] + [{"pip": ["numpy>=1.26"]}]
    path.write_text(headers + yaml.safe_dump(doc, sort_keys=False))
    lock_target(root, target)
    out = tmp_path / "jetson.sh"
    # --compress none: the env payload is a plain tar (installs without gunzip); the header says so to tar.
    result = invoke("pack", "--target", "jetson", "--out", str(out), "--compress", "none", "--matrix", str(matrix))
    assert result.exit_code == 0, result.output
    head = out.open("rb").read(4096).decode(errors="replace")
    assert "MACHINE=aarch64" in head and "\nZ=\n" in head
    dest = tmp_path / "inside"
    proc = subprocess.run(["sh", str(out), "--extract-only", str(dest)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    env = dest / "env"
    assert list(env.glob("share/envctl-fixtures/envctl-arch-probe-*-linux-aarch64.txt"))
    elves = [p for p in env.rglob("*.so") if p.read_bytes()[:4] == b"\x7fELF"]
    assert elves, "no shared objects in the aarch64 env"
    machines = {int.from_bytes(p.read_bytes()[18:20], "little") for p in elves}
    assert machines == {183}, machines  # EM_AARCH64, and nothing built for this x86-64 machine
    assert any(Path(k).name.startswith("numpy-") and "aarch64" in k
               for k in json.loads((env / "share/envctl-bundle/manifest.json").read_text())["packages"])
    # Installing it here is refused before anything is written.
    prefix = tmp_path / "env"
    proc = subprocess.run(["sh", str(out), "--prefix", str(prefix)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "linux-aarch64" in proc.stderr and not prefix.exists()

    # Here the target is certified lock-only (solved, not run); a device certificate for the same lock, as the
    # bundle's --certify writes it on the board, is filed beside it and both show.
    assert invoke("certify", "--target", "jetson", "--matrix", str(matrix)).exit_code == 0
    import hashlib

    device_cert = tmp_path / "jetson.device-cert.json"
    device_cert.write_text(json.dumps({
        "certificate_version": 1, "target": "jetson", "result": "passed", "certified": "device",
        "created_at": "2026-12-01T08:00:00+00:00", "ran_on_target_hardware": True,
        "host": {"hostname": "jetson01", "platform": "linux-aarch64", "libc": "glibc 2.31",
                 "jetson": {"l4t": "R35.4.1", "cuda": "11.4.315"}},
        "lock": {"path": "bundle:jetson", "sha256": hashlib.sha256((root / "locks" / "jetson.conda-lock.yml").read_bytes()).hexdigest()},
        "runs": [], "failure": None}))
    assert invoke("certify", "--import", str(device_cert), "--matrix", str(matrix)).exit_code == 0
    row = json.loads(invoke("status", "--matrix", str(matrix), "--json").output)["targets"][0]
    assert row["certificate"]["certified"] == "lock-only" and row["device_certificate"]["hostname"] == "jetson01"
    html = tmp_path / "report.html"
    assert invoke("report", "--html", str(html), "--matrix", str(matrix)).exit_code == 0
    assert "solved only; run on device: passed (jetson01)" in html.read_text()


# ---------------------------------------------------------------- OCI image


def _base_image(path: Path) -> str:
    """A minimal OCI image archive written by hand (one layer with /etc/base-release), to stack on."""
    import gzip
    import hashlib
    import io
    import tarfile

    def blob(tar, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        info = tarfile.TarInfo(f"blobs/sha256/{digest}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        return f"sha256:{digest}"

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as layer:
        data = b"base image for envctl tests\n"
        info = tarfile.TarInfo("etc/base-release")
        info.size = len(data)
        layer.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    compressed = gzip.compress(raw.getvalue())
    with tarfile.open(path, "w") as tar:
        layer_digest = blob(tar, compressed)
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        config_bytes = json.dumps(config).encode()
        config_digest = blob(tar, config_bytes)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(config_bytes)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           "digest": layer_digest, "size": len(compressed)}]}).encode()
        manifest_digest = blob(tar, manifest)
        for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", json.dumps({"schemaVersion": 2, "manifests": [
                               {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": manifest_digest, "size": len(manifest)}]}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return layer_digest


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs Debian's skopeo (apt-get install skopeo)")
def test_oci_archive_is_read_by_skopeo_and_runs_at_its_fixed_path(small_project: Path, tmp_path: Path):
    """The image of the small target (python, pip, numpy: compiled extensions and a pip entry point):
    what the layer holds and where it runs does not depend on torch being in it."""
    import hashlib
    import tarfile

    base = tmp_path / "base.tar"
    base_layer = _base_image(base)
    out = tmp_path / f"{SMALL_TARGET} image.tar"
    result = invoke("pack", "--target", SMALL_TARGET, "--format", "oci", "--base", str(base), "--out", str(out),
                    "--matrix", str(small_project / "envs" / "matrix.yaml"))
    assert result.exit_code == 0, result.output
    inspect = subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"], capture_output=True, text=True, timeout=300)
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    lock_sha = hashlib.sha256((small_project / "locks" / f"{SMALL_TARGET}.conda-lock.yml").read_bytes()).hexdigest()
    assert info["Architecture"] == "amd64" and len(info["Layers"]) == 2 and info["Layers"][0] == base_layer
    assert "PATH=/opt/envctl/env/bin:/usr/bin:/bin" in info["Env"] and "LANG=C.UTF-8" in info["Env"]
    assert "CONDA_PREFIX=/opt/envctl/env" in info["Env"]
    assert info["Labels"]["dev.envctl.lock.sha256"] == lock_sha
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"], capture_output=True,
                                    text=True, timeout=300, check=True).stdout)
    assert raw["annotations"]["dev.envctl.lock.sha256"] == lock_sha and "dev.envctl.certificate" in raw["annotations"]
    layout = tmp_path / "layout"
    copy = subprocess.run(["skopeo", "copy", f"oci-archive:{out}", f"oci:{layout}:edge"], capture_output=True,
                          text=True, timeout=600)
    assert copy.returncode == 0, copy.stderr
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    env_layer = layout / "blobs" / "sha256" / manifest["layers"][1]["digest"].split(":")[1]
    rootfs = tmp_path / "rootfs"
    with tarfile.open(env_layer) as tar:
        tar.extractall(rootfs, filter="tar")
    env = rootfs / "opt" / "envctl" / "env"
    assert files_containing(env, [PLACEHOLDER.encode()]) == []
    if can_unshare():  # run it where the image puts it: /opt/envctl/env, bind-mounted in a private namespace
        command = (f"mount -t tmpfs envctl-opt /opt && mkdir -p /opt/envctl/env && mount --bind '{env}' /opt/envctl/env && "
                   "/opt/envctl/env/bin/python -I -c 'import numpy, sys; print(\"OK\", sys.prefix)' && "
                   "head -2 /opt/envctl/env/bin/f2py")
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "OK /opt/envctl/env" in proc.stdout, proc.stdout + proc.stderr
        assert "#!/opt/envctl/env/bin/python3.11" in proc.stdout
