"""The lock stage: render environment.yml, solve it (py-rattler + uv), write and read the lock.

Names load on first use (PEP 562): `create` reads locks through lock.lockfile on
its no-op fast path, which must not pay for the solver's imports.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "Lock": "lockfile", "LockInfo": "records", "LockedPackage": "records", "LockFormat": "records",
    "load_lock": "lockfile", "lock_path": "lockfile", "read_lock": "lockfile", "read_lock_meta": "lockfile", "LockResult": "solve", "StaleLock": "solve", "check_locks": "solve",
    "lock_target": "solve",
}

__all__ = sorted(_HOMES)  # noqa: PLE0605 - one list of names: _HOMES


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'envctl.lock' has no attribute {name!r}")
    return getattr(importlib.import_module(f"envctl.lock.{_HOMES[name]}"), name)
