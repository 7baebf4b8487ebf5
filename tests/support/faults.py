"""What the fault tests share (tests/create/test_faults.py, test_cache_faults.py,
tests/certify/test_runner_faults.py): models that crash, hang or lie, and a child process
whose output is read as it comes, to be killed at a named point.
"""

from __future__ import annotations

import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml


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


def leftovers(prefix: Path) -> list[str]:
    """The scratch folders envctl left beside an env prefix (`<name>~*`, but for its lock file)."""
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
