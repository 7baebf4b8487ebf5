"""The errors users see: a clear paragraph, never a traceback.

Every problem with user input (matrix, lockfile, command line) is raised as
`EnvctlError`; a check envctl made that failed is one of its subclasses below.
The class says what went wrong; which exit status that is, is decided in one
place, the table in `envctl.cli.exitcodes` (stages never pick a status).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class EnvctlError(Exception):
    """A user-facing error that names the file, line and key where it can."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        self.hint = hint

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" {self.hint}"
        return text

    def to_json(self) -> dict:
        return {
            "error": self.message,
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "hint": self.hint,
        }


class FileMissing(EnvctlError):
    """A file envctl was asked to read is not there (callers turn it into what is missing: a lock, a certificate)."""


class CheckFailed(EnvctlError):
    """A check envctl made failed: the input was well-formed, the result is not what was asked for."""


class BlockedByRules(CheckFailed):
    """A compatibility rule error stops a target from rendering."""


class LockStale(CheckFailed):
    """A lock is missing or stale where --locked or --frozen forbid making it, or an env was built from another lock."""


class NotRunnableHere(CheckFailed):
    """This host cannot run the target (another platform, no GPU): nothing to build or run here."""


class SolveFailed(CheckFailed):
    """The target cannot be locked: no solution, or the channels or index did not answer."""


class EnvBroken(CheckFailed):
    """An env could not be built or verified: a hash mismatch, a closure gap, an interpreter that does not run."""


class PackFailed(CheckFailed):
    """A bundle or image could not be made: a download failed, a file does not match the lock."""


class WriteFailed(CheckFailed):
    """A file or folder could not be written: a full disk, a read-only folder, a file where a folder should be."""


class CommandNotFound(EnvctlError):
    """`envctl run`: the command is not on the env's PATH (a shell's 127)."""


class CommandNotRunnable(EnvctlError):
    """`envctl run`: the command exists but cannot be executed (a shell's 126)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when something close exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
