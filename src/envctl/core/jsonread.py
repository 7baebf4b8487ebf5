"""JSON from a file a user or another machine wrote: bounded nesting, clear errors.

`json.loads` recurses once per nesting level: `[[[[...]]]]` a few thousand deep
raises RecursionError (a traceback), and a document just under that limit
still makes every later walk over it deep and slow. envctl's own JSON (a
certificate, a runner result, a state file) is a handful of levels deep, so
anything deeper than MAX_JSON_DEPTH is refused with the file's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envctl.core.errors import EnvctlError
from envctl.core.limits import short

MAX_JSON_DEPTH = 64


def _depth(value: Any) -> int:
    """The nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def load_json(data: bytes | str, what: str = "JSON file", file: Path | None = None) -> Any:
    """The parsed document; EnvctlError naming `file` when it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise EnvctlError(f"the {what} nests deeper than {MAX_JSON_DEPTH} levels; refused", file=file) from None
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise EnvctlError(f"the {what} is not readable JSON: {short(str(exc), 200)}", file=file) from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise EnvctlError(f"the {what} nests deeper than {MAX_JSON_DEPTH} levels; refused", file=file)
    return doc
