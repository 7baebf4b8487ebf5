"""Fault suite: envctl killed or out of disk during lock and create, racing itself, or certifying a crashing target.

Everything here is real: envctl runs in a subprocess and is SIGKILLed at
named points of `lock` and `create` (where a point is an instant rather than
a phase, the child pauses there through envctl's own progress events or at the
rename call, so the kill lands exactly there); disks are really full (a small
tmpfs, or RLIMIT_FSIZE where mounting is not allowed). After each fault the
previous lock or env must be byte-for-byte what it was, nothing half-written
may be left where a reader would take it for real, and running the command
again must complete. (Faults inside a create's disk and caches: test_cache_faults.py;
a crashing, hanging or lying runner: tests/certify/test_runner_faults.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from envctl.core.paths import default_prefix
from envctl.create.build import create_env, env_state
from envctl.lock.solve import check_locks, lock_target, read_lock_meta
from envctl.matrix.loader import load_matrix
from envctl.host.platform import host_platform
from envctl.lock.render import render_target
from support import procs
from support.diskfaults import fill, mounted_tmpfs
from support.faults import (FAULT_MODELS, Child, child_env, envctl_cmd, leftovers, limit_file_size, run_env_python,
                            write_matrix)
from support.project import pip_target

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

# ---------------------------------------------------------------- the project


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_channel):
    """A project with a lock-only target, an env target, and targets for the race and the crashing runner."""
    root = tmp_path_factory.mktemp("faults")
    (root / "faultmods.py").write_text(textwrap.dedent(FAULT_MODELS))
    targets = {
        "lockme": pip_target(local_channel, description="baseline"),
        "env": pip_target(local_channel),
        "slow": pip_target(local_channel, models=["faultmods:slow"]),
        "crashy": pip_target(local_channel, models=["faultmods:segv"]),
        "fine": pip_target(local_channel, models=["cnn"]),
    }
    matrix = write_matrix(root, targets)
    loaded = load_matrix(matrix)
    for name in ("env", "slow", "crashy", "fine"):
        render_target(root, loaded.targets[name], matrix)
        lock_target(root, loaded.targets[name])
    proc = subprocess.run(envctl_cmd("lock", "lockme", "--matrix", str(matrix)), env=child_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"root": root, "matrix": matrix, "targets": targets, "channel": local_channel}


@pytest.fixture(scope="module")
def env_prefix(project):
    result = create_env(project["root"], "env")
    assert result.action in ("created", "unchanged")
    return result.prefix


# ---------------------------------------------------------------- SIGKILL during lock

# envctl's lock with a pause at one step of writing the file (os-level hooks, so they hold wherever
# the writing code lives): before the temp file is created, after the bytes are written but before
# they are fsynced, or just before the rename. Each point is reached for sure: the child says so.
LOCK_PAUSE = r"""
import os, sys, tempfile, time
point = os.environ["ENVCTL_TEST_PAUSE"]

def pause(what):
    print("envctl-test: paused " + what, flush=True)
    time.sleep(600)

real_mkstemp, real_fsync, real_replace = tempfile.mkstemp, os.fsync, os.replace

def mkstemp(*args, **kwargs):
    if point == "mkstemp" and str(kwargs.get("prefix", "")).startswith(".lockme.conda-lock.yml."):
        pause("before the temp file")
    return real_mkstemp(*args, **kwargs)

def fsync(fd):
    if point == "fsync" and ".lockme.conda-lock.yml." in os.readlink("/proc/self/fd/%d" % fd):
        pause("with the bytes written, before fsync")
    return real_fsync(fd)

def replace(src, dst, *args, **kwargs):
    if point == "replace" and str(dst).endswith("lockme.conda-lock.yml"):
        pause("before the rename")
    return real_replace(src, dst, *args, **kwargs)

