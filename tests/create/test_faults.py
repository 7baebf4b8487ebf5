"""Fault suite: envctl killed, out of disk, facing a changed cache, racing itself, or a crashing runner.

Everything here is real: envctl runs in a subprocess and is SIGKILLed at
named points of `lock` and `create` (where a point is an instant rather than
a phase, the child pauses there through envctl's own progress events or at the
rename call, so the kill lands exactly there); disks are really full (a small
tmpfs, or RLIMIT_FSIZE where mounting is not allowed); caches are really
changed on disk. After each fault the previous lock or env must be byte-for-
byte what it was, nothing half-written may be left where a reader would take
it for real, and running the command again must complete.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from envctl.certify.certify import run_smoke
from envctl.cli.exitcodes import exit_code
from envctl.core.paths import default_prefix
from envctl.create.build import create_env, env_state
from envctl.core.errors import EnvctlError
from envctl.lock.solve import check_locks, lock_target, read_lock_meta
from envctl.matrix.loader import load_matrix
from envctl.host.platform import host_platform
from envctl.lock.render import render_target
from support import lockfactory as lf
from support import procs
from support.diskfaults import fill, mounted_tmpfs, read_only_bind
from support.local_channel import PY_MM
from support.project import pip_target

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

SRC = str(Path(__file__).resolve().parents[2] / "src")

FAULT_MODELS = '''
import ctypes
import os
import signal
import subprocess
import sys
import time


def segv():
    ctypes.string_at(0)  # a NULL read in native code


def selfkill():
    os.kill(os.getpid(), signal.SIGSEGV)


def hang():
    # A hang that also leaves a grandchild behind: the timeout must take both down.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(os.environ["FAULT_MARKER"], "w") as handle:
        handle.write(str(child.pid))
    time.sleep(3600)


def exit0():
    sys.stdout.write("garbage \\x00\\xff {not: json\\n")
    sys.stdout.flush()
    os._exit(0)  # "success", without a result


def linger():
    # A finished run that leaves a process holding the runner's stdout open.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    import torch

    return torch.nn.Linear(4, 2), (torch.zeros(2, 4),)


def slow():
    import torch

    marker = os.environ.get("FAULT_MARKER")
    if marker:
        open(marker, "w").close()
    release = os.environ.get("FAULT_RELEASE")
    if release:  # paused until the test has seen what it waits for (a ceiling, not a measurement)
        deadline = time.monotonic() + 300
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
    else:
        time.sleep(float(os.environ.get("FAULT_SLEEP", "8")))
    # Touch the env again after the pause, as a real model would (a module nobody imported yet).
    import torch.utils.benchmark  # noqa: F401

    return torch.nn.Linear(4, 2), (torch.zeros(2, 4),)
'''


# ---------------------------------------------------------------- helpers


class Child:
    """A subprocess whose merged output is read line by line as it comes."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, preexec_fn=None):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env or child_env(), preexec_fn=preexec_fn)
        self.lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def output(self) -> str:
        return "".join(self.out)

    def wait_for(self, text: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait(timeout=60)}) before {text!r}:\n{self.output}")
            if text in line:
                return line

    def kill(self) -> None:
        assert self.proc.poll() is None, f"finished before it could be killed:\n{self.output}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def finish(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 10
        while self.lines.queue and self.lines.queue[-1] is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        return code


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = SRC
    env.update(extra)
    return env


def envctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "envctl", *args]


