"""Certify a target: run the smoke runner inside its env and write a certificate.

The runner (envctl/smoke/runner.py) runs with the env's own Python in
isolated mode, so nothing from envctl's interpreter leaks in; it writes a JSON
result that this module turns into `certs/<target>.json`, adding what only
the host knows: the lock it was built from, host facts, whether it ran on the
hardware the target names, and how the runner process ended (a crash or a
hang is a classified failure of the target, never a crash of envctl).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from envctl import __version__
from envctl.core.atomic import ensure_inside, write_text_atomic
from envctl.core.errors import EnvctlError
from envctl.core.limits import MAX_JSON_BYTES, read_json
from envctl.smoke import BUILTIN_MODELS
from envctl.core.paths import cert_path, env_python
from envctl.lock.lockfile import lock_path
from envctl.core.process import foreign_python_env, kill_tree, signal_text, start_tree
from envctl.certify.certificate import HOST, SCHEMA_VERSION, Certificate, Certification, LockRef, assemble
from envctl.smoke.envctl_smoke_certificate import created_now
from envctl.smoke.envctl_smoke_protocol import Failure, RunnerResult, Spec, remedy_of
from envctl.certify.truth import host_models, input_files, limit_findings
from envctl.host.runnable import needs_gpu
from envctl.host.facts import host_facts
from envctl.matrix.loader import Target
from envctl.host.platform import host_platform

DEFAULT_SIZES = [1, 2, 5]
DEFAULT_TIMEOUT = 900
# Lock entry names -> the names the runner reports versions under.
VERSION_NAMES = {"pytorch": "torch", "torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime",
                 "onnxruntime-gpu": "onnxruntime", "protobuf": "protobuf", "numpy": "numpy",
                 "python": "python", "onnxscript": "onnxscript"}


def _classified(klass: str, message: str) -> dict:
    """A failure the host saw (the runner died, hung or wrote nothing readable), as the protocol writes it."""
    return Failure.of(klass, message).to_json()


def provider_order(target_ep: str) -> list[str]:
    if target_ep == "TensorrtExecutionProvider":
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if target_ep == "CPUExecutionProvider":
        return ["CPUExecutionProvider"]
    return [target_ep, "CPUExecutionProvider"]


def expected_versions(lock_file: Path, platform_name: str) -> dict[str, str]:
    """Versions the lock promises on this platform, by the runner's names."""
    from envctl.lock.lockfile import load_lock

    return {VERSION_NAMES[p.name]: p.version for p in load_lock(lock_file).for_platform(platform_name)
            if p.name in VERSION_NAMES}


def _lock_digest(lock_file: Path) -> str | None:
    """`sha256:<hex>` of the lock (read once per command, with the other readers), or None without one."""
    from envctl.lock.lockfile import load_lock

    try:
        return load_lock(lock_file).sha256
    except EnvctlError:
        return None


def run_smoke(python: Path, spec: Spec, timeout: float, progress=None) -> tuple[RunnerResult | None, dict]:
    """Run the smoke runner; return (its checked result or None, process facts incl. a failure if it died).
    A full disk, no memory or no file handles (here or in the runner) is resource_exhausted."""
    from envctl.certify.truth import oserror_failure, resource_failure, strip_ansi

    remedy = remedy_of("resource_exhausted")
    try:
        result, facts = _run_smoke(python, spec, timeout, progress)
    except OSError as exc:
        failure = oserror_failure(exc, remedy)
        if failure is None:
            raise
        return None, {"exit_code": None, "output_tail": "", "failure": failure}
    facts["output_tail"] = strip_ansi(facts.get("output_tail", ""))
    if result is None and facts.get("failure", {}).get("class") == "runner_crash":
        facts["failure"] = resource_failure(facts["output_tail"], remedy) or facts["failure"]
    return result, facts


