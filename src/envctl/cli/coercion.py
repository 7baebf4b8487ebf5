"""Option values of plain types, converted without pydantic.

Typer (0.29) converts every parameter's value through a pydantic TypeAdapter,
and importing pydantic costs about 0.17 s here: more than the rest of a no-op
`envctl create` together. envctl's options are all str, int, bool or Path,
alone, optional or as a list, which need no schema. `install()` makes
Typer convert exactly those with the plain functions below (a Path goes on to
Typer's own path checks: exists, readable, resolve_path, ...), and keeps
Typer's own conversion (pydantic) for any other annotation.

This reaches into Typer's parameter class (its lazy `get_runtime_param`); if
a Typer release moves it, `install()` changes nothing and Typer's own
conversion runs as before: slower, never wrong. tests/cli/test_startup.py fails
then, which is the signal to look here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_SCALARS = (str, int, bool, Path)


def _is_plain(annotation: Any) -> bool:
    from typing import get_args, get_origin

    if annotation in _SCALARS:
        return True
    return get_origin(annotation) is list and len(get_args(annotation)) == 1 and get_args(annotation)[0] in _SCALARS


def convert(kind: type, value: Any) -> Any:
    """One command-line value as `kind`; ValueError (with the value) when it is not one."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if kind is str:
        return str(value)
    if kind is Path:
        return value if isinstance(value, Path) else Path(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "t", "yes", "y", "on"):
            return True
        if text in ("0", "false", "f", "no", "n", "off"):
            return False
        raise ValueError(f"{value!r} is not a valid boolean.")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid integer.") from None


def install() -> bool:
    """Route plain-typed parameters around pydantic; False (and nothing changed) if Typer has no such hook."""
    try:
        from typer import core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
        from typer._param_types import coerce_cli_path
    except ImportError:
        return False
    parameter = getattr(core, "_TyperParameter", None)
    original = getattr(parameter, "get_runtime_param", None)
    if parameter is None or original is None or getattr(original, "envctl_plain", False):
        return original is not None

    class PlainRuntimeParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            from typing import get_args, get_origin

            def one(kind: type, item: Any) -> Any:
                try:
                    item = convert(kind, item)
                except ValueError as exc:
                    raise BadParameter(str(exc), ctx=ctx, param=param) from None
                if kind is Path:  # already a Path, so Typer's checks run without pydantic
                    return coerce_cli_path(item, self.parameter_info, path_type=Path, param=param, ctx=ctx)
                low, high = getattr(self.parameter_info, "min", None), getattr(self.parameter_info, "max", None)
                if kind is int and ((low is not None and item < low) or (high is not None and item > high)):
                    bounds = " and ".join(f"x{op}{bound}" for op, bound in ((">=", low), ("<=", high)) if bound is not None)
                    raise BadParameter(f"{item} is not in the range {bounds}.", ctx=ctx, param=param)
                return item

            if get_origin(self.annotation) is list:
                (kind,) = get_args(self.annotation)
                return [one(kind, item) for item in (value if isinstance(value, (list, tuple)) else [value])]
            return one(self.annotation, value)

    def get_runtime_param(self: Any) -> Any:
        descriptor = getattr(self, "type_descriptor", None)
        if getattr(self, "_runtime_param", None) is None and descriptor is not None:
            annotation, info = descriptor.annotation, descriptor.parameter_info
            if (_is_plain(annotation) and descriptor.file_annotation is None
                    and getattr(info, "parser", None) is None and getattr(info, "path_type", None) is None
                    and (annotation in (int, list[int]) or (getattr(info, "min", None) is None
                                                            and getattr(info, "max", None) is None))
                    and not getattr(info, "clamp", False)):
                self._runtime_param = PlainRuntimeParam(parameter_info=info, annotation=annotation)
        return original(self)

    get_runtime_param.envctl_plain = True  # type: ignore[attr-defined]
    get_runtime_param.typer_original = original  # type: ignore[attr-defined]  # what tests compare against
    parameter.get_runtime_param = get_runtime_param
    return True
