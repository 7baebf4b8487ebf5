"""Proving that a grandchild (uv) died *with* envctl, by its exit status, not by a clock.

A test kills envctl while uv runs under it. "uv is gone a moment later" does
not show that it died with envctl: an orphaned uv may simply have finished.
So the test process becomes a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`):
orphans are re-parented to it and it can reap them and read how they ended.
uv is stopped (SIGSTOP) before envctl is killed, so it cannot finish on its
own; it is continued afterwards. A uv that died with envctl ends by SIGKILL
(envctl sets `PR_SET_PDEATHSIG`); an orphaned one would run on and exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live direct children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def pids_running(*needles: str) -> list[int]:
    """Live processes whose command line contains every one of `needles` (read once: a process
    may end between listing /proc and reading it, and another test's installer may be running)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if all(needle in cmdline for needle in needles) and state != "Z":
                found.append(int(entry))
    return found


def describe(pids: list[int]) -> str:
    """One line per pid: state, kernel wait channel and command line (what a test says when a process hangs)."""
    lines = []
    for pid in pids:
        base = Path("/proc") / str(pid)
        try:
            wchan = (base / "wchan").read_text() or "-"
            cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            wchan, cmdline = "?", "(gone)"
        lines.append(f"{pid} {state(pid)} {wchan} {cmdline}")
    return "\n".join(lines)


def session_members(sid: int) -> list[int]:
    """Live pids whose session id is `sid` (field 6 of /proc/<pid>/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def state(pid: int) -> str | None:
    """The process state letter (R, S, T, Z, ...), or None when there is no such process."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def subreaper():
    """Make this process adopt orphaned descendants for the duration."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield
    finally:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    return state(pid) not in (None, "Z")


def wait_dead(pids: list[int], ceiling: float = 60.0) -> list[int]:
    """The pids still alive after waiting up to `ceiling` seconds (a ceiling, not a measurement)."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def stop(pids: list[int], ceiling: float = 60.0) -> None:
    """SIGSTOP each pid and wait until it is really stopped; AssertionError if one is already gone."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + ceiling
    for pid in pids:
        while state(pid) != "T":
            assert state(pid) not in (None, "Z"), f"process {pid} ended before it could be stopped"
            assert time.monotonic() < deadline, f"process {pid} did not stop"
            time.sleep(0.01)


def reap_adopted(pids: list[int], ceiling: float = 120.0) -> dict[int, int]:
    """Continue, then reap, adopted `pids`; their wait statuses. Call inside `subreaper()` after the parent died."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + ceiling
    while len(statuses) < len(pids):
        for pid in pids:
            if pid in statuses:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                raise AssertionError(f"process {pid} was not adopted: it ended before its parent was killed") from None
            if done:
                statuses[pid] = status
        assert time.monotonic() < deadline, f"adopted processes still running: {set(pids) - set(statuses)}"
        time.sleep(0.02)
    return statuses


def killed_by_sigkill(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
