"""The one error type users see: a clear paragraph, never a traceback.

Every problem with user input (matrix, lockfile, command line) is raised as
`EnvctlError`; the CLI prints it and exits with its `exit_code` (2 for bad
input, 1 for a failed check).
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
        exit_code: int = 2,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        self.exit_code = exit_code

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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when something close exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
