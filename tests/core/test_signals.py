"""Signals, for real: `envctl run` hands them to the command, certify and lock clean up on SIGINT/SIGTERM/SIGHUP.

Regression tests for issue 12 items 2, 3 and 9 (SIGTERM during lock). Each
test sends a real signal to a real envctl process and waits for the event
with a generous ceiling; none asserts how fast anything was, and none waits without one.

Each child gets the signal dispositions its test relies on (`default_signals`), whatever
the suite inherited: a background job of a non-interactive shell starts with SIGINT
ignored, and envctl, like every Unix tool, keeps a signal ignored that it was started
with ignored (docs/testing.md says why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from envctl.create.build import create_env
from envctl.host.platform import host_platform
from support import lockfactory as lf
from support.procs import alive, wait_dead

pytestmark = [
    pytest.mark.slow,  # builds an env; runs the smoke runner
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

SRC = str(Path(__file__).resolve().parents[2] / "src")
CEILING = 60


def envctl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = SRC
    return env | extra


def default_signals() -> None:
    """preexec_fn: the dispositions a shell in the foreground gives a command (SIGINT, SIGTERM, SIGHUP default)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def wait_for_file(path: Path, proc: subprocess.Popen, ceiling: float = CEILING) -> str:
    deadline = time.monotonic() + ceiling
    while not (path.exists() and path.read_text().endswith("\n")):
        assert proc.poll() is None, f"exited {proc.returncode} early: {proc.communicate(timeout=CEILING)}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text()


@pytest.fixture(scope="module")
def prefix(tmp_path_factory, local_channel) -> Path:
    root = tmp_path_factory.mktemp("signals")
    lf.write_lock(root / "locks" / "small.conda-lock.yml", target="small", channel=local_channel, platforms=["linux-64"],
                  packages=lf.channel_entries(local_channel, "linux-64", ["python", "pip", "python_abi"]))
    return create_env(root, "small", prefix=root / "env").prefix


# The command: report its signal masks and pid, then wait (optionally trapping SIGTERM).
COMMAND = textwrap.dedent('''
    import os, signal, sys, time
    out = sys.argv[1]
    if len(sys.argv) > 2:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(42))
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith(("SigIgn", "SigBlk")))
    with open(out + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {status['SigIgn'].strip()} {status['SigBlk'].strip()}\\n")
    os.rename(out + ".tmp", out)
    time.sleep(600)
''')


def start_run(prefix: Path, out: Path, *extra: str, preexec_fn=default_signals, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "envctl", "run", "--prefix", str(prefix), "--",
                             "python", "-c", COMMAND, str(out), *extra],
                            env=envctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn, start_new_session=new_session)


def _ignore_sigint() -> None:
    default_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a background job


def test_run_gives_the_command_default_signal_dispositions(prefix, tmp_path):
    """Even where envctl itself was started with SIGINT ignored, the command starts with nothing ignored or blocked."""
    proc = start_run(prefix, tmp_path / "out", preexec_fn=_ignore_sigint)
    pid, ignored, blocked = wait_for_file(tmp_path / "out", proc).split()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        assert not int(ignored, 16) & (1 << (signum - 1)), f"{signum.name} ignored in the command ({ignored})"
    assert int(blocked, 16) == 0, blocked
    os.kill(int(pid), signal.SIGTERM)
    assert proc.wait(timeout=CEILING) == 128 + signal.SIGTERM


def test_ctrl_c_at_a_terminal_stops_the_command(prefix, tmp_path):
    """A terminal's Ctrl-C goes to the whole foreground process group: envctl and the command."""
    proc = start_run(prefix, tmp_path / "out", new_session=True)
    pid = int(wait_for_file(tmp_path / "out", proc).split()[0])
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=CEILING) == 128 + signal.SIGINT
    assert wait_dead([pid]) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_sent_to_envctl_reach_the_command(prefix, tmp_path, signum):
    proc = start_run(prefix, tmp_path / "out")
    pid = int(wait_for_file(tmp_path / "out", proc).split()[0])
    os.kill(proc.pid, signum)
    assert proc.wait(timeout=CEILING) == 128 + signum, proc.communicate(timeout=CEILING)
    assert wait_dead([pid]) == [], "the command outlived envctl"


def test_envctl_exits_with_the_status_the_command_chose_on_a_signal(prefix, tmp_path):
    proc = start_run(prefix, tmp_path / "out", "trap")
    pid = int(wait_for_file(tmp_path / "out", proc).split()[0])
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=CEILING) == 42
    assert wait_dead([pid]) == []


# ---------------------------------------------------------------- certify interrupted

