"""The one table from what went wrong to how envctl exits.

Stages raise error classes (`envctl.core.errors`) and return results; only
the CLI turns them into an exit status, here. The README's and
docs/reference/exit-codes.md's tables are this table written out
(`markdown_table`); a test keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from envctl.core import errors


@dataclass(frozen=True)
class ExitStatus:
    """One row: the status (as written in the docs), the error classes that end in it, what it means."""

    status: str
    classes: tuple[type[BaseException], ...]
    meaning: str
    code: int | None = None  # the status a raised class exits with; None where it is not one number


SUCCESS = 0
CHECK_FAILED = 1
BAD_INPUT = 2
INTERNAL_ERROR = 70  # sysexits.h EX_SOFTWARE: a bug in envctl, not bad input (2) or a failed check (1)

TABLE: tuple[ExitStatus, ...] = (
    ExitStatus("0", (), "success: everything asked for was done or passed", SUCCESS),
    ExitStatus("1", (errors.CheckFailed,),
               "a check that failed: a failed certification or export, drift with `--fail-on-drift`, a lock-only "
               "target with `--fail-on-lock-only`, a rule error in `matrix check` or `doctor`", CHECK_FAILED),
    ExitStatus("1", (errors.BlockedByRules,), "a rule error stops a target from rendering", CHECK_FAILED),
    ExitStatus("1", (errors.LockStale,),
               "a missing or stale lock (`lock --check`, `--locked`, `--frozen`), or an env built from another lock",
               CHECK_FAILED),
    ExitStatus("1", (errors.NotRunnableHere,), "this host cannot run the target (another platform, no GPU)",
               CHECK_FAILED),
    ExitStatus("1", (errors.SolveFailed,), "the target cannot be locked: no solution, or a channel did not answer",
               CHECK_FAILED),
    ExitStatus("1", (errors.EnvBroken,),
               "an env could not be built or verified (a hash mismatch, a package missing from the lock)",
               CHECK_FAILED),
    ExitStatus("1", (errors.PackFailed,), "a bundle or image could not be made", CHECK_FAILED),
    ExitStatus("1", (errors.WriteFailed,),
               "a full disk, a read-only folder or a file where a folder should be (one error naming the path)",
               CHECK_FAILED),
    ExitStatus("2", (errors.EnvctlError, errors.FileMissing),
               "bad input: a malformed or unknown key in the matrix, an unknown target, conflicting options, a path "
               "that would lead out of the project, hostile YAML; nothing is written", BAD_INPUT),
    ExitStatus("70", (Exception,),
               "an internal error (a bug in envctl): one paragraph, the full trace only with `--debug`",
               INTERNAL_ERROR),
    ExitStatus("126", (errors.CommandNotRunnable,), "`envctl run`: the command cannot be executed", 126),
    ExitStatus("127", (errors.CommandNotFound,), "`envctl run`: the command is not found in the env", 127),
    ExitStatus("130, 143, 129", (KeyboardInterrupt,),
               "interrupted by Ctrl-C, SIGTERM or SIGHUP: 128 + the signal's number, after children are killed"),
)

# The README's short table: one line per status.
SHORT = {
    "0": "success", "1": "a check failed (rules, lock, env, certification, a write)", "2": "bad input",
    "70": "a bug in envctl", "126": "`envctl run`: command not executable",
    "127": "`envctl run`: command not found", "130, 143, 129": "interrupted (128 + the signal)",
}

_BY_CLASS: dict[type[BaseException], int] = {
    cls: row.code for row in TABLE if row.code is not None for cls in row.classes
}


def exit_code(error: errors.EnvctlError) -> int:
    """The status an error ends the command with: its nearest class in the table."""
    for cls in type(error).__mro__:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    return BAD_INPUT  # unreachable: every EnvctlError is an EnvctlError


def markdown_table(*, classes: bool = True) -> str:
    """The table as Markdown (with the class column for the reference page; without it, one row per status)."""
    if classes:
        lines = ["| status | error class | meaning |", "|---|---|---|"]
        lines += [f"| {row.status} | {', '.join(f'`{c.__name__}`' for c in row.classes) or '-'} | {row.meaning} |"
                  for row in TABLE]
    else:
        lines = ["| status | meaning |", "|---|---|"]
        seen: set[str] = set()
        for row in TABLE:
            if row.status not in seen:
                seen.add(row.status)
                lines.append(f"| {row.status} | {SHORT[row.status]} |")
    return "\n".join(lines) + "\n"
