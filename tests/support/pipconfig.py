"""Where the tests' target envs get the CPU build of torch: `torch_pip_options()`.

A machine whose pip finds a CPU build of torch through its own configuration
(a wheel folder in config files or PIP_FIND_LINKS) hands those find-links
locations to envctl's `pip_options.find_links`. Anywhere else the envs take
torch from PyTorch's CPU wheel index (PyPI's Linux x86-64 torch is the CUDA
build, with ~15 nvidia-* wheels). envctl's resolver never reads pip's own
configuration, so the tests pass it on explicitly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# `pip config list` prints lines such as  global.find-links='/opt/wheels'
_LINE = re.compile(r"^(?P<scope>[^=]*)\.find-links='(?P<value>.*)'$")


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_pip_options() -> dict:
    """A target's `pip_options` that give the CPU build of torch (see the module docstring)."""
    links = find_links()
    return {"find_links": links} if links else {"extra_index_urls": [TORCH_CPU_INDEX]}


def find_links() -> list[str]:
    """find-links locations from PIP_FIND_LINKS and `pip config list`, in order, without duplicates."""
    values: list[str] = []
    values.extend(os.environ.get("PIP_FIND_LINKS", "").split())
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        match = _LINE.match(line.strip())
        if match:
            values.extend(match["value"].split())
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
