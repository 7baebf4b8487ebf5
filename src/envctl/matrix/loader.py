"""The compatibility matrix: `envs/matrix.yaml` loaded, validated and expanded.

A matrix has `defaults` (fields every target inherits), explicit `targets`,
and `axes`: groups that expand into targets as a product of value lists,
`zip` groups that pair lists element-wise, and `exclude` entries that each
carry a `reason` and a `source`. The result is a flat, ordered set of
`Target`s; everything downstream (rules, render, lock, certify) reads only
`Target`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envctl.core.atomic import SAFE_NAME
from envctl.core.errors import EnvctlError, did_you_mean
from envctl.core.hashing import sha256_text_digest
from envctl.core.limits import short
from envctl.core.paths import DEFAULT_MATRIX
from envctl.smoke import BUILTIN_MODELS
from envctl.matrix.fields import TARGET_FIELDS, FieldError, PipOptions, parse_field
from envctl.matrix.versions import Spec
from envctl.core.yamlsource import LineDict, load_yaml

TOP_LEVEL_KEYS = ("version", "defaults", "targets", "axes")
AXIS_KEYS = ("name", "base", "product", "zip", "exclude", "description")
EXCLUDE_META = ("reason", "source")
# An axes group that would expand to more is refused before expanding (a few YAML
# anchors can otherwise ask for 10**8 targets and hang every command).
MAX_COMBINATIONS = 10_000
# A target name becomes a folder under envs/ and a file under locks/ and certs/.
_NAME = SAFE_NAME


@dataclass(frozen=True)
class Target:
    """One fully resolved matrix cell: everything later stages need."""

    name: str
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    python: Spec
    torch: Spec
    onnx: Spec
    onnxruntime: Spec
    protobuf: Spec
    opset: int
    exporters: tuple[str, ...]
    cuda: str | None = None
    cudnn: str | None = None
    onnxruntime_build: str = "cpu"
    numpy: Spec | None = None
    onnxscript: Spec | None = None
    pip: tuple[str, ...] = ()
    pip_options: PipOptions = field(default_factory=PipOptions)
    conda_extra: tuple[str, ...] = ()
    pip_extra: tuple[str, ...] = ()
    host_provides: tuple[tuple[str, str], ...] = ()
    virtual_packages: tuple[tuple[str, str], ...] = ()
    execution_provider: str = "CPUExecutionProvider"
    models: tuple[str, ...] = BUILTIN_MODELS
    atol: float = 1e-4
    rtol: float = 1e-3
    simplify: str | None = None
    timeout: float = 900
    xfail: str | None = None
    description: str = ""
    # Where CI runs the target (suite/ci_jobs.py); the env does not depend on it, so not hashed.
    runner_labels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ((platform or "*", labels), ...)
    # Where the target came from, for error messages; not part of its hash.
    origin: str = field(default="", compare=False)

    def spec(self, package: str) -> Spec | None:
        """The spec of a managed package by its matrix name."""
        return getattr(self, package, None)

    def labels_for(self, platform: str) -> tuple[str, ...]:
        """The CI runner labels for one of the target's platforms (empty: none given)."""
        labels = dict(self.runner_labels)
        return labels.get(platform) or labels.get("*") or ()

    @property
    def host(self) -> dict[str, str]:
        return dict(self.host_provides)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("origin")
        for key, value in list(data.items()):
            if isinstance(value, Spec) or (isinstance(value, dict) and set(value) == {"raw"}):
                data[key] = str(value["raw"] if isinstance(value, dict) else value) or "*"
        data["host_provides"] = dict(self.host_provides)
        data["virtual_packages"] = dict(self.virtual_packages)
        data["runner_labels"] = {p: list(labels) for p, labels in self.runner_labels}
        return data

    def definition_hash(self) -> str:
        """sha256 of the resolved definition: what makes a rendered file stale."""
        data = self.to_json()
        data.pop("runner_labels")  # where CI runs it does not change the env: renders and locks stay fresh
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return sha256_text_digest(canonical)


@dataclass(frozen=True)
class Excluded:
    """An axis combination left out on purpose, with why and the source."""

    name: str
    values: dict[str, Any]
    reason: str
    source: str