def _run_smoke(python: Path, spec: Spec, timeout: float, progress=None) -> tuple[RunnerResult | None, dict]:
    from envctl.smoke import RUNNER_PATH

    with tempfile.TemporaryDirectory(prefix="envctl-smoke-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        workdir = spec.workdir or str(Path(tmp) / "work")
        Path(workdir).mkdir(parents=True, exist_ok=True)
        spec = replace(spec, workdir=workdir)
        spec_file.write_text(json.dumps(spec.to_json()))
        started = time.monotonic()
        log_path = Path(tmp) / "output.log"
        # Output goes to a file, not a pipe: a background process the model started would
        # hold a pipe open and keep certify waiting long after the runner itself is done.
        with open(log_path, "wb") as log:
            try:
                proc = start_tree(  # its own process tree, so a hang is killed with all its children
                    [str(python), "-I", str(RUNNER_PATH), str(spec_file), str(result_file)],
                    stdout=log, stderr=subprocess.STDOUT,
                    env=foreign_python_env() | {"ENVCTL_SMOKE_PROGRESS": str(Path(tmp) / "progress.jsonl")},
                )
            except OSError as exc:
                return None, {"exit_code": None, "output_tail": "", "failure": _classified("runner_crash", f"cannot start {python}: {exc}")}
            # Killed on every way out (finished, hung, Ctrl-C, SIGTERM/SIGHUP via interrupts.py)
            # before the caller's env lock is released and before the temp folder is removed.
            from envctl.core.interrupts import on_interrupt

            on_interrupt(proc.pid, lambda: kill_tree(proc))
            try:
                from envctl.certify.runner_progress import follow

                follow(proc, Path(tmp) / "progress.jsonl", timeout, progress)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # Finished, hung or interrupted: nothing the runner started outlives it.
                kill_tree(proc)
                proc.wait()
                on_interrupt(proc.pid, None)
        tail = _tail(log_path)
        if timed_out:
            return None, {"exit_code": None, "seconds": time.monotonic() - started, "output_tail": tail,
                          "failure": _classified("timeout", f"the smoke run did not finish within {timeout:g} s and was killed"
                                                 + _where(result_file))}
        facts = {"exit_code": proc.returncode, "seconds": round(time.monotonic() - started, 3), "output_tail": tail}
        if proc.returncode < 0:
            facts["failure"] = _classified("runner_crash", f"the smoke runner died from {signal_text(-proc.returncode)}"
                                           + _where(result_file))
            return None, facts
        try:
            # Written inside the env, where model code runs: capped, regular file, bounded depth.
            checked = RunnerResult.from_json(read_json(result_file, MAX_JSON_BYTES, "smoke runner's result"))
        except (OSError, ValueError, EnvctlError) as exc:  # ProtocolError is a ValueError: a wrong shape, named
            detail = exc.message if isinstance(exc, EnvctlError) else exc
            facts["failure"] = _classified("runner_crash", f"the smoke runner exited {proc.returncode} without a readable result ({detail})")
            return None, facts
        return checked, facts


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode(errors="replace")[-limit:]
    except OSError:
        return ""


def _where(result_file: Path) -> str:
    """' during <model> with the <exporter> exporter', from the runner's in-progress result, if it left one."""
    try:
        partial = read_json(result_file, MAX_JSON_BYTES, "smoke runner's result")
        where = partial.get("in_progress") or {}
        model, exporter = where.get("model"), where.get("exporter")
    except (OSError, ValueError, AttributeError, EnvctlError):
        return ""
    if not model:
        return ""
    return f" while loading {model}" if not exporter else f" during {model} with the {exporter} exporter"


def interpreter_placement() -> dict[str, Any]:
    """build_spec's placement for an interpreter with no target (the host's, `envctl export` without one):
    the runner settles "auto" to CUDA when that torch sees a GPU, else the CPU, and reports what it used.
    Asking torch here would start (or import) torch twice per certification."""
    return {"device": "auto", "providers": provider_order("CUDAExecutionProvider"), "required": None}


def build_spec(target: Target | None, root: Path, *, device: str, providers: list[str], required: str | None,
               expected: dict[str, str]) -> Spec:
    """The runner's spec for a target (None: the host's interpreter, every built-in model)."""
    common: dict[str, Any] = dict(providers=providers, required_provider=required, device=device, expected_versions=expected,
                  model_paths=[str(root)], sizes=list(DEFAULT_SIZES), seed=0)
    if target is None:
        # Opset 18 is the dynamo exporter's native opset (docs/compatibility.md §5); at
        # 17 torch 2.13's down-conversion of Split fails the checker.
        return Spec(target=HOST, opset=18, exporters=["torchscript", "dynamo"], models=list(BUILTIN_MODELS),
                    tolerances={"atol": 1e-4, "rtol": 1e-3}, simplify=None, **common).check()
    return Spec(target=target.name, opset=target.opset, exporters=list(target.exporters), models=list(target.models),
                tolerances={"atol": target.atol, "rtol": target.rtol}, simplify=target.simplify, **common).check()


def _base(target_name: str, facts: dict) -> dict[str, Any]:
    return {"certificate_version": SCHEMA_VERSION, "target": target_name, "envctl_version": __version__,
            "created_at": created_now(), "host": facts}


def certify_lock_only(root: Path, target: Target, reason: str, *, facts: dict | None = None,
                      out: Path | None = None) -> Certificate:
    """The certificate of a target this host cannot run: the lock's state, nothing ran."""
    from envctl.lock.solve import check_locks

    started = time.monotonic()
    lock_file = lock_path(root, target)
    stale = list(check_locks(root, [target]))
    data = _base(target.name, facts if facts is not None else host_facts())
    data.update(target_hash=target.definition_hash(), xfail=target.xfail, result="skipped", reason=reason,
                certified="lock-only",
                lock={"path": str(lock_file), "fresh": not stale, "problem": stale[0].reason if stale else None,
                      # status compares this with the current lock, as for run certificates
                      "sha256": _lock_digest(lock_file)},
                ran_on_target_hardware=False, runs=[], failure=None, seconds=round(time.monotonic() - started, 3))
    return _write(root, target.name, data, out)


def certify_env(root: Path, target: Target, prefix: Path, *, facts: dict | None = None, timeout: float | None = None,
                out: Path | None = None, progress=None, inputs: tuple = ()) -> Certificate:
    """Run the smoke runner inside the built env at `prefix`; write and return the certificate.
    `inputs`: .npz/.pt files of real inputs for the target's user models (--inputs)."""
    files = input_files(inputs)
    started = time.monotonic()
    python = env_python(prefix)
    if not python.exists():
        raise EnvctlError(f"no environment at {prefix} (its python {python} is missing)",
                          hint=f"Run `envctl create --target {target.name}`.")
    lock_file = lock_path(root, target)
    expected = expected_versions(lock_file, host_platform()) if lock_file.exists() else {}
    spec = build_spec(target, root, device="cuda" if needs_gpu(target) else "cpu",
                      providers=provider_order(target.execution_provider), required=target.execution_provider,
                      expected=expected)
    spec.input_files = files
    known = dict(target=target.name, host=facts if facts is not None else host_facts(),
                 target_hash=target.definition_hash(), xfail=target.xfail,
                 lock=LockRef(path=str(lock_file), sha256=_lock_digest(lock_file)),
                 environment={"prefix": str(prefix), "python": str(python)})
    if progress:
        progress("certify", target=target.name, message=f"smoke export-and-infer with {python}")
    from envctl.create.prefixswap import env_in_use

    # A create of the same prefix waits until this run is over (and this run waits for a
    # create in progress), so the runner never sees an env swapped or deleted under it.
    with env_in_use(prefix, progress):
        runner_result, process = run_smoke(python, spec, timeout or target.timeout, progress)
    return _finish(root, known, spec, runner_result, process, started, out)


def certify_host(root: Path, *, timeout: float | None = None, out: Path | None = None, progress=None,
                 matrix=None, inputs: tuple = ()) -> Certificate:
    """Certify the interpreter envctl runs in ('host'): no lock, no env of envctl's. It runs
    every model the `matrix`'s targets name (user models included), or the built-ins."""
    files = input_files(inputs)
    started = time.monotonic()
    python = Path(sys.executable)
    spec = replace(build_spec(None, root, **interpreter_placement(), expected={}),
                   models=host_models(matrix), input_files=files)  # user models are certified, never dropped
    known = dict(target=HOST, host=host_facts(), lock=None, environment={"prefix": sys.prefix, "python": str(python)})
    if progress:
        progress("certify", target=HOST, message=f"smoke export-and-infer with {python}")
    runner_result, process = run_smoke(python, spec, timeout or DEFAULT_TIMEOUT, progress)
    return _finish(root, known, spec, runner_result, process, started, out)


def _finish(root: Path, known: dict[str, Any], spec: Spec, runner_result: RunnerResult | None, process: dict,
            started: float, out: Path | None) -> Certificate:
    """The certificate of a run, assembled as a bundle's devcert.py assembles it on a device, plus
    what only the host knows: where the measured ONNX Runtime limits disagree with the rules."""
    findings = limit_findings(runner_result.versions, runner_result.measured_limits) if runner_result else []
    cert = assemble(envctl_version=__version__, certified=Certification.RUN, spec=spec, result=runner_result,
                    process=process, seconds=time.monotonic() - started, extra={"findings": findings}, **known)
    return _write(root, cert.target, cert.to_json(), out)


def _write(root: Path, name: str, data: dict, out: Path | None) -> Certificate:
    # certs/ may be a symlink committed into the project: an explicit --out is the user's choice, certs/ is not.
    path = out or ensure_inside(root, cert_path(root, name), "certificate")
    cert = Certificate.from_json(json.loads(json.dumps(data, default=str)))
    write_text_atomic(path, cert.dumps())  # dumps checks again: what is written reads back
    cert.path = path
    return cert
