"""envctl device certification: run the bundled smoke runner on the device, write a certificate.

Shipped inside every bundle (share/envctl-bundle/devcert.py) and run by the
bundle's `--certify` with the installed env's python. Standard library only
(Python 3.8+): the device has no envctl. The certificate has the same shape
as `certs/<target>.json`, with `certified: "device"` and the device's facts
(glibc, the GPU and driver CUDA from nvidia-smi, the L4T release, board model
and CUDA version files on a Jetson), assembled by the same function as on the host
(smoke/envctl_smoke_certificate.assemble). Back on the team's machine,
`envctl certify --import FILE` files it after checking its lock hash.

  devcert.py --prefix DIR [--out FILE] [--timeout S]
Exit 0 passed, 1 failed, 2 bad arguments.
"""
import argparse
import dataclasses
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

# Beside this file in the bundle: smoke/ (the runner, its protocol and the certificate body, the
# same files `envctl certify` uses) and process.py (envctl's own start/kill of a process tree).
# `python -I` leaves the script's folder off sys.path, so both are put there by hand.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "smoke")]
try:
    import envctl_smoke_certificate as C
    import envctl_smoke_protocol as P
    from process import foreign_python_env, kill_tree, signal_text, start_tree
except ImportError:  # imported as envctl.pack.devcert on the host: envctl's own copies
    from envctl.core.process import foreign_python_env, kill_tree, signal_text, start_tree
    from envctl.smoke import envctl_smoke_certificate as C
    from envctl.smoke import envctl_smoke_protocol as P
finally:
    del sys.path[:2]

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


def run_smoke(python, runner, spec, timeout):
    """Run the runner on `spec` (a P.Spec); (its checked P.RunnerResult or None, how the process ended)."""
    tmp = tempfile.mkdtemp(prefix="envctl-devcert-")
    try:
        spec = dataclasses.replace(spec, workdir=os.path.join(tmp, "work"))
        os.makedirs(spec.workdir)
        spec_file, result_file, log = (os.path.join(tmp, n) for n in ("spec.json", "result.json", "output.log"))
        with open(spec_file, "w") as handle:
            json.dump(spec.to_json(), handle)
        started = time.monotonic()
        with open(log, "wb") as out:
            proc = start_tree([python, "-I", runner, spec_file, result_file], stdout=out, stderr=subprocess.STDOUT,
                              env=foreign_python_env())
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # also on Ctrl-C, SIGTERM or SIGHUP: the runner's whole tree goes, as with `envctl certify`
                kill_tree(proc)
                proc.wait()
        with open(log, "rb") as handle:
            tail = handle.read().decode(errors="replace")[-4000:]
        facts = {"exit_code": proc.returncode, "seconds": round(time.monotonic() - started, 3), "output_tail": tail}
        if timed_out:
            facts["failure"] = P.Failure.of("timeout", "the smoke run did not finish within %g s" % timeout).to_json()
            return None, facts
        if proc.returncode < 0:
            died = "the smoke runner died from %s" % signal_text(-proc.returncode)
            facts["failure"] = P.Failure.of("runner_crash", died).to_json()
            return None, facts
        try:
            with open(result_file) as handle:
                return P.RunnerResult.from_json(json.load(handle)), facts
        except (OSError, ValueError) as exc:  # ProtocolError is a ValueError naming the field
            facts["failure"] = P.Failure.of("runner_crash", "the smoke runner exited %s without a readable result (%s)"
                                            % (proc.returncode, exc)).to_json()
            return None, facts
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
    try:
        spec = P.Spec.from_json(spec)
    except P.ProtocolError as exc:
        sys.stderr.write("envctl bundle: %s holds no spec this runner reads (%s)\n" % (os.path.join(meta, "spec.json"), exc))
        return 2
    spec.model_paths = [os.path.join(meta, "models")]
    python = os.path.join(prefix, "bin", "python")
    started = time.monotonic()
    facts = device_facts()
    print("certifying %s on this device with %s ..." % (info["target"], python))
    result, process = run_smoke(python, os.path.join(meta, "smoke", "runner.py"), spec, timeout)
    cert = C.assemble(target=info["target"], envctl_version=info["envctl_version"], certified=C.Certification.DEVICE,
                      host=facts, lock=C.LockRef(path="bundle:" + info["target"], sha256=info["lock_sha256"]),
                      environment={"prefix": prefix, "python": python}, spec=spec, result=result, process=process,
                      seconds=time.monotonic() - started, target_hash=target_hash, xfail=xfail,
                      extra={"bundle": {"platform": info["platform"], "created_at": info["created_at"]}})
    out = args.out or os.path.join(os.getcwd(), "%s.device-cert.json" % info["target"])
    try:
        write_certificate(out, cert.dumps())  # dumps checks it reads back as a certificate
    except P.ProtocolError as exc:
        sys.stderr.write("envctl bundle: the certificate would not read back (%s); nothing was written\n" % exc)
        return 1
    except OSError as exc:
        sys.stderr.write("envctl bundle: cannot write the certificate %s: %s\n" % (out, exc.strerror or exc))
        return 1
    print_table(cert.to_json())
    print("device certificate: %s\nfile it on the team's machine: envctl certify --import %s" % (out, os.path.basename(out)))
    return 0 if cert.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
