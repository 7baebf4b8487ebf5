"""Spec loading and the "versions" stage of the envctl smoke runner.

Standard library only at import time: it runs before torch, onnx or onnxruntime have been
imported, so it can report exactly which of them fails to import. Loaded by path by
runner.py (prefixed name, so it never shadows a user's module).
"""
import dataclasses
import importlib
import json
import os
import platform
from typing import Any, Dict

from envctl_smoke_classes import StageFailure  # sibling: the one definition
from envctl_smoke_protocol import ProtocolError as SpecError  # noqa: F401  (what a bad spec raises: runner.py reads it)
from envctl_smoke_protocol import Spec  # sibling: the one definition of the spec


def _first_line(e):
    text = ("%s: %s" % (type(e).__name__, e)).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


def load_spec(path, result_path):
    """The spec file, checked by the protocol (SpecError names the field), as the runner's dict:
    the workdir defaulted beside the result and, unless the device is "auto", the provider settled."""
    with open(path, encoding="utf-8") as f:
        spec = dataclasses.asdict(Spec.from_json(json.load(f)))
    spec["workdir"] = spec["workdir"] or os.path.join(os.path.dirname(os.path.abspath(result_path)),
                                                      "envctl-smoke-onnx")
    if spec["device"] != "auto":  # "auto" is settled by resolve_placement, once torch is imported
        spec["required_provider"] = spec["required_provider"] or spec["providers"][0]
    return spec


def resolve_placement(spec, versions):
    """Settle device "auto" (the host's own interpreter: envctl starts no second Python just to ask
    torch about a GPU): CUDA and the spec's providers when this torch sees a GPU, else the CPU and
    the CPU provider only. Returns the placement the run used, for the result."""
    if spec["device"] == "auto":
        if versions.get("cuda_available"):
            spec["device"] = "cuda"
        else:
            spec["device"] = "cpu"
            spec["providers"] = ["CPUExecutionProvider"]
            spec["required_provider"] = None
        spec["required_provider"] = spec["required_provider"] or spec["providers"][0]
    return {"device": spec["device"], "providers": list(spec["providers"]),
            "required_provider": spec["required_provider"]}


def norm_version(v):
    parts = str(v).split("+")[0].strip().lower().split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts)


def _installed_version(distribution):
    """A distribution's version from its metadata, without importing it; raises if it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise ImportError("No module named %r (no %s distribution installed)" % (distribution, distribution)) from None


def versions_stage(details, spec):
    v: Dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    errors = {}
    # onnxscript is imported only when the dynamo exporter (its one user) runs: the TorchScript exporter
    # never imports it, and importing it just for a version costs a run about as much as onnx does.
    for key, mod in (("numpy", "numpy"), ("protobuf", "google.protobuf"), ("onnx", "onnx"),
                     ("onnxruntime", "onnxruntime"), ("torch", "torch"), ("onnxscript", "onnxscript")):
        try:
            if key == "onnxscript" and "dynamo" not in spec["exporters"]:
                v[key] = _installed_version("onnxscript")
            else:
                v[key] = getattr(importlib.import_module(mod), "__version__", "unknown")
        except Exception as e:
            v[key], errors[key] = None, _first_line(e)
    details.update(versions=v, import_errors=errors)
    if "torch" not in errors:
        import torch
        v.update(torch_cuda=torch.version.cuda, cuda_available=bool(torch.cuda.is_available()),
                 cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if "onnxruntime" not in errors:
        import onnxruntime
        details["providers_available"] = onnxruntime.get_available_providers()
    if "onnxscript" in errors and "dynamo" in spec["exporters"]:
        details.setdefault("warnings", []).append("onnxscript missing: the dynamo exporter will fail")
    fatal = {k: e for k, e in errors.items() if k != "onnxscript"}
    if fatal:
        k = sorted(fatal)[0]
        raise ImportError("import %s failed: %s" % (k, fatal[k]))
    mismatches = []
    for name, want in sorted(spec["expected_versions"].items()):
        have = v.get(name)
        if have is None:
            try:
                from importlib import metadata
                have = metadata.version(name)
            except Exception:
                have = None
        if have is None or norm_version(have) != norm_version(want):
            mismatches.append("%s: expected %s, installed %s" % (name, want, have or "nothing"))
    details["expected_versions"], details["mismatches"] = spec["expected_versions"], mismatches
    if spec["device"] == "cuda" and not v.get("cuda_available"):
        mismatches.append("device 'cuda' but torch.cuda.is_available() is False (torch.version.cuda=%s)"
                          % v.get("torch_cuda"))
    if mismatches:
        raise StageFailure("env_mismatch", "; ".join(mismatches))