@dataclass
class Matrix:
    path: Path
    targets: dict[str, Target]
    excluded: list[Excluded]

    def select(self, names: list[str] | None, all_targets: bool = False) -> list[Target]:
        """Targets by name (in matrix order for --all); unknown names suggest."""
        if all_targets or not names:
            if not all_targets and not names:
                raise EnvctlError("name at least one target, or pass --all.", file=self.path)
            return list(self.targets.values())
        chosen = []
        for name in names:
            if name not in self.targets:
                known = ", ".join(self.targets) or "none"
                raise EnvctlError(
                    f"unknown target '{name}'.{did_you_mean(name, self.targets)} Targets: {known}.",
                    file=self.path,
                )
            chosen.append(self.targets[name])
        return chosen


def _error(path: Path, mapping: dict | None, key: str, message: str, keypath: str) -> EnvctlError:
    line = mapping.line_of(key) if isinstance(mapping, LineDict) else None
    return EnvctlError(message, file=path, line=line, key=keypath)


def _check_keys(path: Path, mapping: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise _error(
                path, mapping, key,
                f"unknown key '{key}'.{did_you_mean(str(key), allowed)}",
                f"{where}.{key}" if where else str(key),
            )


def _mapping(path: Path, value: Any, keypath: str, parent: dict | None, key: str) -> LineDict:
    if value is None:
        empty = LineDict()
        empty.line, empty.key_lines = (parent.line_of(key) if isinstance(parent, LineDict) else None), {}
        return empty
    if not isinstance(value, dict):
        raise _error(path, parent, key, f"expected a mapping, got {type(value).__name__}", keypath)
    return value if isinstance(value, LineDict) else LineDict(value)  # YAML's mappings are LineDicts already


def _check_name(path: Path, name: Any, mapping: dict | None, key: str, keypath: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _error(
            path, mapping, key,
            f"target name {short(name)} is not allowed: use letters, digits, '.', '_' and '-' "
            "(it becomes a folder under envs/ and a file under locks/, so no '/', '..' or absolute paths)",
            keypath,
        )
    return name


def _resolve(path: Path, name: str, raw: dict[str, Any], lines: dict[str, tuple[LineDict, str]]) -> Target:
    """Turn merged raw fields into a Target, parsing each with its field parser."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        mapping, keypath = lines[key]
        try:
            values[key] = parse_field(key, value)
        except FieldError as exc:
            raise _error(path, mapping, key, str(exc), keypath) from None
    missing = [f for f, spec in TARGET_FIELDS.items() if spec.required and f not in values]
    if missing:
        declared = lines["__target__"][0] if "__target__" in lines else None
        raise EnvctlError(
            f"target '{name}' does not say {', '.join(repr(m) for m in missing)} "
            "(set it on the target or under defaults)",
            file=path, line=declared.line if declared is not None else None,
            key=f"targets.{name}",
        )
    named = [p for p, _ in values.get("runner_labels", ())]
    if named and "*" not in named and not set(named) & set(values["platforms"]):
        # Labels for none of the target's platforms would silently never be used (a mapping shared
        # through `defaults` may name platforms some targets lack: that is fine).
        mapping, keypath = lines["runner_labels"]
        raise _error(path, mapping, "runner_labels", f"runner_labels names {', '.join(named)}, none of them a "
                     f"platform of target '{name}' ({', '.join(values['platforms'])})", keypath)
    cuda = values.get("cuda")
    values.setdefault("onnxruntime_build", "gpu" if cuda else "cpu")
    values.setdefault(
        "execution_provider",
        "CUDAExecutionProvider" if values["onnxruntime_build"] == "gpu" else "CPUExecutionProvider",
    )
    first = lines.get("__target__")
    origin = f"{path}:{first[0].line}" if first and first[0].line else str(path)
    return Target(name=name, origin=origin, **values)


def _merge(path: Path, layers: list[tuple[LineDict, str]], name: str) -> Target:
    raw: dict[str, Any] = {}
    lines: dict[str, tuple[LineDict, str]] = {}
    for mapping, where in layers:
        _check_keys(path, mapping, tuple(TARGET_FIELDS), where)
        for key, value in mapping.items():
            raw[key] = value
            lines[key] = (mapping, f"{where}.{key}")
    lines["__target__"] = layers[-1]
    return _resolve(path, name, raw, lines)


def _as_text(value: Any) -> str:
    """An axis value as it appears in a name or is compared with an exclude entry (bounded for nested values)."""
    return value if isinstance(value, str) else short(value, 200) if isinstance(value, (list, dict)) else str(value)


def _check_template(path: Path, group: LineDict, template: str, axes: list[str], keypath: str) -> None:
    """Only plain `{axis}` fields: a format spec ({torch:>3000000000}), conversion or attribute is refused unrun."""
    import string

    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _error(path, group, "name", f"name template {short(template)} is malformed: {exc}", keypath) from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if spec or conversion:
            raise _error(path, group, "name",
                         f"name template {short(template)}: '{{{short(field_name)[1:-1]}...}}' has a format spec or conversion; "
                         "write plain fields such as {torch}", keypath)
        if field_name not in axes:
            raise _error(path, group, "name",
                         f"name template {short(template)} uses {short(field_name)}, which is not an axis of this group."
                         f"{did_you_mean(field_name, axes)} Axes: {', '.join(axes)}", keypath)


def _expand_axes(path: Path, group: LineDict, index: int, defaults: LineDict):
    where = f"axes[{index}]"
    _check_keys(path, group, AXIS_KEYS, where)
    template = group.get("name")
    if not isinstance(template, str) or not template:
        raise _error(path, group, "name", "an axes group needs a 'name' template such as 'cpu-torch{torch}-opset{opset}'", f"{where}.name")
    if len(template) > 200:
        raise _error(path, group, "name", f"the name template is {len(template)} characters; a target name has at most 80", f"{where}.name")
    base = _mapping(path, group.get("base"), f"{where}.base", group, "base")
    product = _mapping(path, group.get("product"), f"{where}.product", group, "product")
    columns: list[tuple[list[str], list[tuple]]] = []  # (keys, rows)
    for key, values in product.items():
        if key not in TARGET_FIELDS:
            raise _error(path, product, key, f"unknown axis '{key}'.{did_you_mean(str(key), TARGET_FIELDS)}", f"{where}.product.{key}")
        if not isinstance(values, list) or not values:
            raise _error(path, product, key, "an axis needs a non-empty list of values", f"{where}.product.{key}")
        columns.append(([key], [(v,) for v in values]))
    zips = group.get("zip") or []
    if not isinstance(zips, list):
        raise _error(path, group, "zip", "'zip' is a list of groups, each a mapping of equal-length lists", f"{where}.zip")
    for zi, zgroup in enumerate(zips):
        zpath = f"{where}.zip[{zi}]"
        if not isinstance(zgroup, dict) or not zgroup:
            raise _error(path, group, "zip", "each zip group maps axis names to lists", zpath)
        lengths = {}
        for key, values in zgroup.items():
            if key not in TARGET_FIELDS:
                raise _error(path, zgroup, key, f"unknown axis '{key}'.{did_you_mean(str(key), TARGET_FIELDS)}", f"{zpath}.{key}")
            if not isinstance(values, list) or not values:
                raise _error(path, zgroup, key, "a zip axis needs a non-empty list", f"{zpath}.{key}")
            lengths[key] = len(values)
        if len(set(lengths.values())) > 1:
            (k1, n1), (k2, n2) = sorted(lengths.items(), key=lambda kv: kv[1])[:1] + sorted(lengths.items(), key=lambda kv: -kv[1])[:1]
            raise _error(
                path, zgroup, k2,
                f"zip lists differ in length: '{k1}' has {n1} values and '{k2}' has {n2}; "
                "zipped lists pair element by element, so they must be equally long",
                f"{zpath}",
            )
        keys = list(zgroup)
        columns.append((keys, list(zip(*(zgroup[k] for k in keys)))))
    if not columns:
        raise _error(path, group, "product", "an axes group needs 'product' or 'zip' values to expand", where)
    seen_axes = [k for keys, _ in columns for k in keys]
    if len(seen_axes) != len(set(seen_axes)):
        dup = next(k for k in seen_axes if seen_axes.count(k) > 1)
        raise _error(path, group, "zip", f"axis '{dup}' appears twice in this group", where)

    _check_template(path, group, template, seen_axes, f"{where}.name")

    combinations = 1
    for _, rows in columns:
        combinations *= len(rows)
    if combinations > MAX_COMBINATIONS:
        raise _error(
            path, group, "product",
            f"this axes group expands to {combinations} combinations; more than {MAX_COMBINATIONS} "
            "is refused (no CI certifies that many environments; split the group or exclude combinations)",
            where,
        )

    excludes = group.get("exclude") or []
    if not isinstance(excludes, list):
        raise _error(path, group, "exclude", "'exclude' is a list of mappings", f"{where}.exclude")
    for ei, ex in enumerate(excludes):
        epath = f"{where}.exclude[{ei}]"
        if not isinstance(ex, dict):
            raise _error(path, group, "exclude", "each exclude entry is a mapping of axis values plus 'reason' and 'source'", epath)
        for meta in EXCLUDE_META:
            said = ex.get(meta)
            if not isinstance(said, str) or not said.strip():
                raise _error(path, ex, meta, f"an exclude entry needs a '{meta}' (why it cannot work, and where that is stated)", f"{epath}.{meta}")
        for key in ex:
            if key not in EXCLUDE_META and key not in seen_axes:
                raise _error(path, ex, key, f"'{key}' is not an axis of this group.{did_you_mean(str(key), seen_axes)}", f"{epath}.{key}")

    for combo in itertools.product(*(rows for _, rows in columns)):
        values = {k: v for (keys, _), row in zip(columns, combo) for k, v in zip(keys, row)}
        try:
            name = template.format(**{k: _as_text(v) for k, v in values.items()})
        except (KeyError, IndexError, ValueError) as exc:  # _check_template leaves none of these; kept as a net
            raise _error(path, group, "name", f"name template {short(template)} cannot be filled: {short(str(exc))}", f"{where}.name") from None
        _check_name(path, name, group, "name", f"{where}.name")
        matched = next((ex for ex in excludes if all(_as_text(values[k]) == _as_text(v) for k, v in ex.items() if k not in EXCLUDE_META)), None)
        if matched is not None:
            yield Excluded(name, values, matched["reason"], matched["source"])
            continue
        cell = LineDict(values)
        cell.line = group.line
        cell.key_lines = {k: (product.line_of(k) if k in product else group.line_of("zip")) for k in values}
        yield _merge(path, [(defaults, "defaults"), (base, f"{where}.base"), (cell, f"{where}")], name)


def load_matrix(path: Path = DEFAULT_MATRIX) -> Matrix:
    """Load, validate and expand the matrix; raise EnvctlError on bad input."""
    path = Path(path)
    try:
        doc = load_yaml(path)
    except RecursionError:
        raise EnvctlError("malformed YAML: nested too deeply to be a matrix", file=path) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's safe constructors raise plain errors for a well-formed but impossible
        # value: a date such as 2001-13-40, `!!int "x"`, an empty `!!float`, `!!timestamp x`.
        raise EnvctlError(f"malformed YAML: a value cannot be read ({short(str(exc), 200)})", file=path,
                          hint="Quote values that are meant as text.") from None
    if not isinstance(doc, dict):
        raise EnvctlError("the matrix must be a mapping with 'targets' and/or 'axes'", file=path, line=1)
    _check_keys(path, doc, TOP_LEVEL_KEYS, "")
    version = doc.get("version", 1)
    if version != 1:
        raise _error(path, doc, "version", f"matrix version {short(version)} is not supported (this envctl reads version 1)", "version")
    defaults = _mapping(path, doc.get("defaults"), "defaults", doc, "defaults")
    targets_doc = _mapping(path, doc.get("targets"), "targets", doc, "targets")
    targets: dict[str, Target] = {}
    excluded: list[Excluded] = []

    def add(target: Target, mapping: dict, key: str, keypath: str) -> None:
        if target.name in targets:
            raise _error(path, mapping, key, f"target '{target.name}' is defined twice (explicitly or by an axes group)", keypath)
        targets[target.name] = target

    for name, body in targets_doc.items():
        _check_name(path, name, targets_doc, name, f"targets.{name}")
        body = _mapping(path, body, f"targets.{name}", targets_doc, name)
        add(_merge(path, [(defaults, "defaults"), (body, f"targets.{name}")], name), targets_doc, name, f"targets.{name}")

    axes = doc.get("axes") or []
    if isinstance(axes, dict):
        axes = [axes]
    if not isinstance(axes, list):
        raise _error(path, doc, "axes", "'axes' is a list of groups", "axes")
    for index, group in enumerate(axes):
        if not isinstance(group, LineDict):  # what YAML's mappings load as
            raise _error(path, doc, "axes", "each axes group is a mapping", f"axes[{index}]")
        for item in _expand_axes(path, group, index, defaults):
            if isinstance(item, Excluded):
                excluded.append(item)
            else:
                add(item, group, "name", f"axes[{index}].name")
    if not targets:
        raise EnvctlError("the matrix defines no targets", file=path, line=1, key="targets")
    return Matrix(path=path, targets=targets, excluded=excluded)
