"""Shared pytest fixtures for envctl's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/ is not a package; make tests/support importable however pytest was started.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.local_channel import build_local_channel  # noqa: E402


@pytest.fixture(scope="session")
def local_channel() -> Path:
    """A ready, indexed local conda channel (see tests/support/local_channel.py).

    Built once per machine and cached; use ``support.local_channel.channel_url``
    for the ``file://`` URL that rattler.solve and conda-lock accept.
    """
    return build_local_channel()
