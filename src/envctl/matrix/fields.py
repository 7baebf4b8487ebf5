"""The fields a matrix target may set: their types, defaults and parsers.

One table, so the loader, `matrix show`, the README and did-you-mean
suggestions all agree on the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from envctl.matrix.versions import Spec, SpecError
from envctl.smoke import BUILTIN_MODELS

PLATFORMS = ("linux-64", "linux-aarch64", "osx-arm64", "osx-64", "win-64")
EXPORTERS = ("torchscript", "dynamo")
ORT_BUILDS = ("cpu", "gpu")
SIMPLIFIERS = ("auto", "onnxslim", "onnxsim")
EXECUTION_PROVIDERS = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
)
# Packages a target manages; `pip:` may name any of these (or any other
# package it adds through pip_extra).
MANAGED = ("python", "torch", "onnx", "onnxruntime", "protobuf", "numpy", "onnxscript")
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
        raise FieldError(f"expected a {'non-empty ' if nonempty else ''}list of strings, got {value!r}")
    items = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise FieldError(f"expected strings in the list, got {item!r}")
        if choices and item not in choices:
            from envctl.core.errors import did_you_mean

            raise FieldError(f"'{item}' is not one of {', '.join(choices)}.{did_you_mean(item, choices)}")
        items.append(item.strip())
    if len(set(items)) != len(items):
        raise FieldError(f"list has duplicates: {items}")
    return tuple(items)


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            from envctl.core.errors import did_you_mean

            raise FieldError(f"{value!r} is not one of {', '.join(choices)}.{did_you_mean(str(value), choices)}")
        return value

    return parse


def _cuda(value: Any) -> str | None:
    if value is None or value in ("none", "None", False):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise FieldError(f"cuda {value!r} is a YAML number; quote it (\"{value}\")")
    text = str(value).strip()
    parts = text.split(".")
    if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise FieldError(f"cuda must be a CUDA version like \"11.8\" or \"12.6\", or none; got {value!r}")
    return text


def _major(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.split(".")[0].isdigit():
        raise FieldError(f"expected a version such as \"8\" or \"9.3\", got {value!r}")
    return text


def _opset(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 7 <= value <= 99:
        raise FieldError(f"opset must be an integer ONNX opset (7 or higher), got {value!r}")
    return value


def _positive(kind: type) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise FieldError(f"expected a positive number, got {value!r}")
        return kind(value)

    return parse


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FieldError(f"expected a non-negative number, got {value!r}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise FieldError(f"expected a mapping of name to version, got {value!r}")
    out = []
    for key, item in value.items():
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            raise FieldError(f"'{key}': {item!r} is a YAML number; quote it")
        if not isinstance(item, str):
            raise FieldError(f"'{key}': expected a string, got {item!r}")
        out.append((str(key), item))
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
        raise FieldError(f"expected a mapping with {', '.join(PIP_OPTION_KEYS)}, got {value!r}")
    for key in value:
        if key not in PIP_OPTION_KEYS:
            raise FieldError(f"unknown pip option '{key}'.{did_you_mean(str(key), PIP_OPTION_KEYS)}")
    index_url = value.get("index_url")
    if index_url is not None and not isinstance(index_url, str):
        raise FieldError(f"index_url must be a URL string, got {index_url!r}")
    return PipOptions(
        index_url=index_url,
        extra_index_urls=_str_list(value.get("extra_index_urls") or [], nonempty=False),
        find_links=_str_list(value.get("find_links") or [], nonempty=False),
    )


def _models(value: Any) -> tuple[str, ...]:
    models = _str_list(value)
    for model in models:
        if model not in BUILTIN_MODELS and (":" not in model or model.startswith(":") or model.endswith(":")):
            raise FieldError(f"model '{model}' is neither a built-in (cnn, transformer, rnn) nor 'module:callable'")
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
    "pip": FieldSpec(_str_list, "packages taken from pip instead of the conda channel"),
    "pip_options": FieldSpec(_pip_options, "index_url, extra_index_urls, find_links for the pip part"),
    "conda_extra": FieldSpec(lambda v: _str_list(v, nonempty=False), "more conda match specs"),
    "pip_extra": FieldSpec(lambda v: _str_list(v, nonempty=False), "more pip requirements"),
    "host_provides": FieldSpec(_host_provides, "what the machine supplies, not the env (jetpack, cuda_driver, tensorrt, cudnn)"),
    "virtual_packages": FieldSpec(_virtual_packages, "virtual package overrides for solving, e.g. __glibc: '2.31'"),
    "execution_provider": FieldSpec(_choice(EXECUTION_PROVIDERS), "the ONNX Runtime EP certification must get"),
    "models": FieldSpec(_models, "smoke models: cnn, transformer, rnn, or module:callable"),
    "atol": FieldSpec(_tolerance, "absolute tolerance against PyTorch"),
    "rtol": FieldSpec(_tolerance, "relative tolerance against PyTorch"),
    "simplify": FieldSpec(lambda v: None if v is None else _choice(SIMPLIFIERS)(v), "auto, onnxslim or onnxsim after export"),
    "timeout": FieldSpec(_positive(int), "seconds before a smoke run counts as hung"),
    "xfail": FieldSpec(_optional_text, "reason the target is expected to fail certification"),
}


def parse_field(name: str, value: Any) -> Any:
    return TARGET_FIELDS[name].parse(value)
