"""Progress where users wait (issue 20 item 6): smoke stages as they start and end, downloads with
bytes and rate, a spinner clock that runs, and --help that shows flags as flags."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from envctl.certify.runner_progress import describe, follow
from envctl.core import output
from envctl.pack.sources import copy_reporting

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")


def envctl(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "envctl", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("command", [(), ("certify",), ("create",), ("ci", "github")])
def test_help_shows_flags_as_flags(command):
    text = envctl(*command, "--help").stdout
    assert "--help" in text
    assert "<bool>" not in text
    if not command:
        verbose = next(line for line in text.splitlines() if "--verbose" in line)
        assert "<int>" not in verbose and "default" not in text.split("--verbose", 1)[1].split("--", 1)[0]
    if command == ("certify",):
        assert re.search(r"--jobs\s+-j\s+<int>", text), "an option that takes a value keeps its type"


def test_the_runner_writes_a_line_as_each_stage_starts_and_ends(tmp_path, monkeypatch):
    """The runner (loaded by path, stdlib only, as in a target env) follows ENVCTL_SMOKE_PROGRESS."""
    import importlib.util

    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv("ENVCTL_SMOKE_PROGRESS", str(progress))
    spec = importlib.util.spec_from_file_location("envctl_smoke_runner_under_test", REPO / "src" / "envctl" / "smoke" / "runner.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    runner._PROGRESS.update(model="cnn", sizes=[1, 2, 5])
    stages: list = []
    runner.run_stage(stages, "inference", lambda details: time.sleep(0.05), exporter="dynamo")
    runner.run_stage(stages, "export", lambda details: 1 / 0, exporter="dynamo")
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [(x["event"], x["stage"]) for x in lines] == [("start", "inference"), ("end", "inference"),
                                                        ("start", "export"), ("end", "export")]
    assert lines[1]["status"] == "passed" and lines[1]["seconds"] >= 0.05 and lines[1]["sizes"] == [1, 2, 5]
    assert lines[3]["status"] == "failed"
    assert describe(lines[1]).startswith("cnn / dynamo: inference (sizes 1, 2, 5) passed in 0.")
    assert describe(lines[2]) == "cnn / dynamo: export started"


WRITER = """
import json, sys, time
for i, event in enumerate(["start", "end", "start"]):
    with open(sys.argv[1], "a") as f:
        f.write(json.dumps({"event": event, "stage": "export", "model": "m", "exporter": "e", "status": "passed",
                            "seconds": 0.5}) + "\\n")
        if i == 2:
            f.write('{"event": "end", "stage": "exp')  # a line still being written
    time.sleep(0.3)
"""


def test_follow_reports_lines_while_the_runner_runs(tmp_path):
    path = tmp_path / "progress.jsonl"
    seen: list[tuple[float, str, bool]] = []
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    started = time.monotonic()
    assert follow(proc, path, 60, lambda event, **info: seen.append((time.monotonic() - started, info["message"],
                                                                    info["transient"]))) == 0
    assert [m for _, m, _ in seen] == ["m / e: export started", "m / e: export passed in 0.5s", "m / e: export started"]
    assert [t for _, _, t in seen] == [True, False, True]
    assert seen[0][0] < seen[-1][0] - 0.3, "lines are reported as they come, not at the end"


def test_follow_stops_at_the_timeout(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            follow(proc, tmp_path / "none.jsonl", 0.5, None)
    finally:
        proc.kill()
        proc.wait()


class _Handler(http.server.BaseHTTPRequestHandler):
    body = os.urandom(3 << 20)

    def do_GET(self):  # http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        for at in range(0, len(self.body), 1 << 18):
            self.wfile.write(self.body[at:at + (1 << 18)])

    def log_message(self, *args):
        pass


def test_a_download_reports_bytes_and_total(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    events = []
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/x.whl", timeout=30) as response, \
                open(tmp_path / "x.whl", "wb") as out:
            assert copy_reporting(response, out, "x 1.0", lambda e, **i: events.append((e, i)), chunk=1 << 19) == 3 << 20
    finally:
        server.shutdown()
    assert (tmp_path / "x.whl").read_bytes() == _Handler.body
    done = [i["done"] for _, i in events]
    assert done == sorted(done) and done[-1] == 3 << 20 and len(done) >= 6
    assert all(e == "download" and i["total"] == 3 << 20 for e, i in events)
    assert events[-1][1]["finished"] is True


def test_transfers_show_bytes_and_rate_with_rich(monkeypatch):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    transfers = output.Transfers(console)
    assert transfers.update("k", "torch 2.13.0", 5 << 20, 20 << 20, False) is None
    console.print(transfers.renderable())
    text = buffer.getvalue()
    assert "torch 2.13.0" in text and "5.2/21.0 MB" in text
    line = transfers.update("k", "torch 2.13.0", 20 << 20, 20 << 20, True)
    assert line.startswith("torch 2.13.0: 20.0 MiB in ") and re.search(r"[0-9.]+ [KMGT]?i?B/s$", line), line
    assert transfers.renderable() is None, "a finished download leaves the display"


def test_the_spinner_clock_runs():
    """It once showed when the step started (frozen); it shows how long the step has been running."""
    running = output._Running("[bold]create[/] linking")
    first = float(running.__rich__().split("s[/]")[0].split()[-1])
    time.sleep(0.25)
    second = float(running.__rich__().split("s[/]")[0].split()[-1])
    assert first < 0.2 and second >= 0.2


def test_quiet_certify_of_several_targets_prints_the_errors_and_the_final_line(tmp_path):
    """Two lock-only targets of the shipped matrix (neither runs here): -q keeps only the verdict line."""
    import shutil

    (tmp_path / "envs").mkdir()
    shutil.copy(REPO / "envs" / "matrix.yaml", tmp_path / "envs" / "matrix.yaml")
    env = dict(os.environ, PYTHONPATH=SRC)
    run = [sys.executable, "-m", "envctl", "certify", "windows-cuda12", "jetson-cuda11.8", "--frozen"]
    loud = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    quiet = subprocess.run([*run[:3], "-q", *run[3:]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert loud.returncode == quiet.returncode
    assert "Certification of" in loud.stdout and "Certification of" not in quiet.stdout
    lines = quiet.stdout.strip().splitlines()
    assert lines[-1].startswith("FAILED: 2 failed in ")
    assert [line for line in lines if line.startswith("failed ")] == ["failed windows-cuda12", "failed jetson-cuda11.8"]
    assert "has no lock" in quiet.stdout
