"""The fields a matrix target may set: their types, defaults and parsers.

One table, so the loader, `matrix show`, the docs (docs/reference/matrix-schema.md, checked by
tests/project/test_docs_site.py) and did-you-mean suggestions all agree on the schema.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from envctl.core.limits import FREE_TEXT_ALLOWED, control_char, short
from envctl.matrix.versions import Spec, SpecError
from envctl.smoke import BUILTIN_MODELS
from envctl.smoke.envctl_smoke_protocol import EXPORTERS, SIMPLIFIERS  # what the runner accepts: one definition

PLATFORMS = ("linux-64", "linux-aarch64", "osx-arm64", "osx-64", "win-64")
ORT_BUILDS = ("cpu", "gpu")
EXECUTION_PROVIDERS = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
)
# Packages a target manages; `pip:` names which of them (python aside) come
# from pip. Any other pip package goes under pip_extra.
MANAGED = ("python", "torch", "onnx", "onnxruntime", "protobuf", "numpy", "onnxscript")
PIP_MANAGED = tuple(name for name in MANAGED if name != "python")
PIP_OPTION_KEYS = ("index_url", "extra_index_urls", "find_links")
# What a machine can supply instead of the env; the Jetson rules key on these,
# so a typo must not silently switch them off.
HOST_PROVIDES_KEYS = ("jetpack", "l4t", "cuda", "cuda_driver", "cudnn", "tensorrt", "notes")


class FieldError(ValueError):
    pass


@dataclass(frozen=True)
class PipOptions:
    """Where the pip part of a target comes from."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()


def _spec(value: Any) -> Spec:
    try:
        return Spec.parse(value)
    except SpecError as exc:
        raise FieldError(str(exc)) from None


def _str_list(value: Any, *, choices: tuple[str, ...] | None = None, nonempty: bool = True) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (nonempty and not value):
        raise FieldError(f"expected a {'non-empty ' if nonempty else ''}list of strings, got {short(value)}")
    items = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise FieldError(f"expected strings in the list, got {short(item)}")
        _no_control(item)
        if choices and item not in choices:
            from envctl.core.errors import did_you_mean

            raise FieldError(f"'{item}' is not one of {', '.join(choices)}.{did_you_mean(item, choices)}")
        items.append(item.strip())
    if len(set(items)) != len(items):
        raise FieldError(f"list has duplicates: {short(items)}")
    return tuple(items)


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            from envctl.core.errors import did_you_mean

            raise FieldError(f"{short(value)} is not one of {', '.join(choices)}.{did_you_mean(str(value), choices)}")
        return value

    return parse


def _cuda(value: Any) -> str | None:
    if value is None or value in ("none", "None", False):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise FieldError(f"cuda {short(value)} is a YAML number; quote it (\"{value}\")")
    text = str(value).strip()
    parts = text.split(".")
    if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise FieldError(f"cuda must be a CUDA version like \"11.8\" or \"12.6\", or none; got {short(value)}")
    return text


