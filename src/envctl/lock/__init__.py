"""The lock stage: render environment.yml, solve it (py-rattler + uv), write and read the lock."""

from envctl.lock.lockfile import LockContents, LockedPackage, LockInfo, read_lock, read_lock_meta
from envctl.lock.solve import LockResult, StaleLock, check_locks, lock_target

__all__ = ["LockContents", "LockInfo", "LockResult", "LockedPackage", "StaleLock", "check_locks", "lock_target",
           "read_lock", "read_lock_meta"]
