"""Text from data made safe for a terminal: the one sanitiser for every field envctl prints from a file.

A certificate, a lock or a package's metadata can be forged: an ESC sequence in
a hostname or a target name would move the cursor, recolour or retitle the
user's terminal, and a newline would forge a second line of output. `printable`
writes every control character (C0, C1, DEL, U+2028/U+2029) and every
bidirectional override as a visible escape (`\\x1b`, `\\n`, `\\u202e`) and
bounds the length; ordinary text, non-ASCII letters included, is unchanged.
"""

from __future__ import annotations

import re

# C0/C1 controls, DEL, line/paragraph separators, and the bidi embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(value: object, limit: int = 300) -> str:
    """`str(value)` with control characters escaped, cut to `limit` characters."""
    text = _UNSAFE.sub(_escape, str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
