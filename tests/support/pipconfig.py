"""pip's own find-links locations, for tests that need the local torch wheel.

On the test machines pip finds a CPU build of torch through its configuration
(config files or PIP_FIND_LINKS). Tests hand those locations to envctl's
`pip_options.find_links` instead of hard-coding a path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# `pip config list` prints lines such as  global.find-links='/opt/wheels'
_LINE = re.compile(r"^(?P<scope>[^=]*)\.find-links='(?P<value>.*)'$")


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
