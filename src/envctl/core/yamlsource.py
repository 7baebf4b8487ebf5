"""Safe YAML loading that remembers where each key was written.

`load_yaml` only ever uses a SafeLoader subclass; mappings come back as
`LineDict`, a dict that knows the line of each of its keys, so errors can say
"envs/matrix.yaml:14, key 'targets.gpu.opset'".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from envctl.core.errors import EnvctlError


class LineDict(dict):
    """A dict from YAML with the 1-based line of the mapping and of each key."""

    line: int | None = None
    key_lines: dict

    def line_of(self, key: str) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise EnvctlError(
                f"a mapping key must be a plain name, got {key!r}",
                line=key_node.start_mark.line + 1,
            )
        if key in result:
            raise EnvctlError(f"duplicate key '{key}'", line=key_node.start_mark.line + 1, key=str(key))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse `path` safely; every failure is an EnvctlError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvctlError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvctlError(f"cannot read: {exc}", file=path) from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except EnvctlError as exc:
        exc.file = str(path)
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        raise EnvctlError(f"malformed YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise EnvctlError(f"malformed YAML: {exc}", file=path) from None