tempfile.mkstemp, os.fsync, os.replace = mkstemp, fsync, replace
from envctl.cli import main
sys.argv = ["envctl", *sys.argv[1:]]
main()
"""
PAUSES = {"resolved, before writing": "mkstemp", "mid-write, before fsync": "fsync", "just before the rename": "replace"}


@pytest.mark.parametrize("point", ["after render, solving", "uv resolving", *PAUSES])
def test_sigkill_during_lock_keeps_previous_lock(project, point):
    root, matrix = project["root"], project["matrix"]
    locks = root / "locks"
    lock = locks / "lockme.conda-lock.yml"
    env_file = root / "envs" / "lockme" / "environment.yml"
    before = lock.read_bytes()
    rendered_before = env_file.read_text()
    # A new definition of the target, so the lock that would be written differs from the one on disk.
    targets = dict(project["targets"], lockme=dict(project["targets"]["lockme"], description=f"killed {point}"))
    write_matrix(root, targets)
    project["targets"] = targets

    args = ("lock", "lockme", "--matrix", str(matrix))
    uv_pids: list[int] = []
    with procs.subreaper():
        if point in PAUSES:
            child = Child([sys.executable, "-c", LOCK_PAUSE, *args], env=child_env(ENVCTL_TEST_PAUSE=PAUSES[point]))
            child.wait_for("envctl-test: paused")
        else:
            child = Child(envctl_cmd(*args))
            deadline = time.monotonic() + 300
            if point == "after render, solving":
                while env_file.read_text() == rendered_before:
                    assert child.proc.poll() is None and time.monotonic() < deadline, child.output
                    time.sleep(0.002)
            else:  # uv resolving: stopped, so it cannot finish on its own before envctl dies
                while not uv_pids:
                    assert child.proc.poll() is None and time.monotonic() < deadline, child.output
                    uv_pids = [pid for pid, cmd in procs.children_of(child.proc.pid) if " pip compile " in cmd]
                    time.sleep(0.002)
                procs.stop(uv_pids)
        child.kill()  # asserts the point was reached with envctl still running
        statuses = procs.reap_adopted(uv_pids)
    # The resolver envctl started does not run on as an orphan: it died with envctl (SIGKILL), not of its own.
    assert all(procs.killed_by_sigkill(s) for s in statuses.values()), statuses

    assert lock.read_bytes() == before, "a killed lock must leave the previous lock byte-identical"
    read_lock_meta(lock)  # still parseable
    temps = sorted(p.name for p in locks.iterdir() if p.name != lock.name and not p.name.endswith(".conda-lock.yml"))
    if point in ("mid-write, before fsync", "just before the rename"):
        # SIGKILL gives no chance to clean up: the temp file stays, hidden and never read as a lock.
        assert len(temps) == 1 and temps[0].startswith(".lockme.conda-lock.yml.") and temps[0].endswith(".tmp"), temps
    else:
        assert temps == [], temps

    again = subprocess.run(envctl_cmd(*args), env=child_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert lock.read_bytes() != before
    assert check_locks(root, [load_matrix(matrix).targets["lockme"]]) == []
    # The rerun removed the dead writer's temp file.
    assert sorted(p.name for p in locks.iterdir() if p.name.startswith(".lockme")) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_during_lock_removes_its_temp_files_and_keeps_the_previous_lock(project, tmp_path, signum):
    """Unlike SIGKILL, SIGTERM/SIGHUP can be cleaned up after: no envctl-pip-* (or any envctl-*) left in $TMPDIR."""
    root, matrix = project["root"], project["matrix"]
    lock = root / "locks" / "lockme.conda-lock.yml"
    before = lock.read_bytes()
    targets = dict(project["targets"], lockme=dict(project["targets"]["lockme"], description=f"signalled {signum}"))
    write_matrix(root, targets)
    project["targets"] = targets
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    child = Child(envctl_cmd("lock", "lockme", "--matrix", str(matrix)), env=child_env(TMPDIR=str(tmpdir)))
    deadline = time.monotonic() + 120
    uv_pids: list[int] = []
    while not uv_pids:
        assert child.proc.poll() is None and time.monotonic() < deadline, child.output
        uv_pids = [pid for pid, cmd in procs.children_of(child.proc.pid) if " pip compile " in cmd]
        time.sleep(0.002)
    assert list(tmpdir.glob("envctl-pip-*"))
    os.kill(child.proc.pid, signum)
    assert child.finish(timeout=60) == 128 + signum, child.output
    assert "Traceback" not in child.output and "interrupted" in child.output
    assert procs.wait_dead(uv_pids, ceiling=10) == []
    assert list(tmpdir.glob("envctl-*")) == [], "temp folders left behind"
    assert lock.read_bytes() == before


# ---------------------------------------------------------------- SIGKILL during create

CREATE_CHILD = r"""
import os, shutil, sys, time
from pathlib import Path
from envctl.create.build import create_env

