"""Run the real `envctl` CLI in this interpreter and report what the process loaded and started.

    python tests/support/cliprobe.py REPORT.json -- ARG ...

runs `envctl ARG ...` through the same entry point as the console script
(envctl.cli.app.main), and when it exits (however it exits) writes REPORT.json:

    {"exit_code": int, "modules": [every module name in sys.modules],
     "processes": [[argv...] of every process it started, via subprocess or os.exec*/spawn*]}

Processes are seen through Python's audit hooks (PEP 578), so nothing of
envctl is patched. Tests use it (through `probe` and `loaded` below) to prove
what a command path does *not* pay for: importing pydantic, conda-lock or
rattler on a no-op `create`, torch in the parent of `certify`/`export`, a
second interpreter start per certification.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY_HOST = ("pydantic", "conda_lock", "rattler", "typer._adapters")  # a no-op path needs none of them
EXPORT_STACK = ("torch", "onnx", "onnxruntime", "numpy")  # the runner's, never envctl's own process

PROCESS_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn")


def probe(args: list[str], cwd: Path, report: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict]:
    """`envctl ARGS` through this script, with this checkout's src first on the path:
    (the finished process, {exit_code, modules, processes})."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, str(report), "--", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(report.read_text())


def loaded(report: dict, names: tuple[str, ...]) -> list[str]:
    """Which of `names` (packages, or modules such as typer._adapters) the process had imported."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in report["modules"]))


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        sys.stderr.write(__doc__ or "")
        return 2
    report, args = sys.argv[1], sys.argv[3:]
    started: list[list[str]] = []

    def hook(event: str, payload: tuple) -> None:
        if event in PROCESS_EVENTS:
            argv = payload[1] if len(payload) > 1 else payload[0]
            started.append([os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else str(a)
                            for a in (argv if isinstance(argv, (list, tuple)) else [argv])])

    sys.addaudithook(hook)
    sys.argv = ["envctl", *args]
    code: object = 0
    try:
        from envctl.cli.app import main as envctl_main

        envctl_main()
    except SystemExit as exc:
        code = exc.code
    finally:
        with open(report, "w", encoding="utf-8") as handle:
            json.dump({"exit_code": code if isinstance(code, int) else (0 if code is None else 1),
                       "modules": sorted(sys.modules), "processes": started}, handle)
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
