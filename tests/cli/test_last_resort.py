"""The process's last resort: an unexpected error is one paragraph (the trace only with --debug); Ctrl-C is one line.

Run as users run envctl: a separate process through `envctl.cli.main`, with
one function replaced by a bug (the only way to make envctl fail where no
handler expects it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.project import ONE_TARGET_MATRIX

PROGRAM = """\
import sys
import {module} as target

def bug(*args, **kwargs):
    raise {error}

target.{name} = bug
sys.argv = ["envctl", *sys.argv[1:]]
from envctl.cli import main
main()
"""


def run(tmp_path: Path, module: str, name: str, error: str, *args: str, env: dict | None = None):
    (tmp_path / "bin").mkdir(exist_ok=True)  # `list --prefix .` looks for an env's python first
    if not (tmp_path / "bin" / "python").exists():
        (tmp_path / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "m.yaml").write_text(ONE_TARGET_MATRIX)
    program = tmp_path / "buggy.py"
    program.write_text(PROGRAM.format(module=module, name=name, error=error))
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **(env or {}))
    if not env or "ENVCTL_DEBUG" not in env:
        full.pop("ENVCTL_DEBUG", None)
    return subprocess.run([sys.executable, str(program), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=full)


# Bugs in different places: a command body, a stage, the matrix loader, the global option callback.
BUGS = [
    ("envctl.everyday.listing", "installed_packages", ["list", "--prefix", "."]),
    ("envctl.cli.printing", "print_findings", ["matrix", "check", "--matrix", "m.yaml"]),
    ("envctl.core.output", "set_verbosity", ["matrix", "check"]),
]


@pytest.mark.parametrize(("module", "name", "args"), BUGS, ids=[b[1] for b in BUGS])
@pytest.mark.parametrize("error", ["RuntimeError('boom \\x1b[31m')", "AttributeError()", "RecursionError('deep')"])
def test_an_unexpected_error_is_one_paragraph(tmp_path, module, name, args, error):
    done = run(tmp_path, module, name, error, *args)
    assert done.returncode == 70, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "internal error" in lines[0] and "report it" in lines[0] and "--debug" in lines[0]
    assert "\x1b" not in done.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_full_trace(tmp_path, how):
    args = ["--debug", "list", "--prefix", "."] if how == "flag" else ["list", "--prefix", "."]
    env = {"ENVCTL_DEBUG": "1"} if how == "env" else None
    done = run(tmp_path, "envctl.everyday.listing", "installed_packages", "RuntimeError('boom')", *args, env=env)
    assert done.returncode == 70
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: boom" in done.stderr
    assert "internal error" in done.stderr


def test_envctl_errors_stay_one_paragraph_and_debug_adds_their_trace(tmp_path):
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    plain = subprocess.run([sys.executable, "-m", "envctl", "matrix", "check"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=full)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "matrix.yaml" in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "envctl", "--debug", "matrix", "check"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, env=full)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.parametrize(("module", "name", "args"), [
    ("envctl.core.output", "set_verbosity", ["matrix", "check"]),  # while options are parsed: outside any command
    ("envctl.everyday.listing", "installed_packages", ["list", "--prefix", "."]),  # inside a command body
])
def test_ctrl_c_anywhere_is_one_line_and_130(tmp_path, module, name, args):
    done = run(tmp_path, module, name, "KeyboardInterrupt", *args)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["envctl: interrupted; nothing half-written was kept."], done.stderr


def test_ctrl_c_signal_in_a_running_command(tmp_path):
    """A real SIGINT while a command waits: one line, 130."""
    program = tmp_path / "slow.py"
    program.write_text(textwrap.dedent("""\
        import sys, time
        import envctl.everyday.listing as listing
        def slow(*a, **k):
            print("ready", flush=True)
            time.sleep(60)
        listing.installed_packages = slow
        sys.argv = ["envctl", "list", "--prefix", "."]
        from envctl.cli import main
        main()
    """))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, str(program)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(2)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines() == ["envctl: interrupted; nothing half-written was kept."], err
