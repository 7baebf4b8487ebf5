"""Spec loading and the "versions" stage of the envctl smoke runner.

Standard library only at import time: it runs before torch, onnx or onnxruntime have been
imported, so it can report exactly which of them fails to import. Loaded by path by
runner.py (prefixed name, so it never shadows a user's module).
"""
import importlib
import json
import os
import platform

SPEC_VERSION = 1
DEVICES = ("cpu", "cuda", "auto")  # "auto": whatever this interpreter's torch sees (resolve_placement)


from envctl_smoke_classes import StageFailure  # noqa: E402  (sibling: the one definition)


def _first_line(e):
    text = ("%s: %s" % (type(e).__name__, e)).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


class SpecError(Exception):
    pass


def load_spec(path, result_path):
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or raw.get("spec_version") != SPEC_VERSION:
        raise SpecError("not a spec object with spec_version %d" % SPEC_VERSION)
    spec = {"target": "unknown", "opset": 17, "exporters": ["torchscript", "dynamo"],
            "providers": ["CPUExecutionProvider"], "required_provider": None, "device": "cpu",
            "expected_versions": {}, "models": [], "model_paths": [], "tolerances": {},
            "model_tolerances": {}, "sizes": [1, 2, 5], "seed": 0, "simplify": None,
            "dynamic": None, "out": None, "input_files": [], "exact_sizes": False,
            "workdir": os.path.join(os.path.dirname(os.path.abspath(result_path)), "envctl-smoke-onnx")}
    spec.update({k: v for k, v in raw.items() if v is not None or k == "simplify"})
    checks = [
        (isinstance(spec["opset"], int), "opset must be an integer"),
        (isinstance(spec["seed"], int) and spec["seed"] >= 0, "seed must be an integer >= 0"),
        (isinstance(spec["exporters"], list) and set(spec["exporters"]) <= {"torchscript", "dynamo"},
         "exporters must be a list of 'torchscript'/'dynamo'"),
        (isinstance(spec["models"], list) and all(isinstance(m, str) for m in spec["models"]),
         "models must be a list of strings"),
        (isinstance(spec["providers"], list) and spec["providers"], "providers must be a non-empty list"),
        (isinstance(spec["sizes"], list) and spec["sizes"]
         and all(isinstance(s, int) and s >= 1 for s in spec["sizes"]), "sizes must be integers >= 1"),
        (spec["simplify"] in (None, "auto", "required", "onnxslim", "onnxsim"), "bad simplify"),
        (isinstance(spec["exact_sizes"], bool), "exact_sizes must be true or false"),
        (isinstance(spec["expected_versions"], dict) and isinstance(spec["model_paths"], list)
         and isinstance(spec["tolerances"], dict) and isinstance(spec["model_tolerances"], dict),
         "expected_versions/tolerances/model_tolerances must be objects, model_paths a list"),
        (spec["dynamic"] is None or (isinstance(spec["dynamic"], dict) and all(
            isinstance(v, (list, dict)) for v in spec["dynamic"].values())),
         "dynamic must be an object {input_name: [axis, ...] | {axis: dim_name}}"),
        (isinstance(spec["input_files"], list) and all(isinstance(f, str) for f in spec["input_files"]),
         "input_files must be a list of .npz/.pt paths"),
        (spec["out"] is None or (isinstance(spec["out"], str) and spec["out"].endswith(".onnx")),
         "out must be a path ending in .onnx"),
        (spec["device"] in DEVICES, "device must be one of %s" % ", ".join(DEVICES)),
        (spec["required_provider"] is None or isinstance(spec["required_provider"], str),
         "required_provider must be a provider name"),
    ]
    for ok, why in checks:
        if not ok:
            raise SpecError(why)
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
    v = {"python": platform.python_version(), "platform": platform.platform()}
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
