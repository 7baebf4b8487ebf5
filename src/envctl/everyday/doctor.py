"""`envctl doctor`: this machine, one env, and what would break an export there.

Everything about the env is measured by a probe run with the env's own
python (-I, so nothing of envctl's interpreter leaks in) that prints JSON:
versions by import and by distribution metadata, how torch and onnxruntime
were built. Drift compares the env (conda-meta/*.json for the conda part,
the distributions not owned by a conda package for the pip part) with the
lock's entries for the env's platform. Rule findings come from the same
rules as `envctl matrix check`, run on a target whose specs are the exact
installed versions.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.core.limits import parse_json
from envctl.create.envrecords import CondaRecord, conda_records
from envctl.lock.lockfile import lock_path

# Drift in these breaks the certified combination (conda spellings included).
MANAGED = {"torch", "pytorch", "onnx", "onnxruntime", "onnxruntime-gpu", "protobuf", "libprotobuf", "numpy"}
MODULES = (("numpy", "numpy"), ("protobuf", "google.protobuf"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
           ("torch", "torch"), ("onnxscript", "onnxscript"))
REQUIRED = ("numpy", "protobuf", "onnx", "onnxruntime", "torch")

# Standard library only at import time: it must run in any env, even a broken one.
PROBE = r'''
import importlib, json, os, platform, sys
from importlib import metadata
out = {"python": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix,
       "packages": {}, "dists": []}
for d in metadata.distributions():
    try:
        if d.metadata["Name"]:  # a half-removed dist-info has no name: not a package any more
            out["dists"].append({"name": d.metadata["Name"], "version": d.version,
                                 "folder": os.path.basename(str(getattr(d, "_path", ""))),
                                 "installer": (d.read_text("INSTALLER") or "").strip()})
    except Exception:
        pass
def first(e):
    return ("%s: %s" % (type(e).__name__, e)).strip().splitlines()[0][:300]
for key, name in MODULES:
    rec = out["packages"][key] = {"version": None, "error": None}
    try:
        mod = importlib.import_module(name)
        rec["version"] = getattr(mod, "__version__", "unknown")
    except BaseException as e:
        rec["error"] = first(e)
        continue
    try:
        if key == "torch":
            rec.update(cuda=mod.version.cuda, cuda_available=bool(mod.cuda.is_available()),
                       cudnn=mod.backends.cudnn.version() if mod.backends.cudnn.is_available() else None,
                       build="cuda" if mod.version.cuda else ("rocm" if getattr(mod.version, "hip", None) else "cpu"))
        elif key == "onnxruntime":
            rec.update(providers=mod.get_available_providers(), device=mod.get_device())
        elif key == "onnx":
            rec.update(ir_version=mod.IR_VERSION, max_opset=mod.defs.onnx_opset_version())
        elif key == "protobuf":
            from google.protobuf.internal import api_implementation
            rec["implementation"] = api_implementation.Type()
    except BaseException as e:
        rec["build_error"] = first(e)
print(json.dumps(out))
'''.replace("MODULES", repr(MODULES))


def _import_remedy(name: str, error: str, fix: str) -> str:
    """A missing module said plainly; anything else as the smoke runner classifies it (one table for both)."""
    missing = re.match(r"ModuleNotFoundError: No module named '([\w.]+)'", error)
    if missing:
        top = missing.group(1).split(".")[0].replace("google", "protobuf")  # google.protobuf is protobuf's
        what = f"{name} is not installed" if top == name else f"{name} needs {top}, which is missing"
        return f"{what}; {fix}"
    from envctl.smoke import runner_module

    return runner_module("envctl_smoke_classes").classify("versions", error)[1]


def probe(python: Path) -> dict:
    from envctl.core.process import foreign_python_env

    try:
        # errors="replace": an env whose python prints non-UTF-8 (a locale, a broken package) is diagnosed, not a crash
        proc = subprocess.run([str(python), "-I", "-c", PROBE], capture_output=True, text=True, errors="replace", timeout=600,
                              env=foreign_python_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"cannot run {python}: {exc}"}
    try:
        data = parse_json(proc.stdout.strip().splitlines()[-1], "env probe's output")
        if not isinstance(data, dict):
            raise EnvctlError("the env probe's output is not a JSON object")
        return data
    except (EnvctlError, IndexError):  # a crash in native code while importing
        return {"error": f"{python} exited {proc.returncode} while importing: {proc.stderr.strip()[-800:]}"}


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _same(a: str | None, b: str | None) -> bool:
    from packaging.version import InvalidVersion, Version

    if a is None or b is None:
        return a == b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _conda_installed(prefix: Path) -> tuple[dict[str, CondaRecord], set[str]]:
    """conda packages in the env (name -> record) and the dist-info folders they own."""
    packages = {r.name: r for r in conda_records(prefix)}
    owned = set().union(*(r.dist_folders() for r in packages.values()))
    return packages, owned


def drift(prefix: Path, lock: Path, platform: str, dists: list[dict]) -> dict:
    """Packages added, removed or changed in the env since it was created from `lock`."""
    from envctl.lock.lockfile import load_lock

    entries = load_lock(lock).for_platform(platform)
    conda, owned = _conda_installed(prefix)
    pip = {_canon(d["name"]): d for d in dists if d["folder"] not in owned}
    out = []

    def add(kind, name, manager, locked, installed):
        out.append({"kind": kind, "name": name, "manager": manager, "locked": locked, "installed": installed,
                    "managed": _canon(name) in MANAGED})
    for manager, have in (("conda", {n: f"{r.version} {r.build}".strip() for n, r in conda.items()}),
                          ("pip", {n: d["version"] for n, d in pip.items()})):
        want = {(_canon(e.name) if manager == "pip" else e.name):
                (f"{e.version} {e.build or ''}".strip() if manager == "conda" else e.version)
                for e in entries if e.manager == manager}
        for name in sorted(set(want) | set(have)):
            if name not in have:
                add("removed", name, manager, want[name], None)
            elif name not in want:
                add("added", name, manager, None, have[name])
            elif not (_same(want[name], have[name]) if manager == "pip" else want[name] == have[name]):
                add("changed", name, manager, want[name], have[name])
    return {"checked": True, "lock": str(lock), "platform": platform, "packages": out}


def _exact(version: str | None):
    from envctl.matrix.versions import ANY, Spec, SpecError

    for text in (version, f"=={version}"):
        try:
            return Spec.parse(text) if version else ANY
        except SpecError:
            continue
    return ANY


def installed_target(found: dict, target=None, opset: int | None = None, facts: dict | None = None):
    """A Target whose specs are the env's exact versions, for rules.check_target."""
    from envctl.matrix.loader import Target
    from envctl.host.platform import host_platform

    pk = found["packages"]
    dist = {_canon(d["name"]): d["version"] for d in found["dists"]}
    ver = {k: dist.get(k) or (pk.get(k) or {}).get("version") for k in ("torch", "onnx", "protobuf", "numpy", "onnxscript")}
    ver["onnxruntime"] = dist.get("onnxruntime") or dist.get("onnxruntime-gpu") or pk["onnxruntime"].get("version")
    specs = {k: _exact(v) for k, v in ver.items()}
    exact = dict(python=_exact(found["python"]), torch=specs["torch"], onnx=specs["onnx"], onnxruntime=specs["onnxruntime"],
                 protobuf=specs["protobuf"], numpy=specs["numpy"] if ver["numpy"] else None,
                 onnxscript=specs["onnxscript"] if ver["onnxscript"] else None)
    if target is not None:
        return replace(target, **exact, opset=opset or target.opset)
    providers = (pk["onnxruntime"].get("providers") or [])
    gpu = "onnxruntime-gpu" in dist or "CUDAExecutionProvider" in providers
    torch_new = specs["torch"].exact is not None and specs["torch"].exact.release[:2] >= (2, 5)
    jetson = (facts or {}).get("jetson") or {}
    return Target(
        name="installed", platforms=(host_platform(),), channels=tuple(found.get("channels") or ("conda-forge",)),
        opset=opset or 18, exporters=("torchscript", "dynamo") if torch_new else ("torchscript",),
        cuda=(pk["torch"].get("cuda") or None), onnxruntime_build="gpu" if gpu else "cpu",
        execution_provider="CUDAExecutionProvider" if gpu else "CPUExecutionProvider",
        pip=tuple(found.get("pip_managed", ())),
        host_provides=tuple((k, str(v)) for k, v in jetson.items() if k in ("l4t", "cuda")), **exact)