def processes_running(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and procs.alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def leftovers(prefix: Path) -> list[str]:
    return sorted(p.name for p in prefix.parent.iterdir() if p.name.startswith(prefix.name + "~") and p.name != prefix.name + "~lock")


def run_env_python(prefix: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(prefix / "bin" / "python"), "-I", "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def limit_file_size(limit: int):
    """preexec_fn: writes beyond `limit` bytes fail with EFBIG (SIGXFSZ ignored, as a full disk would fail them)."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def write_matrix(root: Path, targets: dict) -> Path:
    path = root / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}, sort_keys=False))
    return path


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
    """Killed while rattler or uv fill an empty package cache: the rerun with that cache completes, verified."""
    caches = child_env(RATTLER_CACHE_DIR=str(tmp_path / "rattler"), UV_CACHE_DIR=str(tmp_path / "uv"),
                       ENVCTL_CACHE_DIR=str(tmp_path / "envctl"))
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


def test_read_only_prefix_keeps_the_previous_env(small_lock, tmp_path):
    folder = tmp_path / "envs"
    prefix = folder / "env"
    create_env(small_lock, "small", prefix=prefix)
    before = env_state(prefix)
    with read_only_bind(folder):
        with pytest.raises(EnvctlError) as err:
            create_env(small_lock, "small", prefix=prefix, force=True)
        assert "Read-only file system" in str(err.value) and exit_code(err.value) == 1, str(err.value)
        assert env_state(prefix) == before
        assert run_env_python(prefix, "import pip; print('ok')") == "ok"
    assert leftovers(prefix) == []


@pytest.fixture(scope="module")
def small_lock(tmp_path_factory, local_channel):
    """A conda-only lock (python, pip): an 80 MB env, small enough for a tmpfs."""
    root = tmp_path_factory.mktemp("small")
    lf.write_lock(root / "locks" / "small.conda-lock.yml", target="small", channel=local_channel,
                  platforms=["linux-64"], packages=lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"]))
    return root


def test_full_disk_during_create_keeps_the_previous_env(small_lock, tmp_path):
    disk = tmp_path / "disk"
    with mounted_tmpfs(disk, "130m"):
        prefix = disk / "env"
        first = create_env(small_lock, "small", prefix=prefix)  # copied, not hardlinked: another filesystem
        assert first.size_bytes > 60 * 2**20
        before = env_state(prefix)
        with pytest.raises(EnvctlError) as err:
            create_env(small_lock, "small", prefix=prefix, force=True)  # a second copy cannot fit
        assert "No space left on device" in str(err.value), str(err.value)
        assert exit_code(err.value) == 1
        assert env_state(prefix) == before
        assert run_env_python(prefix, "import json, pip; print('ok')") == "ok"
        assert leftovers(prefix) == []  # the half-built staging folder is gone, its space free again
        assert shutil.disk_usage(disk).free > 40 * 2**20


def test_file_size_limit_during_create_keeps_the_previous_env(small_lock, tmp_path):
    """Where no tmpfs can be mounted: RLIMIT_FSIZE makes big writes fail (EFBIG) as a full disk would."""
    prefix = tmp_path / "env"
    create_env(small_lock, "small", prefix=prefix)
    before = env_state(prefix)
    code = (
        "import sys; from pathlib import Path; from envctl.create import create_env; from envctl.core.errors import EnvctlError\n"
        "from envctl.cli.exitcodes import exit_code\n"
        "try:\n"
        f"    create_env(Path({str(small_lock)!r}), 'small', prefix=Path({str(prefix)!r}), force=True)\n"
        "except EnvctlError as exc:\n"
        "    print('ENVCTL-ERROR', exc); sys.exit(exit_code(exc))\n"
    )
    # An empty package cache: extracting python's archive writes files of many MB.
    env = child_env(RATTLER_CACHE_DIR=str(tmp_path / "rattler"), ENVCTL_CACHE_DIR=str(tmp_path / "envctl"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_file_size(2 * 2**20))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "ENVCTL-ERROR" in out and "File too large" in out, out
    assert env_state(prefix) == before
    assert run_env_python(prefix, "import pip; print('ok')") == "ok"
    assert leftovers(prefix) == []


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


# ---------------------------------------------------------------- a changed package cache


@pytest.fixture
def private_caches(tmp_path, monkeypatch):
    for var, name in (("RATTLER_CACHE_DIR", "rattler"), ("UV_CACHE_DIR", "uv"), ("ENVCTL_CACHE_DIR", "envctl")):
        monkeypatch.setenv(var, str(tmp_path / "caches" / name))
    return tmp_path / "caches"


def _copy_channel(src: Path, dest: Path, entries) -> None:
    for subdir in ("linux-64", "noarch"):
        (dest / subdir).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / subdir / "repodata.json", dest / subdir)
    for entry in entries:
        subdir, filename = entry.url.rsplit("/", 2)[-2:]
        shutil.copy(src / subdir / filename, dest / subdir / filename)


def _mixed_lock(root: Path, channel: Path, local_channel: Path) -> Path:
    conda = lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"])
    _copy_channel(local_channel, channel, conda)
    conda = lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"])
    pip = lf.pip_entries(lf.pip_report(["six==1.17.0"]), "linux-64")
    return lf.write_lock(root / "locks" / "mixed.conda-lock.yml", target="mixed", channel=channel,
                         platforms=["linux-64"], packages=conda + pip)


def _edit_in_place(path: Path) -> None:
    """What an editor that keeps hardlinks does (vim's backupcopy=auto): same inode, new bytes."""
    with open(path, "r+b") as handle:
        head = handle.read(8)
        handle.seek(0)
        handle.write(b"#EDITED\n" if head != b"#EDITED\n" else b"#AGAIN!\n")


PIP_INIT = f"lib/python{PY_MM}/site-packages/pip/__init__.py"
SIX = f"lib/python{PY_MM}/site-packages/six.py"


def test_changed_cache_files_are_detected_and_refetched(private_caches, tmp_path, local_channel):
    root = tmp_path / "project"
    _mixed_lock(root, tmp_path / "channel", local_channel)
    first = create_env(root, "mixed", prefix=tmp_path / "env1")
    originals = {rel: (first.prefix / rel).read_bytes() for rel in (PIP_INIT, SIX)}
    for rel in (PIP_INIT, SIX):
        # Both installers hardlink from their caches: editing env1's file edits the cached one too.
        assert (first.prefix / rel).stat().st_nlink >= 2
        _edit_in_place(first.prefix / rel)

    events: list[tuple[str, dict]] = []
    second = create_env(root, "mixed", prefix=tmp_path / "env2", progress=lambda event, **info: events.append((event, info)))
    refetched = {info["manager"]: info["packages"] for event, info in events if event == "refetch"}
    assert set(refetched) == {"conda", "pip"}, events
    assert any(p.startswith("pip-") for p in refetched["conda"]) and refetched["pip"] == ["six"]
    for rel, data in originals.items():
        assert (second.prefix / rel).read_bytes() == data, f"{rel} came from the changed cache"
    assert run_env_python(second.prefix, "import six, pip; print('ok')") == "ok"

    events.clear()
    third = create_env(root, "mixed", prefix=tmp_path / "env3", progress=lambda event, **info: events.append((event, info)))
    assert not [e for e, _ in events if e == "refetch"], "the refetched cache is clean"
    assert (third.prefix / SIX).read_bytes() == originals[SIX]


def _break_package(channel: Path, subdir: str, filename: str, member: str) -> None:
    """Rewrite one file inside a channel's archive, leaving its info/paths.json as it was; re-index that entry.

    The archive then matches the (new) repodata and lock hashes, but not its own file list.
    """
    import bz2
    import hashlib
    import io
    import tarfile

    archive = channel / subdir / filename
    out = io.BytesIO()
    with tarfile.open(archive, "r:bz2") as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None
            if info.name == member:
                data = b"# not what paths.json says\n" + data
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    blob = bz2.compress(out.getvalue())
    archive.write_bytes(blob)
    repodata_path = channel / subdir / "repodata.json"
    repodata = json.loads(repodata_path.read_text())
    record = repodata["packages"][filename]
    record.update(sha256=hashlib.sha256(blob).hexdigest(), md5=hashlib.md5(blob, usedforsecurity=False).hexdigest(), size=len(blob))
    repodata_path.write_text(json.dumps(repodata))


def test_package_that_does_not_match_its_own_file_list_is_refused(private_caches, tmp_path, local_channel):
    """Refetching cannot help when the package itself is broken: refused, and nothing appears at the prefix."""
    channel = tmp_path / "channel"
    conda = lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"])
    _copy_channel(local_channel, channel, conda)
    pip_file = next(e.url.rsplit("/", 1)[1] for e in conda if e.name == "pip")
    _break_package(channel, "noarch", pip_file, "site-packages/pip/__init__.py")
    root = tmp_path / "project"
    lf.write_lock(root / "locks" / "broken.conda-lock.yml", target="broken", channel=channel, platforms=["linux-64"],
                  packages=lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"]))
    events: list[str] = []
    with pytest.raises(EnvctlError) as err:
        create_env(root, "broken", prefix=tmp_path / "env", progress=lambda event, **info: events.append(event))
    message = str(err.value)
    assert events.count("refetch") == 1, events  # evicted and fetched once more, then refused
    assert "differ from their packages' own hashes" in message and "pip/__init__.py" in message, message
    assert "even after evicting them" in message and "refusing to install unverified files" in message, message
    assert not (tmp_path / "env").exists() and leftovers(tmp_path / "env") == []


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


# ---------------------------------------------------------------- a crashing, hanging or lying runner

SPEC = {"spec_version": 1, "target": "faults", "opset": 18, "exporters": ["torchscript"],
        "providers": ["CPUExecutionProvider"], "required_provider": "CPUExecutionProvider", "device": "cpu",
        "expected_versions": {}, "tolerances": {"atol": 1e-4, "rtol": 1e-3}, "sizes": [1, 2], "seed": 0,
        "simplify": None}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faultmods")
    (folder / "faultmods.py").write_text(textwrap.dedent(FAULT_MODELS))
    return folder


def smoke(models_dir: Path, model: str, timeout: float = 120, python: Path | None = None):
    from envctl.smoke.envctl_smoke_protocol import Spec

    spec = Spec.from_json(dict(SPEC, models=[model], model_paths=[str(models_dir)]))
    return run_smoke(python or Path(sys.executable), spec, timeout)


@pytest.mark.parametrize("model", ["faultmods:segv", "faultmods:selfkill"])
def test_segfaulting_model_is_a_runner_crash_and_the_next_run_goes_ahead(models_dir, model):
    result, facts = smoke(models_dir, model)
    assert result is None
    assert facts["failure"]["class"] == "runner_crash"
    assert "SIGSEGV" in facts["failure"]["message"] and model in facts["failure"]["message"], facts["failure"]
    assert facts["failure"]["remedy"]
    assert "Fatal Python error" in facts["output_tail"]  # faulthandler's stack, kept for the report
    result, facts = smoke(models_dir, "cnn")
    assert result is not None and result.status == "passed", result.failure


def test_hanging_model_is_a_timeout_and_its_children_die(models_dir, tmp_path, monkeypatch):
    marker = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAULT_MARKER", str(marker))
    result, facts = smoke(models_dir, "faultmods:hang", timeout=20)
    assert result is None and facts["failure"]["class"] == "timeout"  # the timeout, not the hang's end, ended it
    assert "faultmods:hang" in facts["failure"]["message"]
    assert procs.wait_dead([int(marker.read_text())]) == []


def test_model_that_exits_0_without_a_result_is_a_runner_crash(models_dir):
    result, facts = smoke(models_dir, "faultmods:exit0")
    assert facts["exit_code"] == 0
    failure = (result or {}).get("failure") or facts.get("failure")
    assert failure["class"] == "runner_crash" and "faultmods:exit0" in failure["message"], failure
    assert (result or {}).get("status") != "passed"


def test_finished_runner_with_a_lingering_child_does_not_wait_for_the_timeout(models_dir):
    result, facts = smoke(models_dir, "faultmods:linger", timeout=90)
    # Waiting for the lingering process (it sleeps an hour) would have ended in the timeout instead.
    assert result is not None and result.status == "passed", result.failure
    assert procs.wait_dead(processes_running("import time; time.sleep(3600)")) == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo 'Segmentation fault (core dumped) {\"status\": \"passed\"}'; exit 0", "exited 0 without a readable result"),
        ("printf 'not json' > \"$4\"; exit 0", "exited 0 without a readable result"),
        ("echo '[1, 2, 3]' > \"$4\"; exit 0", "exited 0 without a readable result"),
        ("exit 3", "exited 3 without a readable result"),
        ("kill -ABRT $$", "SIGABRT"),
        ("echo '{\"result_version\": 1, \"status\": \"passed\", \"stages\": [\"versions\"]}' > \"$4\"; exit 0",
         "stages[0] is not an object"),
        ("echo '{\"result_version\": 1, \"status\": \"passed\", \"measured_limits\": [17]}' > \"$4\"; exit 0",
         "'measured_limits' is list"),
        ("echo '{\"result_version\": 2, \"status\": \"passed\"}' > \"$4\"; exit 0", "'result_version' is 2"),
    ],
    ids=["garbage-stdout", "garbage-result", "result-not-an-object", "exit-3", "abort", "stages-not-objects",
         "limits-not-an-object", "another-result-version"],
)
def test_runner_output_that_is_not_a_result_is_a_runner_crash(models_dir, tmp_path, script, expected):
    # A stand-in interpreter: `python -I runner.py SPEC RESULT` -> $1 $2 $3 $4.
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    result, facts = smoke(models_dir, "cnn", timeout=30, python=fake)
    assert result is None
    assert facts["failure"]["class"] == "runner_crash" and expected in facts["failure"]["message"], facts


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
