"""The bundle against hostile input: what it runs, deletes, writes and reads (issue 19).

Installs copies of the session's small bundle (conftest `small_pack_bundle`:
python, pip and numpy, no torch; the header and the installer do the same
for any env): hostile prefixes, planted folders and symlinks beside the
prefix, a re-packed env payload, damaged header claims, a damaged unpacked
tree checked by the installer itself, and signals during install. Signals
during `--certify` need a smoke run that is still running when they come:
those tests certify an install of the torch bundle (`pack_bundle`). Each test
names the class it covers; every waiting step has a timeout.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from envctl.host.platform import host_platform
from support import procs
from support.packing import bundle_leftovers

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only")]

META = "share/envctl-bundle"
DEAD_PID = 4_194_400  # above Linux's largest pid_max: never a running process
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", 'a"b', "a'b", "a\\b", "a\nb", "x;touch PWNED", "a|b", "a&b", "a*b",
           "a%b", "a!b", "~x", "a:b", "a\tb", "a\x1b[2Jb", "é", "a{b,c}", "a#b", "$HOME"]


def sh(bundle: Path, *args: str, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(bundle), *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def header_fields(bundle: Path) -> dict[str, str]:
    head = bundle.open("rb").read(8192).decode(errors="replace")
    return {m.group(1): m.group(2) for m in re.finditer(r"^([A-Z_0-9]+)=(\S*)", head, re.M)}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def installed(pack_bundle: Path, tmp_path_factory) -> Path:
    """The torch bundle, installed for these tests alone: its smoke run lasts long enough to be signalled.
    (Not the offline test's install: with it, the group SIGTERM case once hung past its 60 s under a full
    run's load, not reproduced alone; its own install is the configuration that held before.)"""
    prefix = tmp_path_factory.mktemp("installed") / "env"
    proc = sh(pack_bundle, "--prefix", str(prefix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prefix


@pytest.fixture(scope="module")
def small_installed(small_pack_bundle: Path, tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("small-installed") / "env"
    proc = sh(small_pack_bundle, "--prefix", str(prefix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prefix


@pytest.fixture(scope="module")
def extracted(small_pack_bundle: Path, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("extracted") / "x"
    proc = sh(small_pack_bundle, "--extract-only", str(dest))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


# ---------------------------------------------------------------- code in the prefix


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_prefix_with_code_in_it_is_refused_before_anything_is_written(small_pack_bundle: Path, tmp_path: Path,
                                                                       hostile: str):
    prefix = tmp_path / f"p{hostile}q" / "env"
    proc = sh(small_pack_bundle, "--prefix", str(prefix), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and "refusing the prefix" in proc.stderr, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stderr and list(tmp_path.iterdir()) == []  # nothing made, no PWNED


def test_the_installer_itself_refuses_a_prefix_with_code_in_it(extracted: Path, small_pack_bundle: Path, tmp_path: Path):
    """The second line of defence, for a header edited to skip its own check."""
    for hostile in ("$(touch PWNED)", "a'b", "a\nb"):
        prefix = tmp_path / f"p{hostile}" / "env"
        proc = subprocess.run(["python3", "-I", "-B", str(extracted / "env" / META / "installer.py"), "install",
                               "--root", str(extracted / "env"), "--prefix", str(prefix), "--manifest-sha256",
                               header_fields(small_pack_bundle)["MANIFEST_SHA256"], "--pkgs-checked"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 1 and "refusing the prefix" in proc.stderr, proc.stderr
        assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the whole payload is checked


def _rewrite(bundle: Path, out: Path, *, env_tar: Path | None = None, fields: dict[str, str] | None = None) -> Path:
    """A copy of `bundle` with header fields set and, given `env_tar`, its env payload re-packed from it (streamed)."""
    f = header_fields(bundle)
    hsize, esize = int(f["HEADER_SIZE"]), int(f["ENV_SIZE"])
    with open(bundle, "rb") as src:
        text = src.read(hsize).decode()
    fields = dict(fields or {})
    env_gz = out.with_name(out.name + ".env.gz")
    if env_tar is not None:
        with open(env_tar, "rb") as raw, gzip.open(env_gz, "wb", compresslevel=1) as gz:
            shutil.copyfileobj(raw, gz, 1 << 20)
        fields = {"ENV_SIZE": str(env_gz.stat().st_size), **fields}
    for key, value in fields.items():
        old = re.search(rf"^{key}=(\S*)( *)$", text, re.M)
        assert old, key
        width = len(old.group(1)) + len(old.group(2))
        text = text.replace(old.group(0), f"{key}={value.ljust(width)}", 1)
    assert len(text.encode()) == hsize
    with open(bundle, "rb") as src, open(out, "wb") as dst:
        dst.write(text.encode())
        src.seek(hsize)
        if env_tar is not None:
            with open(env_gz, "rb") as gz:
                shutil.copyfileobj(gz, dst, 1 << 20)
            src.seek(hsize + esize)
            env_gz.unlink()
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


@pytest.fixture(scope="module")
def env_tar(small_pack_bundle: Path, tmp_path_factory) -> Path:
    """The small bundle's env payload, uncompressed (streamed to disk once for the module)."""
    f = header_fields(small_pack_bundle)
    out = tmp_path_factory.mktemp("envtar") / "env.tar"
    with open(small_pack_bundle, "rb") as src:
        src.seek(int(f["HEADER_SIZE"]))
        with gzip.open(_Window(src, int(f["ENV_SIZE"])), "rb") as gz, open(out, "wb") as dst:
            shutil.copyfileobj(gz, dst, 1 << 20)
    return out


class _Window(io.RawIOBase):
    def __init__(self, handle, size: int) -> None:
        self.handle, self.left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.handle.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def _replace_member(env_tar: Path, out: Path, name: str, code: bytes) -> Path:
    """A copy of `env_tar` whose member `name` holds `code`, padded to the member's size (its header stays valid)."""
    with tarfile.open(env_tar) as tar:
        member = tar.getmember(name)
    assert len(code) + 2 <= member.size
    shutil.copyfile(env_tar, out)
    with open(out, "r+b") as handle:
        handle.seek(member.offset_data)
        handle.write(code + b"\n#" + b"x" * (member.size - len(code) - 2))
    return out


@pytest.mark.parametrize("member", [f"{META}/installer.py", "bin/python3.11"])
def test_a_repacked_env_payload_is_refused_before_any_of_it_runs(small_pack_bundle: Path, env_tar: Path, tmp_path: Path,
                                                                member: str):
    """The header hashes the env payload with POSIX tools; the payload's installer and python never run."""
    pwned = tmp_path / "PWNED"
    if member.endswith(".py"):
        code = f"import pathlib; pathlib.Path({str(pwned)!r}).touch()".encode()
    else:
        code = f"#!/bin/sh\ntouch '{pwned}'".encode()
    edited = _replace_member(env_tar, tmp_path / "env.tar", member, code)
    bad = _rewrite(small_pack_bundle, tmp_path / "bad.sh", env_tar=edited)
    edited.unlink()
    prefix = tmp_path / "env"
    proc = sh(bad, "--prefix", str(prefix))
    assert proc.returncode == 1 and "env payload has sha256" in proc.stderr, proc.stdout + proc.stderr
    assert not pwned.exists() and not prefix.exists() and bundle_leftovers(prefix) == []
    proc = sh(bad, "--extract-only", str(tmp_path / "look"))  # --extract-only runs the host's python3 on installer.py
    assert proc.returncode == 1 and not pwned.exists() and not (tmp_path / "look").exists()


@pytest.mark.parametrize("fields", [{"ENV_SHA256": "z" * 64}, {"MANIFEST_SHA256": "g" * 64},
                                    {"ENV_SIZE": "12x"}, {"HEADER_SIZE": "100"}, {"ENV_SHA256": "0" * 64},
                                    {"PKGS_SHA256": "1" * 64}])
def test_damaged_header_claims_are_refused(small_pack_bundle: Path, tmp_path: Path, fields: dict):
    bad = _rewrite(small_pack_bundle, tmp_path / "bad.sh", fields=fields)
    prefix = tmp_path / "env"
    proc = sh(bad, "--prefix", str(prefix), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("damaged" in proc.stderr or "first bad file" in proc.stderr) and "Traceback" not in proc.stderr
    assert not prefix.exists() and bundle_leftovers(prefix) == [] and not (tmp_path / "PWNED").exists()


def _path_without(tmp_path: Path, tools: set[str]) -> str:
    """A PATH holding every program of /usr/bin and /bin except `tools`."""
    shim = tmp_path / "bin"
    shim.mkdir()
    for folder in ("/usr/bin", "/bin"):
        for name in os.listdir(folder):
            if name not in tools and not (shim / name).exists():
                os.symlink(os.path.join(folder, name), shim / name)
    return str(shim)


def test_the_hash_check_falls_back_to_other_tools_and_refuses_without_any(small_pack_bundle: Path, tmp_path: Path):
    fallbacks = [t for t in ("shasum", "openssl") if shutil.which(t)]
    bad = _rewrite(small_pack_bundle, tmp_path / "bad.sh", fields={"PKGS_SHA256": "2" * 64})
    if fallbacks:
        path = _path_without(tmp_path, {"sha256sum"})
        proc = sh(bad, "--extract-only", str(tmp_path / "a"), env={"PATH": path})
        assert proc.returncode == 1 and "package payload has sha256" in proc.stderr, proc.stderr
    none = tmp_path / "none"
    none.mkdir()
    path = _path_without(none, {"sha256sum", "shasum", "openssl"})
    proc = sh(small_pack_bundle, "--extract-only", str(tmp_path / "b"), env={"PATH": path})
    assert proc.returncode == 1 and "no sha256sum, shasum or openssl" in proc.stderr
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- the installer's own checks


def _verify(extracted: Path, bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", "-I", "-B", str(extracted / "env" / META / "installer.py"), "verify",
                           "--root", str(extracted / "env"), "--manifest-sha256", header_fields(bundle)["MANIFEST_SHA256"]],
                          capture_output=True, text=True, timeout=600)


def test_installer_checks_every_file_against_the_manifest(extracted: Path, small_pack_bundle: Path):
    """Each kind of damage to an unpacked tree, one at a time, named by the installer (and then undone)."""
    env = extracted / "env"
    assert _verify(extracted, small_pack_bundle).returncode == 0
    victim = env / "lib" / "python3.11" / "os.py"
    original = victim.read_bytes()
    link = next(p for p in sorted(env.rglob("*")) if p.is_symlink() and p.resolve().is_file())
    link_target = os.readlink(link)

    def same_size_edit():
        victim.write_bytes(bytes([original[0] ^ 1]) + original[1:])

    def grown():
        victim.write_bytes(original + b"\n")

    def extra():
        (env / "lib" / "sitecustomize.py").write_text("import os\n")

    def retargeted():
        link.unlink()
        os.symlink("/etc/passwd", link)

    def replaced_by_symlink():
        victim.unlink()
        os.symlink("/etc/hostname", victim)

    def undo():
        for path in (victim, link, env / "lib" / "sitecustomize.py"):
            if path.is_symlink() or path.exists():
                path.unlink()
        victim.write_bytes(original)
        os.symlink(link_target, link)

    rel = "lib/python3.11/os.py"
    cases = [(same_size_edit, f"first bad file: {rel} (sha256 differs"), (grown, f"first bad file: {rel} ("),
             (extra, "lib/sitecustomize.py is not in its manifest"),
             (retargeted, f"first bad file: {link.relative_to(env)} (symlink"),
             (replaced_by_symlink, f"first bad file: {rel} (not a regular file)")]
    try:
        for damage, message in cases:
            damage()
            proc = _verify(extracted, small_pack_bundle)
            assert proc.returncode == 1 and message in proc.stderr, (damage.__name__, proc.stderr)
            undo()
    finally:
        undo()
    assert _verify(extracted, small_pack_bundle).returncode == 0


def test_installer_install_refuses_an_edited_file_and_writes_nothing(extracted: Path, small_pack_bundle: Path, tmp_path: Path):
    env = extracted / "env"
    victim = env / "lib" / "python3.11" / "os.py"
    original = victim.read_bytes()
    staging = tmp_path / "staging"
    shutil.copytree(env, staging, symlinks=True)
    (staging / "lib" / "python3.11" / "os.py").write_bytes(original.replace(b"import", b"imp0rt", 1))
    prefix = tmp_path / "env"
    proc = subprocess.run(["python3", "-I", "-B", str(staging / META / "installer.py"), "install", "--root", str(staging),
                           "--prefix", str(prefix), "--manifest-sha256", header_fields(small_pack_bundle)["MANIFEST_SHA256"],
                           "--pkgs-checked", "--bundle-id", "x"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "first bad file: lib/python3.11/os.py (sha256 differs" in proc.stderr, proc.stderr
    assert not prefix.exists()


# ---------------------------------------------------------------- leftovers and planted files beside the prefix


def _marker(folder: Path, prefix: Path, host: str, *pids: str) -> Path:
    folder.mkdir()
    lines = ["envctl-bundle-staging 1", f"prefix={prefix}", f"host={host}", *pids]
    (folder / "envctl-staging").write_text("\n".join(lines) + "\n")
    (folder / "data.txt").write_text("kept?")
    return folder


def test_leftover_cleanup_removes_only_folders_it_can_prove_are_its_own(small_pack_bundle: Path, tmp_path: Path):
    prefix = tmp_path / "env"
    host = os.uname().nodename
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        keep = {
            "user folder": tmp_path / f".{prefix.name}.staging-photos",
            "dead pid, no marker": tmp_path / f".{prefix.name}.staging-{DEAD_PID}",
            "log file": tmp_path / f".{prefix.name}.staging-{DEAD_PID}.log",
            "symlink to a user folder": tmp_path / f".{prefix.name}.staging-link",
        }
        keep["user folder"].mkdir()
        (keep["user folder"] / "a.jpg").write_text("jpeg")
        keep["dead pid, no marker"].mkdir()
        (keep["dead pid, no marker"] / "b.txt").write_text("mine")
        keep["log file"].write_text("my notes")
        os.symlink(precious, keep["symlink to a user folder"])
        keep["another prefix"] = _marker(tmp_path / f".{prefix.name}.staging-other", tmp_path / "elsewhere", host,
                                         f"pid={DEAD_PID}")
        keep["another host"] = _marker(tmp_path / f".{prefix.name}.staging-host", prefix, host + "-x", f"pid={DEAD_PID}")
        keep["a live installer"] = _marker(tmp_path / f".{prefix.name}.staging-live", prefix, host, f"pid={DEAD_PID}",
                                           f"installer_pid={sleeper.pid}")
        stale = _marker(tmp_path / f".{prefix.name}.staging-stale", prefix, host, f"pid={DEAD_PID}",
                        f"installer_pid={DEAD_PID + 1}")
        proc = sh(small_pack_bundle, "--prefix", str(prefix))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for what, path in keep.items():
            assert path.is_symlink() or path.exists(), f"the install deleted a {what}"
        assert (precious / "thesis.tex").read_text() == "years of work" and (keep["user folder"] / "a.jpg").exists()
        assert not stale.exists(), "a stale staging folder of this prefix was left"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_second_install_keeps_a_running_first_install_whose_shell_is_gone(small_pack_bundle: Path, tmp_path: Path):
    """Liveness is the installer's own process: kill the first install's sh, keep its python running (stopped)."""
    prefix = tmp_path / "env"
    # No pipes: the stopped installer would hold them open.
    first = subprocess.Popen(["sh", str(small_pack_bundle), "--prefix", str(prefix)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    needle = "installer.py install --root "
    installer = wait_for(lambda: first.poll() is not None or
                         procs.pids_running(needle, str(prefix)),
                         600, "the first install's python installer")
    assert first.poll() is None, "the first install ended before its installer was seen"
    installer = installer[0]
    # Under way: the staging folder's marker names the installer (the header writes it as it starts it).
    wait_for(lambda: any(f"installer_pid={installer}\n" in marker.read_text()
                         for marker in tmp_path.glob(f".{prefix.name}.staging-*/envctl-staging")), 60, "the marker")
    try:
        os.kill(installer, signal.SIGSTOP)
        first.kill()  # its sh only
        first.wait(timeout=60)  # reaped: a zombie would still answer kill -0
        staging = bundle_leftovers(prefix)
        assert staging, "the first install had no staging folder"
        second = sh(small_pack_bundle, "--prefix", str(prefix))
        assert second.returncode == 0, second.stdout + second.stderr
        assert all((tmp_path / name).exists() for name in staging), "the second install deleted a running install's folder"
    finally:
        os.kill(installer, signal.SIGCONT)
    wait_for(lambda: installer not in procs.pids_running(needle, str(prefix)), 600, "the first installer")
    python = subprocess.run([str(prefix / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, timeout=120)
    assert python.stdout.strip() == str(prefix)


def test_nothing_is_written_through_symlinks_planted_beside_the_prefix(small_pack_bundle: Path, tmp_path: Path):
    """The old `.log` / `.sum` names for every pid the install may get, each a symlink to a user's file."""
    prefix = tmp_path / "env"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    planted = []
    for pid in range(last + 1, last + 3000):
        for suffix in (".log", ".sum"):
            link = tmp_path / f".{prefix.name}.staging-{pid}{suffix}"
            os.symlink(victim, link)
            planted.append(link)
    proc = sh(small_pack_bundle, "--prefix", str(prefix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert victim.read_text() == "precious"
    assert all(link.is_symlink() for link in planted), "the install removed files it did not make"


# ---------------------------------------------------------------- --certify


def test_certify_writes_its_certificate_without_following_planted_symlinks(small_installed: Path,
                                                                          small_pack_bundle: Path, tmp_path: Path):
    """No torch: the certificate is a failed one (rc 1), written all the same."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "cert.json"
    os.symlink(victim, f"{out}.tmp")
    os.symlink(victim, out)
    proc = sh(small_pack_bundle, "--prefix", str(small_installed), "--certify", "--cert-out", str(out), "--timeout", "600")
    assert proc.returncode in (0, 1) and "device certificate" in proc.stdout, proc.stdout + proc.stderr
    assert victim.read_text() == "precious" and not out.is_symlink() and '"certified": "device"' in out.read_text()


@pytest.mark.parametrize("value", ["nan", "0", "-5", "inf", "1.5", "abc", "", "-0", "00"])
def test_device_timeout_is_refused_as_envctl_refuses_it(small_pack_bundle: Path, small_installed: Path, tmp_path: Path,
                                                        value: str):
    from typer.testing import CliRunner

    from envctl.cli import app

    ours = CliRunner().invoke(app, ["certify", "--target", "x", "--timeout", value])
    assert ours.exit_code == 2 and "Invalid value for '--timeout'" in ours.output
    prefix = tmp_path / "env"
    proc = sh(small_pack_bundle, "--prefix", str(prefix), "--certify", "--timeout", value, timeout=900, cwd=tmp_path)
    assert proc.returncode == 2 and "Invalid value for '--timeout'" in proc.stderr, proc.stderr
    assert not prefix.exists() and bundle_leftovers(prefix) == []
    direct = subprocess.run([str(small_installed / "bin" / "python"), "-I", str(small_installed / META / "devcert.py"), "--prefix",
                             str(small_installed), f"--timeout={value}"], capture_output=True, text=True, timeout=120)
    assert direct.returncode == 2 and "Invalid value for '--timeout'" in direct.stderr, direct.stderr


@pytest.mark.parametrize("how", ["SIGINT-group", "SIGTERM-shell", "SIGHUP-shell", "SIGTERM-group", "SIGTERM-devcert"])
def test_a_signal_during_certify_stops_the_smoke_run_without_a_traceback(installed: Path, pack_bundle: Path,
                                                                        tmp_path: Path, how: str):
    name, whom = how.split("-")
    out = tmp_path / "cert.json"
    proc = subprocess.Popen(["sh", str(pack_bundle), "--prefix", str(installed), "--certify", "--cert-out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    runner_cmd = f"{installed}/{META}/smoke/runner.py"
    runners: list[int] = []
    try:
        runners = wait_for(lambda: procs.pids_running(runner_cmd), 300, "the smoke runner")
        signum = getattr(signal, name)
        if whom == "group":
            os.killpg(proc.pid, signum)
        elif whom == "shell":
            os.kill(proc.pid, signum)
        else:
            os.kill(procs.pids_running(f"{installed}/{META}/devcert.py")[0], signum)
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # seen once under a full run's load: say which process hangs where
            raise AssertionError("the bundle did not end within 60 s of the signal:\n"
                                 + procs.describe(procs.session_members(proc.pid) + procs.pids_running(runner_cmd))) from None
        wait_for(lambda: not procs.pids_running(runner_cmd), 15, "the smoke runner to be stopped")
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert proc.returncode != 0 and not out.exists()
    finally:
        for pid in runners + procs.pids_running(runner_cmd):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_to_the_installer_leaves_nothing_and_prints_no_traceback(small_pack_bundle: Path, tmp_path: Path, name: str):
    prefix = tmp_path / "env"
    proc = subprocess.Popen(["sh", str(small_pack_bundle), "--prefix", str(prefix)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: proc.poll() is not None or procs.pids_running("installer.py install --root", str(prefix)), 600,
             "the python installer")
    assert proc.poll() is None, "the install ended before its installer was seen"
    os.killpg(proc.pid, getattr(signal, name))  # what Ctrl-C (or a closing terminal, or a service stop) does
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not prefix.exists() and bundle_leftovers(prefix) == []