HANG_MODELS = '''
import os, sys, time


def _daemon(marker, own_group):
    """Double fork: the grandchild is orphaned and outlives the model unless something kills it."""
    if os.fork() == 0:
        if own_group:
            os.setpgid(0, 0)
        if os.fork() == 0:
            with open(marker + f".{os.getpid()}", "w") as handle:
                handle.write("grandchild\\n")
            time.sleep(3600)
        os._exit(0)


def hang():
    marker = os.environ["HANG_MARKER"]
    _daemon(marker, False)
    _daemon(marker, True)
    with open(marker + f".{os.getpid()}", "w") as handle:
        handle.write("runner\\n")
    time.sleep(3600)
'''

# The certify path around the runner: the CLI's handlers, the env's shared lock, run_smoke
# (in a worker thread too, as certify -j runs it).
CERTIFY_CHILD = '''
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from envctl.certify.certify import build_spec, run_smoke
from envctl.cli.command import call
from envctl.create.prefixswap import env_in_use
from envctl.core.interrupts import install

models, prefix, mode = sys.argv[1:4]
install()
spec = build_spec(None, Path(models), device="cpu", providers=["CPUExecutionProvider"],
                  required="CPUExecutionProvider", expected={})
spec.models = ["hangmods:hang"]
spec.exporters = ["torchscript"]


def smoke():
    with env_in_use(Path(prefix)):
        print("event locked", flush=True)
        return run_smoke(Path(sys.executable), spec, 600)


def body():
    if mode == "thread":
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(smoke).result() and 0
    smoke()
    return 0


sys.exit(call(body))  # the wrapper every command goes through
'''


def _processes_in(marker_dir: Path) -> dict[int, str]:
    return {int(p.name.rsplit(".", 1)[1]): p.read_text().strip() for p in marker_dir.glob("mark.*") if p.read_text().endswith("\n")}


def _ignored(pid: int) -> set[int]:
    """The signals process `pid` ignores, from /proc/PID/status."""
    mask = next(int(line.split()[1], 16) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("SigIgn:"))
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def lock_when_released(lock: Path, ceiling: float = CEILING) -> int:
    """Take `lock` exclusively as a create would, as soon as its holder lets go (fd, held by the caller)."""
    import fcntl

    fd = os.open(lock, os.O_RDWR)
    deadline = time.monotonic() + ceiling
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AssertionError(f"{lock} still held {ceiling} s after the signal") from None
            time.sleep(0.005)


def start_certify(tmp_path: Path, mode: str, preexec_fn=default_signals) -> tuple[subprocess.Popen, dict[int, str], Path]:
    """The certify path with a model that hangs and leaves two daemons; returns once all three run."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "hangmods.py").write_text(HANG_MODELS)
    marks, tmpdir, prefix = tmp_path / "marks", tmp_path / "tmp", tmp_path / "env"
    marks.mkdir()
    tmpdir.mkdir()
    prefix.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", CERTIFY_CHILD, str(models), str(prefix), mode],
                            env=envctl_env(HANG_MARKER=str(marks / "mark"), TMPDIR=str(tmpdir)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    deadline = time.monotonic() + 180  # the runner imports torch before the model
    while len(_processes_in(marks)) < 3:
        assert proc.poll() is None, proc.communicate(timeout=CEILING)
        assert time.monotonic() < deadline, "the model did not start"
        time.sleep(0.05)
    assert list(tmpdir.glob("envctl-smoke-*"))
    return proc, _processes_in(marks), tmpdir


@pytest.mark.parametrize(("signum", "mode"), [(signal.SIGINT, "main"), (signal.SIGTERM, "thread"), (signal.SIGHUP, "main")])
def test_interrupted_certify_kills_the_runner_and_its_daemons_before_releasing_the_env(tmp_path, signum, mode):
    proc, pids, tmpdir = start_certify(tmp_path, mode)
    try:
        os.kill(proc.pid, signum)
        # The moment certify lets go of the env's lock, the runner and both daemons must be gone.
        fd = lock_when_released(tmp_path / "env~lock")
        try:
            still = [p for p in pids if alive(p)]
        finally:
            os.close(fd)
        assert still == [], f"alive after the env lock was released: {[pids[p] for p in still]}"
        out, err = proc.communicate(timeout=CEILING)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=CEILING)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "interrupted" in err
    assert list(tmpdir.glob("envctl-*")) == [], "temp files left behind"


def test_certify_started_with_sigint_ignored_keeps_ignoring_it_and_stops_on_sigterm(tmp_path):
    """A background job of a non-interactive shell starts with SIGINT ignored so that Ctrl-C at the
    script's terminal does not reach it. envctl keeps it ignored (as Python and every Unix tool do);
    SIGTERM still stops it and cleans up."""
    proc, pids, tmpdir = start_certify(tmp_path, "main", preexec_fn=_ignore_sigint)
    try:
        assert signal.SIGINT in _ignored(proc.pid) and signal.SIGTERM not in _ignored(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=CEILING)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=CEILING)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert wait_dead(list(pids)) == []
    assert list(tmpdir.glob("envctl-*")) == [], "temp files left behind"
