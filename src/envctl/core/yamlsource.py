"""Safe YAML loading that remembers where each key was written.

`load_yaml` only ever uses a SafeLoader subclass; mappings come back as
`LineDict`, a dict that knows the line of each of its keys, so errors can say
"envs/matrix.yaml:14, key 'targets.gpu.opset'".

Hostile input is bounded here, for every caller: the file must be a regular
file under limits.MAX_MATRIX_BYTES; the document, with every alias written
out, must stay under limits.MAX_EXPANDED (a "billion laughs" is refused
before anything walks it); no string, key or value, may carry a control
character other than a line break or tab, and the field parsers allow those
only in free text (a block scalar's final newline is dropped first). YAML 1.1 merge
keys (`<<: *defaults`, then overrides) work; a key written twice in one
mapping is still an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from envctl.core.errors import EnvctlError
from envctl.core.limits import (FREE_TEXT_ALLOWED, MAX_DEPTH, MAX_EXPANDED, MAX_MATRIX_BYTES, control_char, read_text, short,
                                too_deep)


class LineDict(dict):
    """A dict from YAML with the 1-based line of the mapping and of each key."""

    line: int | None = None
    key_lines: dict

    def line_of(self, key: str) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


_MERGE = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    # Merged entries come first after flattening, the mapping's own after them and win.
    # (An aliased mapping is flattened once; remember how many entries are its own.)
    own = getattr(node, "_envctl_own", None)
    if own is None:
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        loader.flatten_mapping(node)
        node._envctl_own = own
    merged = len(node.value) - own
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    own_keys: set = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise EnvctlError(
                f"a mapping key must be a plain name, got {short(key)}",
                line=key_node.start_mark.line + 1,
            )
        if index >= merged:
            if key in own_keys:
                raise EnvctlError(f"duplicate key {short(key)}", line=key_node.start_mark.line + 1, key=str(key)[:80])
            own_keys.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    if node.style in ("|", ">"):
        value = value.rstrip("\n")  # a block scalar's final line break is layout, not content
    # Line breaks and tabs are left to the field parsers: free text may span lines, nothing else may.
    found = control_char(value, allow=FREE_TEXT_ALLOWED)
    if found:
        raise EnvctlError(f"{short(value)} contains {found}; control characters are not allowed in the matrix",
                          line=node.start_mark.line + 1)
    return value


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def _check_expansion(root: yaml.Node, budget: int = MAX_EXPANDED) -> None:
    """Refuse a document whose aliases expand past `budget` (each node counted once per place it appears)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise EnvctlError("malformed YAML: an alias refers to a mapping or list that contains it (a recursive alias)",
                              line=node.start_mark.line + 1)
        active.add(key)
        if isinstance(node, yaml.ScalarNode):
            total = 1 + len(node.value)
        else:
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
            total = 1
            for child in children:
                total += size(child)
                if total > budget:
                    raise EnvctlError(
                        f"malformed YAML: aliases expand this document past {budget} nodes and characters "
                        "(a 'billion laughs'); refused before expanding it",
                        line=node.start_mark.line + 1, hint="Write the values out, or use fewer nested aliases.")
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


def load_yaml(path: Path, cap: int = MAX_MATRIX_BYTES, what: str = "matrix file") -> Any:
    """Parse `path` safely; every failure is an EnvctlError naming file and line.

    Not text (NUL bytes, control characters YAML forbids, a binary file), too
    deep to walk, or an alias bomb: each is a clear error, never a traceback.
    """
    return parse_yaml(read_text(Path(path), cap, what), path, what)


def parse_yaml(text: str, path: Path | str, what: str = "YAML file") -> Any:
    """load_yaml for text already read (through read_text) from `path`."""
    loader = None
    try:
        loader = _LineLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        doc = loader.construct_document(node)
        if too_deep(doc):
            raise EnvctlError(f"malformed YAML: the {what} nests lists or mappings more than {MAX_DEPTH} levels deep")
        return doc
    except EnvctlError as exc:
        exc.file = str(path)
        raise
    except RecursionError:
        raise EnvctlError(f"malformed YAML: the {what} nests lists or mappings too deeply", file=path) from None
    except yaml.reader.ReaderError as exc:
        raise EnvctlError(f"the {what} is not text YAML accepts: character U+{exc.character:04X} at position "
                          f"{exc.position} is not allowed", file=path,
                          line=text.count("\n", 0, exc.position) + 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        raise EnvctlError(f"malformed YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise EnvctlError(f"malformed YAML: {short(str(exc), 300)}", file=path) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's safe constructors raise plain errors for a well-formed but impossible
        # value: a date such as 2001-13-40, `!!int "x"`, an empty `!!float`, `!!timestamp x`.
        raise EnvctlError(f"malformed YAML: a value cannot be read ({short(str(exc), 200)})", file=path,
                          hint="Quote values that are meant as text.") from None
    finally:
        if loader is not None:
            loader.dispose()
