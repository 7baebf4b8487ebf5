"""envctl device certification: run the bundled smoke runner on the device, write a certificate.

Shipped inside every bundle (share/envctl-bundle/devcert.py) and run by the
bundle's `--certify` with the installed env's python. Standard library only
(Python 3.8+): the device has no envctl. The certificate has the same shape
as `certs/<target>.json`, with `certified: "device"` and the device's facts
(glibc, the GPU and driver CUDA from nvidia-smi, the L4T release, board model
and CUDA version files on a Jetson). Back on the team's machine,
`envctl certify --import FILE` files it after checking its lock hash.

  devcert.py --prefix DIR [--out FILE] [--timeout S]
Exit 0 passed, 1 failed, 2 bad arguments.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

META = os.path.join("share", "envctl-bundle")


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def device_facts():
    libc, libc_version = platform.libc_ver()
    machine = platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64"}.get(machine, machine)
    facts = {
        "hostname": socket.gethostname(), "platform": "linux-%s" % arch if sys.platform.startswith("linux") else sys.platform,
        "os": platform.system(), "os_release": platform.release(), "machine": platform.machine(),
        "cpu": _cpu(), "cpus": os.cpu_count(), "libc": ("%s %s" % (libc, libc_version)).strip() or None,
        "os_name": _os_name(),
    }
    facts["nvidia"] = _nvidia_smi()
    facts["jetson"] = _jetson()
    facts["has_nvidia_gpu"] = bool((facts["nvidia"] and facts["nvidia"].get("gpus")) or facts["jetson"])
    return facts


def _cpu():
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _os_name():
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def _nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=20).stdout
        head = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {"error": "nvidia-smi is present but failed"}
    gpus = [dict(zip(("name", "driver"), (p.strip() for p in line.split(",")))) for line in out.splitlines() if line.strip()]
    match = re.search(r"CUDA Version:\s*([\d.]+)", head)
    return {"gpus": gpus, "driver_cuda": match.group(1) if match else None}


def _jetson():
    # NVIDIA documents these files on L4T / JetPack boards, which have no nvidia-smi.
    text = _read("/etc/nv_tegra_release")
    if text is None:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    info = {"l4t": "R%s.%s" % (match.group(1), match.group(2)) if match else text.strip()[:80]}
    model = _read("/proc/device-tree/model")
    if model:
        info["model"] = model.strip("\0\n ")
    for path in ("/usr/local/cuda/version.json", "/usr/local/cuda/version.txt"):
        found = re.search(r"(\d+\.\d+(\.\d+)?)", _read(path) or "")
        if found:
            info["cuda"] = found.group(1)
            break
    return info


def _worst(run):
    worst = {"max_abs": None, "max_rel": None}

    def walk(node):
        if isinstance(node, dict):
            for key in ("max_abs", "max_rel"):
                value = node.get(key)
                if isinstance(value, (int, float)) and (worst[key] is None or value > worst[key]):
                    worst[key] = value
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(run.get("stages", []))
    return worst if worst["max_abs"] is not None else None


# A minimal copy of envctl.core.process's start_tree/kill_tree (this file runs without envctl):
# the runner gets its own process group so a hang is killed with its children; names POSIX
# lacks elsewhere are looked up when used.
def _own_tree():
    if hasattr(os, "setsid"):
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def _kill_tree(proc):
    if hasattr(os, "killpg") and hasattr(signal, "SIGKILL"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif shutil.which("taskkill") and proc.poll() is None:
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True)
    try:
        proc.kill()
    except OSError:
        pass


def run_smoke(python, runner, spec, timeout):
    tmp = tempfile.mkdtemp(prefix="envctl-devcert-")
    try:
        spec = dict(spec, workdir=os.path.join(tmp, "work"))
        os.makedirs(spec["workdir"])
        spec_file, result_file, log = (os.path.join(tmp, n) for n in ("spec.json", "result.json", "output.log"))
        with open(spec_file, "w") as handle:
            json.dump(spec, handle)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CONDA_", "VIRTUAL_ENV"))}
        env["PYTHONNOUSERSITE"] = "1"
        started = time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen([python, "-I", runner, spec_file, result_file], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, **_own_tree())
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # also on Ctrl-C, SIGTERM or SIGHUP: the runner's whole tree goes, as with `envctl certify`
                _kill_tree(proc)
                proc.wait()
        with open(log, "rb") as handle:
            tail = handle.read().decode(errors="replace")[-4000:]
        facts = {"exit_code": proc.returncode, "seconds": round(time.monotonic() - started, 3), "output_tail": tail}
        if timed_out:
            facts["failure"] = {"class": "timeout", "stage": "runner", "message": "the smoke run did not finish within %g s" % timeout}
            return None, facts
        try:
            with open(result_file) as handle:
                result = json.load(handle)
            if not isinstance(result, dict) or "status" not in result:
                raise ValueError("no status")
        except (OSError, ValueError) as exc:
            facts["failure"] = {"class": "runner_crash", "stage": "runner",
                                "message": "the smoke runner exited %s without a readable result (%s)" % (proc.returncode, exc)}
            return None, facts
        return result, facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(cert):
    rows = [("model", "exporter", "result", "failure", "worst abs / rel")]
    for run in cert.get("runs") or []:
        worst = run.get("worst") or {}
        failure = (run.get("failure") or {}).get("class") or ""
        err = "-" if not worst else "%.2e / %.2e" % (worst["max_abs"], worst["max_rel"] or 0.0)
        rows.append((run.get("model", "?"), run.get("exporter", "?"), run.get("status", "?"), failure, err))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    host = cert["host"]
    gpu = ", ".join(g.get("name", "?") for g in ((host.get("nvidia") or {}).get("gpus") or [])) or "none"
    jetson = host.get("jetson") or {}
    print("device: %s (%s), %s, GPU %s%s" % (host["hostname"], host["platform"], host.get("libc") or "libc ?", gpu,
                                               (", L4T %s, CUDA %s" % (jetson.get("l4t"), jetson.get("cuda", "?"))) if jetson else ""))
    failure = cert.get("failure") or {}
    verdict = cert["result"].upper()
    print("verdict: %s%s" % (verdict, (" (%s at %s: %s)" % (failure.get("class"), failure.get("stage"), failure.get("message", "")[:200])) if failure else ""))


def main(argv):
    parser = argparse.ArgumentParser(prog="devcert.py")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out")
    parser.add_argument("--timeout", type=whole_seconds)
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:  # SIGINT too: run in the background by the header, it starts out ignored
            signal.signal(signum, _interrupted)
    try:
        return certify(args)
    except KeyboardInterrupt:
        sys.stderr.write("envctl bundle: interrupted: the smoke run was stopped; no certificate was written\n")
        return 130


def whole_seconds(text):
    """envctl's own rule for --timeout: whole seconds, at least 1 (so not nan, inf, 0 or -5)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("Invalid value for '--timeout': Input should be a valid integer (not %r)" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("Invalid value for '--timeout': Input should be greater than or equal to 1")
    return value


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def write_certificate(out, text):
    """`out` holds `text`, atomically: a new temp file (O_EXCL: never a planted symlink) renamed over it."""
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(out), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)  # replaces a symlink at `out` itself, never the file it points to
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def certify(args):
    prefix = os.path.abspath(args.prefix)
    meta = os.path.join(prefix, META)
    try:
        with open(os.path.join(meta, "spec.json")) as handle:
            spec = json.load(handle)
        with open(os.path.join(meta, "info.json")) as handle:
            info = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.stderr.write("envctl bundle: %s is not an env installed from a bundle (%s)\n" % (prefix, exc))
        return 2
    spec_timeout = spec.pop("timeout", None)
    timeout = args.timeout or spec_timeout or 900
    xfail = spec.pop("xfail", None)
    target_hash = spec.pop("target_hash", None)
    spec["model_paths"] = [os.path.join(meta, "models")]
    python = os.path.join(prefix, "bin", "python")
    started = time.monotonic()
    facts = device_facts()
    print("certifying %s on this device with %s ..." % (info["target"], python))
    result, process = run_smoke(python, os.path.join(meta, "smoke", "runner.py"), spec, timeout)
    runs = (result or {}).get("runs", [])
    for run in runs:
        run["worst"] = _worst(run)
    status = "passed" if result and result.get("status") == "passed" else "failed"
    cert = {
        "certificate_version": 2, "target": info["target"], "target_hash": target_hash,
        "envctl_version": info["envctl_version"],
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": facts, "xfail": xfail, "result": status, "reason": None, "certified": "device",
        "ran_on_target_hardware": True,
        "lock": {"path": "bundle:" + info["target"], "sha256": info["lock_sha256"]},
        "bundle": {"platform": info["platform"], "created_at": info["created_at"]},
        "environment": {"prefix": prefix, "python": python},
        "failure": (result or {}).get("failure") if result else process.get("failure"),
        "runs": runs, "versions": (result or {}).get("versions"), "versions_expected": spec.get("expected_versions"),
        "providers_available": (result or {}).get("providers_available"),
        "spec": {k: spec.get(k) for k in ("opset", "exporters", "providers", "required_provider", "device", "models",
                                          "tolerances", "sizes", "seed", "simplify")},
        "runner": dict({k: v for k, v in process.items() if k != "failure"}, stages=(result or {}).get("stages", [])),
        "seconds": round(time.monotonic() - started, 3),
        # what the verdicts could not prove, per model and exporter (as envctl.certify.runner_io types them)
        "caveats": [dict(c, model=run.get("model"), exporter=run.get("exporter")) for run in runs
                    for c in run.get("caveats") or [] if isinstance(c, dict)],
    }
    out = args.out or os.path.join(os.getcwd(), "%s.device-cert.json" % info["target"])
    try:
        write_certificate(out, json.dumps(cert, indent=2) + "\n")
    except OSError as exc:
        sys.stderr.write("envctl bundle: cannot write the certificate %s: %s\n" % (out, exc.strerror or exc))
        return 1
    print_table(cert)
    print("device certificate: %s\nfile it on the team's machine: envctl certify --import %s" % (out, os.path.basename(out)))
    return 0 if status == "passed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