root, target, prefix, pause, force = sys.argv[1:6]
swapped = []

def progress(event, **info):
    print("event", event, round(time.time(), 3), flush=True)
    if event == "swap":
        swapped.append(True)
    if event == pause:
        time.sleep(600)

real_rmtree = shutil.rmtree

def rmtree(path, *args, **kwargs):
    if pause == "removing the old env" and swapped and "~staging-" in str(path):
        print("event removing the old env", flush=True)
        time.sleep(600)
    return real_rmtree(path, *args, **kwargs)

shutil.rmtree = rmtree
result = create_env(Path(root), target, prefix=Path(prefix), force=force == "force", progress=progress)
print("result", result.action, result.waited_for_lock, flush=True)
"""


def create_child(root: Path, target: str, prefix: Path, pause: str = "", *, force: bool = True, env=None) -> Child:
    return Child([sys.executable, "-c", CREATE_CHILD, str(root), target, str(prefix), pause,
                  "force" if force else "no"], env=env)


@pytest.mark.parametrize("point", ["conda-package", "swap", "removing the old env"])
def test_sigkill_during_create_keeps_a_whole_env(project, env_prefix, point):
    """Mid-link (after the first conda package), just before the swap, and after it while the old env is deleted.

    (Killed as the staging folder appears and while uv installs: tests/create/test_create.py.)
    """
    root = project["root"]
    before = env_state(env_prefix)
    inode = env_prefix.stat().st_ino
    child = create_child(root, "env", env_prefix, point)
    child.wait_for(f"event {point}")
    child.kill()
    assert [name.rsplit("-", 1)[0] for name in leftovers(env_prefix)] == ["env~staging"]
    state = env_state(env_prefix)
    if point == "removing the old env":
        # Swapped already: the new env is whole, the old one sits in the staging name, half deleted or not.
        assert env_prefix.stat().st_ino != inode and state["lock_sha256"] == before["lock_sha256"]
    else:
        assert env_prefix.stat().st_ino == inode and state == before
    assert run_env_python(env_prefix, "import numpy, onnx; print('ok')") == "ok"

    again = create_env(root, "env")
    assert again.action == "unchanged"  # the env at the prefix matches the lock; the leftover is gone
    assert leftovers(env_prefix) == []
    rebuilt = create_env(root, "env", force=True)
    assert rebuilt.action == "rebuilt" and leftovers(env_prefix) == []


@pytest.mark.parametrize(("phase", "delay", "not_reached"), [("conda", 0.1, "event verify"), ("pip", 1.0, "event check")])
def test_sigkill_while_fetching_into_empty_caches(project, tmp_path, phase, delay, not_reached):
    """Killed while rattler or uv fill an empty package cache: the rerun with that cache completes, verified.
    Each case empties only the cache of the part it kills (the other part's comes warm from this
    machine's): a cold torch is fetched once, by the case that interrupts it."""
    emptied = {"conda": "RATTLER_CACHE_DIR", "pip": "UV_CACHE_DIR"}[phase]
    caches = child_env(**{emptied: str(tmp_path / "cache")}, ENVCTL_CACHE_DIR=str(tmp_path / "envctl"))
    prefix = tmp_path / "cold-env"
    child = create_child(project["root"], "env", prefix, env=caches)
    child.wait_for(f"event {phase}")
    time.sleep(delay)
    child.kill()
    assert not_reached not in child.output, child.output  # killed while that part was still being fetched
    assert not prefix.exists(), "nothing may appear at the prefix before the env is complete"
    assert [name.rsplit("-", 1)[0] for name in leftovers(prefix)] == ["cold-env~staging"]

    rerun = create_child(project["root"], "env", prefix, env=caches)
    assert rerun.finish() == 0, rerun.output
    assert "result created" in rerun.output
    assert leftovers(prefix) == []
    assert run_env_python(prefix, "import torch, onnxruntime; print(torch.__version__.split('+')[0])") == "2.13.0"


# ---------------------------------------------------------------- unwritable prefix, full disk


def test_prefix_under_a_file_is_a_clear_error(project, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the prefix's parent should be\n")
    proc = subprocess.run(envctl_cmd("create", "--target", "env", "--prefix", str(blocker / "env"),
                                     "--matrix", str(project["matrix"])),
                          env=child_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "cannot create the env" in out and str(blocker) in out, out
    assert blocker.read_text() == "a file where the prefix's parent should be\n"


def test_read_only_filesystem_is_a_clear_error(project, tmp_path):
    # Tests run as root, which ignores permission bits but not a read-only mount.
    disk = tmp_path / "ro"
    with mounted_tmpfs(disk, "1m", read_only=True):
        proc = subprocess.run(envctl_cmd("create", "--target", "env", "--prefix", str(disk / "env"),
                                         "--matrix", str(project["matrix"])),
                              env=child_env(), capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "Traceback" not in out, out
        assert "cannot create the env" in out and "Read-only file system" in out, out
        assert os.listdir(disk) == []


def _relock_args(project, tag: str) -> tuple[str, ...]:
    targets = dict(project["targets"], lockme=dict(project["targets"]["lockme"], description=tag))
    write_matrix(project["root"], targets)
    project["targets"] = targets
    return ("lock", "lockme", "--matrix", str(project["matrix"]))


def _assert_lock_refused(proc, lock: Path, before: bytes, reason: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert reason in out, out
    assert lock.read_bytes() == before
    assert sorted(p.name for p in lock.parent.iterdir() if p.name.startswith(".lockme")) == []


def test_full_disk_during_lock_keeps_the_previous_lock(project, tmp_path):
    locks = project["root"] / "locks"
    lock = locks / "lockme.conda-lock.yml"
    before = lock.read_bytes()
    aside = tmp_path / "locks-aside"
    shutil.copytree(locks, aside)
    try:
        with mounted_tmpfs(locks, "1m"):
            for item in aside.iterdir():
                shutil.copy2(item, locks / item.name)
            fill(locks)
            proc = subprocess.run(envctl_cmd(*_relock_args(project, "full disk")), env=child_env(),
                                  capture_output=True, text=True, timeout=600)
            _assert_lock_refused(proc, lock, before, "No space left on device")
    finally:
        for item in aside.iterdir():
            shutil.copy2(item, locks / item.name)
    assert lock.read_bytes() == before


LOCK_LIMIT_AT_WRITE = r"""
import resource, signal, sys
import envctl.lock.solve
real_write = envctl.lock.solve.write_bytes_atomic

def write_bytes_atomic(path, data):
    # The disk fills up just as the new lock is written.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(data) // 2, resource.RLIM_INFINITY))
    return real_write(path, data)

envctl.lock.solve.write_bytes_atomic = write_bytes_atomic
from envctl.cli import main
sys.argv = ["envctl", *sys.argv[1:]]
main()
"""


def test_file_size_limit_at_the_lock_write_keeps_the_previous_lock(project):
    """Where no tmpfs can be mounted: RLIMIT_FSIZE set just before the write makes it fail (EFBIG) half way."""
    lock = project["root"] / "locks" / "lockme.conda-lock.yml"
    before = lock.read_bytes()
    proc = subprocess.run([sys.executable, "-c", LOCK_LIMIT_AT_WRITE, *_relock_args(project, "limit at write")],
                          env=child_env(), capture_output=True, text=True, timeout=600)
    _assert_lock_refused(proc, lock, before, "File too large")
    assert f"cannot write {lock}" in proc.stdout + proc.stderr


def test_file_size_limit_from_the_start_of_lock_keeps_the_previous_lock(project):
    """The limit hits whatever write comes first (uv's cache here, which dies of SIGXFSZ): still a clean refusal."""
    lock = project["root"] / "locks" / "lockme.conda-lock.yml"
    before = lock.read_bytes()
    proc = subprocess.run(envctl_cmd(*_relock_args(project, "limit from the start")), env=child_env(),
                          capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size(len(before) // 2))
    out = proc.stdout + proc.stderr
    assert "File too large" in out or "SIGXFSZ (File size limit exceeded)" in out, out
    _assert_lock_refused(proc, lock, before, "")
    ok = subprocess.run(envctl_cmd("lock", "lockme", "--matrix", str(project["matrix"])), env=child_env(),
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# ---------------------------------------------------------------- create racing certify


def test_create_waits_for_a_certification_running_in_the_env(project, tmp_path):
    root, matrix = project["root"], project["matrix"]
    prefix = default_prefix(root, "slow")
    create_env(root, "slow")
    marker, release = tmp_path / "model-sleeping", tmp_path / "model-release"
    env = child_env(FAULT_MARKER=str(marker), FAULT_RELEASE=str(release))
    certify = Child(envctl_cmd("certify", "--target", "slow", "--matrix", str(matrix)), env=env)
    deadline = time.monotonic() + 300
    while not marker.exists():  # the runner is inside the env, in the model's pause
        assert certify.proc.poll() is None and time.monotonic() < deadline, certify.output
        time.sleep(0.05)
    create = create_child(root, "slow", prefix)  # --force: it would swap and delete the env under the runner
    create.wait_for("event waiting", timeout=60)
    assert certify.proc.poll() is None, "the smoke run is still paused in the model"
    release.touch()
    assert certify.finish() == 0, certify.output
    certified_at = time.time()
    assert create.finish() == 0, create.output
    assert "result rebuilt True" in create.output
    swap_at = float(next(line for line in create.out if line.startswith("event swap")).split()[2])
    # The swap waited for the smoke run (the certify process itself ends a moment after releasing the env).
    assert swap_at > certified_at - 5, (swap_at, certified_at)
    cert = json.loads((root / "certs" / "slow.json").read_text())
    assert cert["result"] == "passed", cert.get("failure")


def test_certify_waits_for_a_create_in_progress(project):
    root, matrix = project["root"], project["matrix"]
    prefix = default_prefix(root, "slow")
    create = create_child(root, "slow", prefix, "swap")  # holds the env's lock, paused before its swap
    create.wait_for("event swap")
    certify = Child(envctl_cmd("certify", "--target", "slow", "--matrix", str(matrix)), env=child_env(FAULT_SLEEP="0"))
    certify.wait_for("waiting", timeout=120)  # its progress line: a create holds the env's lock
    assert certify.proc.poll() is None, "certify must wait while a create holds the env"
    create.kill()  # the create dies before its swap; certify then finds the previous, whole env
    assert certify.finish() == 0, certify.output
    assert json.loads((root / "certs" / "slow.json").read_text())["result"] == "passed"
    assert leftovers(prefix) == []


def test_crashing_target_is_classified_and_the_next_target_still_runs(project):
    """Through the CLI on real envs (`certify crashy fine`, one run): a segfaulting model fails its target only."""
    proc = subprocess.run(envctl_cmd("certify", "crashy", "fine", "-j", "1", "--json", "--matrix", str(project["matrix"])),
                          env=child_env(), capture_output=True, text=True, timeout=1200)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    suite = json.loads(proc.stdout)
    outcomes = {t["target"]: t for t in suite["targets"]}
    assert outcomes["crashy"]["outcome"] == "failed" and outcomes["fine"]["outcome"] == "passed", outcomes
    crashy = json.loads((project["root"] / "certs" / "crashy.json").read_text())
    assert crashy["result"] == "failed" and crashy["failure"]["class"] == "runner_crash"
    assert "SIGSEGV" in crashy["failure"]["message"] and "faultmods:segv" in crashy["failure"]["message"]
    assert json.loads((project["root"] / "certs" / "fine.json").read_text())["result"] == "passed"