def diagnose(matrix_path: Path, *, target: str | None = None, prefix: Path | None = None, opset: int | None = None) -> dict:
    """Everything `envctl doctor` reports, as JSON-ready data (see the module doc)."""
    from envctl.core.hashing import same_digest
    from envctl.create.build import env_state
    from envctl.lock.lockfile import load_lock
    from envctl.host.facts import host_facts
    from envctl.core.paths import project_root
    from envctl.pipeline.stages import host_blocker
    from envctl.host.platform import host_platform
    from envctl.rules.api import check_target

    from envctl.everyday.locate import locate_env

    found_env = locate_env(matrix_path, target, prefix)
    chosen, where, python, kind = found_env.target, found_env.prefix, found_env.python, found_env.kind
    facts = host_facts()
    report: dict = {"host": facts, "env": {"kind": kind, "prefix": str(where), "python": str(python),
                                           "target": chosen.name if chosen else None},
                    "packages": {}, "targets": [], "drift": {"checked": False}, "findings": [], "problems": [],
                    "warnings": []}
    problems, warnings = report["problems"], report["warnings"]
    found = probe(python)
    if "error" in found:
        problems.append(f"the env's python cannot be probed: {found['error']}")
        report["breaks_export"] = True
        return report
    report["env"]["python_version"] = found["python"]
    report["packages"] = found["packages"]
    dists = {_canon(d["name"]) for d in found["dists"]}
    custom = "" if prefix is None else f" --prefix {where}"
    fix = (f"`envctl create --target {chosen.name}{custom} --force` restores the locked env" if chosen
           else "`envctl create --target T` builds an env with a locked export stack")
    for package in REQUIRED:
        error = found["packages"][package]["error"]
        if error:
            problems.append(f"import {package} fails: {error}. Remedy: {_import_remedy(package, error, fix)}")
    if {"onnxruntime", "onnxruntime-gpu"} <= dists:
        warnings.append("onnxruntime and onnxruntime-gpu are both installed and share one module: uninstall both, "
                        "then install only the one you need")

    # which matrix targets this machine can run
    if Path(matrix_path).exists():
        from envctl.matrix.project import Project

        project = found_env.project or Project.load(matrix_path)  # read once: locate_env may have read it
        for t in project.matrix.targets.values():
            why = host_blocker(t, facts)
            report["targets"].append({"target": t.name, "runnable": why is None, "reason": why})

    # drift against the lock the env was created from
    state = env_state(where) or {}
    conda, owned = _conda_installed(where)
    found["channels"] = sorted({r.channel.rstrip("/") for r in conda.values() if r.channel})
    found["pip_managed"] = [n for n in ("torch", "onnx", "onnxruntime", "protobuf", "numpy")
                            if any(_canon(d["name"]) in (n, n + "-gpu") and d["folder"] not in owned for d in found["dists"])]
    name = chosen.name if chosen else state.get("target")
    if state and name:
        lock = lock_path(project_root(matrix_path), name)
        lock = lock if lock.exists() or not state.get("lock_file") else Path(state["lock_file"])
        if lock.exists():
            report["drift"] = drift(where, lock, state.get("host_platform") or host_platform(), found["dists"])
            changed = not same_digest(load_lock(lock).sha256, state.get("lock_sha256"))
            report["drift"]["lock_changed"] = changed
            managed = [p for p in report["drift"]["packages"] if p["managed"]]
            if changed:
                warnings.append(f"{lock.name} changed since this env was created: `envctl create --target {name}` "
                                "updates the env (differences below are against the new lock)")
            elif managed:
                problems.append("the env drifted from its lock in " + ", ".join(
                    f"{p['name']} ({p['locked'] or 'absent'} -> {p['installed'] or 'removed'})" for p in managed)
                    + f": `envctl create --target {name}{custom} --force` restores it")
        else:
            report["drift"]["why"] = f"no lock at {lock}"
    else:
        report["drift"]["why"] = "not an env made by envctl (no conda-meta/envctl-state.json): no lock to compare"

    # rules, on the exact installed versions
    if all(found["packages"][k]["version"] or _canon(k) in dists for k in ("torch", "onnx", "onnxruntime")):
        installed = installed_target(found, chosen, opset, facts)
        report["rules_at"] = {"opset": installed.opset, "exporters": list(installed.exporters)}
        report["findings"] = [f.__dict__ for f in check_target(installed)]
        problems += [f"rule {f['rule']}: {f['message']}" for f in report["findings"] if f["severity"] == "error"]
        if "dynamo" in installed.exporters and found["packages"]["onnxscript"]["error"] and chosen is not None:
            problems.append(f"the dynamo exporter needs onnxscript: {found['packages']['onnxscript']['error']}")
    if chosen is not None and found["packages"]["onnxruntime"].get("providers") is not None:
        if chosen.execution_provider not in found["packages"]["onnxruntime"]["providers"]:
            problems.append(f"{chosen.name} needs {chosen.execution_provider}; this onnxruntime offers "
                            f"{', '.join(found['packages']['onnxruntime']['providers'])}")
    torch_cuda = found["packages"]["torch"].get("cuda")
    driver = (facts.get("nvidia") or {}).get("driver_cuda")
    if torch_cuda and driver and int(torch_cuda.split(".")[0]) > int(driver.split(".")[0]):
        warnings.append(f"torch is a CUDA {torch_cuda} build; the driver supports CUDA {driver}: upgrade the driver")
    report["breaks_export"] = bool(problems)
    return report