def _major(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.split(".")[0].isdigit():
        raise FieldError(f"expected a version such as \"8\" or \"9.3\", got {short(value)}")
    return text


def _opset(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 7 <= value <= 99:
        raise FieldError(f"opset must be an integer ONNX opset (7 or higher), got {short(value)}")
    return value


def _positive(kind: type) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise FieldError(f"expected a positive number, got {short(value)}")
        return kind(value)

    return parse


# A smoke run longer than a week is a mistake, and .inf cannot become a timer (OverflowError).
MAX_TIMEOUT = 7 * 24 * 3600


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_TIMEOUT:
        raise FieldError(f"expected a number of seconds above 0 and at most {MAX_TIMEOUT}, got {short(value)}")
    return int(value) if float(value).is_integer() else float(value)  # 900 stays 900: target hashes unchanged


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise FieldError(f"expected a non-negative number, got {short(value)}")
    return float(value)


def _no_control(text: str, allow: str = "") -> str:
    """Every string field reaches a file, a command line or generated YAML: one line, no control characters.

    Free text (description, xfail) may span lines (`allow`): its writers fold or quote it.
    """
    found = control_char(text, allow)
    if found:
        raise FieldError(f"{short(text)} contains {found}; control characters are not allowed")
    return text


def _requirements(value: Any, *, nonempty: bool = False) -> tuple[str, ...]:
    """Package specs (pip, pip_extra, conda_extra): requirements only, never an installer option."""
    items = _str_list(value, nonempty=nonempty)
    for item in items:
        if item.startswith("-"):
            raise FieldError(f"{short(item)} is an installer option, not a package spec; "
                             "set indexes and find-links under pip_options, where check and render show them")
    return items


def _pip_managed(value: Any) -> tuple[str, ...]:
    """`pip:` names managed packages only: anything else would be silently left out of the env."""
    items = _requirements(value, nonempty=True)
    for item in items:
        if item not in PIP_MANAGED:
            from envctl.core.errors import did_you_mean

            hint = did_you_mean(item, PIP_MANAGED)
            if item == "python":
                raise FieldError("python comes from the conda channel, never from pip; remove it from 'pip'")
            raise FieldError(
                f"{short(item)} is not a package this target manages, so 'pip' cannot place it.{hint} "
                f"'pip' says which of {', '.join(PIP_MANAGED)} come from pip (plain names, versions go in their own "
                f"keys); put any other pip package, with its version, under 'pip_extra'")
    return items


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {short(value)}")
    return _no_control(value, FREE_TEXT_ALLOWED)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise FieldError(f"expected a mapping of name to version, got {short(value)}")
    out = []
    for key, item in value.items():
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            raise FieldError(f"'{key}': {short(item)} is a YAML number; quote it")
        if not isinstance(item, str):
            raise FieldError(f"'{key}': expected a string, got {short(item)}")
        out.append((_no_control(str(key)), _no_control(item)))
    return tuple(sorted(out))


def _host_provides(value: Any) -> tuple[tuple[str, str], ...]:
    from envctl.core.errors import did_you_mean

    pairs = _pairs(value)
    for name, _ in pairs:
        if name not in HOST_PROVIDES_KEYS:
            raise FieldError(
                f"unknown host_provides key '{name}'.{did_you_mean(name, HOST_PROVIDES_KEYS)} "
                f"Known: {', '.join(HOST_PROVIDES_KEYS)}"
            )
    return pairs


def _virtual_packages(value: Any) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(value)
    for name, _ in pairs:
        if not name.startswith("__"):
            raise FieldError(f"virtual package names start with '__' (e.g. __glibc), got '{name}'")
    return pairs


def _pip_options(value: Any):
    from envctl.core.errors import did_you_mean

    if value is None:
        return PipOptions()
    if not isinstance(value, dict):
        raise FieldError(f"expected a mapping with {', '.join(PIP_OPTION_KEYS)}, got {short(value)}")
    for key in value:
        if key not in PIP_OPTION_KEYS:
            raise FieldError(f"unknown pip option '{key}'.{did_you_mean(str(key), PIP_OPTION_KEYS)}")
    index_url = value.get("index_url")
    if index_url is not None and not isinstance(index_url, str):
        raise FieldError(f"index_url must be a URL string, got {short(index_url)}")
    if index_url is not None:
        _no_control(index_url)
    return PipOptions(
        index_url=index_url,
        extra_index_urls=_str_list(value.get("extra_index_urls") or [], nonempty=False),
        find_links=_str_list(value.get("find_links") or [], nonempty=False),
    )


# A CI runner label (GitHub `runs-on`, GitLab `tags`): written into generated CI files, so a
# narrow alphabet that needs no escaping in YAML, shell or GitHub expressions.
RUNNER_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _labels(value: Any) -> tuple[str, ...]:
    labels = _str_list(value)
    for label in labels:
        if not RUNNER_LABEL.match(label):
            raise FieldError(f"runner label {label!r} is not allowed: use letters, digits, '.', '_' and '-'")
    return labels


def _runner_labels(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A list (every platform of the target) or a mapping of platform to list: ((platform or '*', labels), ...)."""
    if not isinstance(value, dict):
        return (("*", _labels(value)),)
    if not value:
        raise FieldError("expected labels for at least one platform, got an empty mapping")
    out = []
    for platform, labels in value.items():
        if platform not in PLATFORMS:
            from envctl.core.errors import did_you_mean

            raise FieldError(f"'{platform}' is not one of {', '.join(PLATFORMS)}.{did_you_mean(str(platform), PLATFORMS)}")
        try:
            out.append((platform, _labels(labels)))
        except FieldError as exc:
            raise FieldError(f"{platform}: {exc}") from None
    return tuple(out)


def _models(value: Any) -> tuple[str, ...]:
    models = _str_list(value)
    for model in models:
        if model not in BUILTIN_MODELS and (":" not in model or model.startswith(":") or model.endswith(":")):
            raise FieldError(f"model '{model}' is neither a built-in ({', '.join(BUILTIN_MODELS)}) nor 'module:callable'")
    return models


@dataclass(frozen=True)
class FieldSpec:
    parse: Callable[[Any], Any]
    help: str
    required: bool = False


TARGET_FIELDS: dict[str, FieldSpec] = {
    "description": FieldSpec(_text, "one line saying what the target is for"),
    "platforms": FieldSpec(lambda v: _str_list(v, choices=PLATFORMS), "conda platforms to lock for", True),
    "channels": FieldSpec(_str_list, "conda channels, by name or URL (file:// works)", True),
    "python": FieldSpec(_spec, "Python version spec", True),
    "torch": FieldSpec(_spec, "PyTorch version spec", True),
    "cuda": FieldSpec(_cuda, "CUDA version the target runs with, or none for CPU"),
    "cudnn": FieldSpec(_major, "cuDNN major the target's CUDA packages use"),
    "onnx": FieldSpec(_spec, "onnx version spec", True),
    "onnxruntime": FieldSpec(_spec, "ONNX Runtime version spec", True),
    "onnxruntime_build": FieldSpec(_choice(ORT_BUILDS), "cpu or gpu build of ONNX Runtime (default: gpu when cuda is set)"),
    "protobuf": FieldSpec(_spec, "protobuf (Python) version spec", True),
    "numpy": FieldSpec(_spec, "numpy version spec (default: what the solver picks, bounded by rules)"),
    "onnxscript": FieldSpec(_spec, "onnxscript version spec (default: the minimum the dynamo exporter needs)"),
    "opset": FieldSpec(_opset, "ai.onnx opset to export at", True),
    "exporters": FieldSpec(lambda v: _str_list(v, choices=EXPORTERS), "torchscript and/or dynamo", True),
    "pip": FieldSpec(_pip_managed, "packages taken from pip instead of the conda channel"),
    "pip_options": FieldSpec(_pip_options, "index_url, extra_index_urls, find_links for the pip part"),
    "conda_extra": FieldSpec(_requirements, "more conda match specs"),
    "pip_extra": FieldSpec(_requirements, "more pip requirements"),
    "host_provides": FieldSpec(_host_provides, "what the machine supplies, not the env (jetpack, cuda_driver, tensorrt, cudnn)"),
    "virtual_packages": FieldSpec(_virtual_packages, "virtual package overrides for solving, e.g. __glibc: '2.31'"),
    "execution_provider": FieldSpec(_choice(EXECUTION_PROVIDERS), "the ONNX Runtime EP certification must get"),
    "models": FieldSpec(_models, f"smoke models: {', '.join(BUILTIN_MODELS)}, or module:callable"),
    "atol": FieldSpec(_tolerance, "absolute tolerance against PyTorch"),
    "rtol": FieldSpec(_tolerance, "relative tolerance against PyTorch"),
    "simplify": FieldSpec(lambda v: None if v is None else _choice(SIMPLIFIERS)(v), "auto (skip, saying why, when none is installed), required, onnxslim or onnxsim after export"),
    "timeout": FieldSpec(_seconds, "seconds before a smoke run counts as hung"),
    "xfail": FieldSpec(_optional_text, "reason the target is expected to fail certification"),
    "runner_labels": FieldSpec(_runner_labels, "CI runner labels that run this target (GitHub runs-on, GitLab "
                                               "tags): a list, or a mapping of platform to list; not hashed"),
}


# Fields of free text: they may span lines (their writers fold or quote them). Every other
# field's strings, nested at any depth, are one line without control characters.
FREE_TEXT_FIELDS = ("description", "xfail")


def _one_line_everywhere(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _no_control(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def parse_field(name: str, value: Any) -> Any:
    if name not in FREE_TEXT_FIELDS:
        _one_line_everywhere(value)  # before any parser can strip() a smuggled newline away
    return TARGET_FIELDS[name].parse(value)
