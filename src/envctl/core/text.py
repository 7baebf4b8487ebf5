"""Text from data made safe for a terminal: the one sanitiser.

Whatever envctl shows that came from a file or an env (a certificate's
fields, a package's `Name:`, a lock's values, a message a runner wrote) can
hold terminal control sequences: ESC starts colour changes, cursor moves,
title and clipboard writes (OSC 52), CR and BS overwrite what was printed,
a newline forges a second line, and the bidi controls reorder what is read
(Trojan Source, CVE-2021-42574). `printable` shows each such character as a
visible escape instead (`\\x1b`, `\\n`, `\\u202e`), like `repr` does, so the
text stays readable and nothing in it acts on the terminal. Rich markup in
data (`[bold]`) is a separate matter: core.output.escape does both.
"""

from __future__ import annotations

import re

__all__ = ["printable", "printable_lines"]

# C0 and C1 controls, DEL, the line/paragraph separators, and the bidi and
# zero-width marks that change how a line reads without being seen.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int | None = None) -> str:
    """`text` with every control character written as a visible escape: one line, inert on any
    terminal; cut to `limit` characters when one is given."""
    out = _UNSAFE.sub(_visible, str(text))
    return out if limit is None or len(out) <= limit else out[: limit - 3] + "..."


def printable_lines(text: str) -> str:
    """printable() for multi-line text (a traceback tail, a remedy): newlines kept, everything else escaped."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
