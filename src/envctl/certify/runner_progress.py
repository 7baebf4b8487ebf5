"""Follow a smoke run while it goes: the runner appends one JSON line to a progress file as each
stage (per model and exporter; inference with its sizes) starts and ends; envctl waits for the
runner and turns new lines into progress events (a spinner on a terminal, lines in CI logs).

The runner stays standard-library only and knows nothing of envctl: it writes the file named in
ENVCTL_SMOKE_PROGRESS, best effort. A line that does not parse is skipped, never an error.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

POLL = 0.25  # seconds between looks at the file; the runner's stages take seconds


def follow(proc: subprocess.Popen, path: Path, timeout: float, progress=None) -> int:
    """Wait for `proc` (subprocess.TimeoutExpired after `timeout` s), reporting the runner's stages."""
    deadline = time.monotonic() + timeout
    offset = 0
    while True:
        left = deadline - time.monotonic()
        try:
            code = proc.wait(timeout=max(0.0, min(POLL, left)))
        except subprocess.TimeoutExpired:
            if left <= 0:
                raise
            code = None
        if progress is not None:
            offset = _report(path, offset, progress)
        if code is not None:
            return code


def _report(path: Path, offset: int, progress) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except OSError:
        return offset
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
    for raw in complete.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            text = describe(line)
            if text:
                progress("smoke", message=text, transient=line.get("event") == "start")
    return offset + len(complete)


def describe(line: dict) -> str | None:
    """'cnn / torchscript: inference (sizes 1, 2, 5) passed in 1.2s' for one progress line."""
    stage = line.get("stage")
    if not isinstance(stage, str):
        return None
    where = " / ".join(str(x) for x in (line.get("model"), line.get("exporter")) if x)
    what = stage
    sizes = line.get("sizes")
    if stage == "inference" and isinstance(sizes, list) and sizes:
        what += f" (sizes {', '.join(str(s) for s in sizes)})"
    head = f"{where}: {what}" if where else what
    if line.get("event") == "start":
        return f"{head} started"
    seconds = line.get("seconds")
    took = f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
    return f"{head} {line.get('status', 'ended')}{took}"
