"""The one rule for env prefixes (core/prefixrule.py), and every surface that writes a prefix into code.

A prefix is pasted into launcher scripts, activation scripts and Python files;
what could be read as code there is refused up front, by create, the bundle's
sh header and installer, `pack --format oci --env-path` and `shell`. Fast
tests: nothing here builds an env (the bundle's own refusal is in
test_pack_hardening.py).
"""

from __future__ import annotations

import os
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.pack import HEADER_PATH

REPO = Path(__file__).resolve().parents[2]
ALLOWED = set(string.ascii_letters + string.digits + "/._+@- ")  # the rule docs/security.md states
# What the issue saw, and the rest of the class: every shell, Python, cmd and PATH metacharacter.
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", '"', "'", "\\", "\n", ";", "|", "&", "<", ">", "*", "?", "[", "]",
           "{", "}", "(", ")", "#", "~", "%", "!", "^", ":", "=", ",", "\t", "\r", "\x1b[31m", "\x00", "\u2028",
           "\u202e", "é", "＄", "$HOME", "${IFS}"]


def test_every_character_outside_the_allowed_set_is_refused_and_inside_it_accepted():
    from envctl.core.prefixrule import prefix_problem

    for code in range(0x250):
        char = chr(code)
        problem = prefix_problem(f"/opt/a{char}b/env")
        assert (problem is None) == (char in ALLOWED), (hex(code), problem)
    assert prefix_problem("/home/user/my envs/edge-1.2_x+y@z") is None


@given(st.text(min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_the_rule_is_exactly_the_allowed_set(text):
    from envctl.core.prefixrule import prefix_problem

    assert (prefix_problem("/x/" + text) is None) == all(c in ALLOWED for c in text)


def _header_case() -> str:
    """The prefix `case` of the bundle's sh header, with the character set pack substitutes into it."""
    from envctl.core.prefixrule import SH_BRACKET

    lines = HEADER_PATH.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("case $DIR in"))
    body = "\n".join(lines[start:start + 3]).replace("@@PREFIX_CHARS@@", SH_BRACKET)
    body = body.split(") fail", 1)[0] + ") echo refused;;\nesac\necho ${OK:-accepted}"
    return body.replace("\n  *[", "\n  *[", 1)


@pytest.mark.parametrize("shell", [s for s in ("dash", "bash", "busybox") if shutil.which(s)])
def test_the_bundle_header_applies_the_same_rule_in_sh(shell: str):
    """The header cannot import Python: its `case` pattern must refuse exactly what prefix_problem refuses."""
    from envctl.core.prefixrule import prefix_problem

    script = 'DIR=$1\n' + _header_case()
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    for code in list(range(1, 0x100)) + [0x2028, 0x202E, 0xFF04]:
        char = chr(code)
        prefix = f"/opt/a{char}b"
        out = subprocess.run(argv + ["-c", script, "sh", prefix], capture_output=True, timeout=10,
                             env={"LANG": "C.UTF-8", "PATH": os.environ["PATH"]}).stdout.decode()
        assert ("refused" in out) == (prefix_problem(prefix) is not None), (shell, hex(code), out)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or str(REPO / "src"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "envctl", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def _fake_env(prefix: Path) -> Path:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "conda-meta").mkdir()
    os.symlink(sys.executable, prefix / "bin" / "python")
    return prefix


@pytest.mark.parametrize("hostile", ["$(touch PWNED)", "`touch PWNED`", 'a"b', "a'b", "a\\b", "x;touch PWNED", "a\nb"])
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "xonsh", "powershell", "cmd_exe"])
def test_shell_print_script_refuses_a_prefix_with_code_in_it(tmp_path: Path, hostile: str, shell: str):
    from typer.testing import CliRunner

    from envctl.cli import app

    prefix = _fake_env(tmp_path / f"env{hostile}")
    result = CliRunner().invoke(app, ["shell", "--prefix", str(prefix), "--print-script", "--shell", shell, "--matrix",
                                      str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and result.stdout == "", result.stdout
    assert "refusing the env prefix" in result.stderr and "Traceback" not in result.stderr


def test_eval_of_print_script_runs_nothing_from_the_prefix(tmp_path: Path):
    """The documented use, `eval "$(envctl shell --print-script)"`, with a prefix holding a command."""
    prefix = _fake_env(tmp_path / "env$(touch PWNED)`touch PWNED2`")
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or str(REPO / "src"))
    proc = subprocess.run(["bash", "-c", f'eval "$("{sys.executable}" -m envctl shell --prefix "$1" --print-script '
                                         f'--shell bash)"', "bash", str(prefix)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert "refusing the env prefix" in proc.stderr


@pytest.mark.parametrize("hostile", HOSTILE[:12])
def test_oci_env_path_with_code_in_it_is_refused_before_anything_is_built(tmp_path: Path, hostile: str):
    out = tmp_path / "image.tar"
    proc = _cli("pack", "--target", "t", "--format", "oci", "--env-path", f"/opt/env{hostile}", "--out", str(out),
                "--matrix", str(tmp_path / "envs" / "matrix.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "--env-path" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("hostile", ["$(touch PWNED)", "`touch PWNED`", 'a"b', "a'b", "a\\b", "a\nb", "a;b", "a%b"])
def test_create_refuses_a_prefix_with_code_in_it_explicit_or_default(pack_project: Path, tmp_path: Path, hostile: str):
    """`create --prefix P`, and the default prefix under a project whose own path holds the characters."""
    from support.packing import PACK_TARGET

    prefix = tmp_path / f"env{hostile}"
    proc = _cli("create", "--target", PACK_TARGET, "--prefix", str(prefix), "--matrix",
                str(pack_project / "envs" / "matrix.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "refusing the env prefix" in proc.stderr, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
    root = tmp_path / f"proj{hostile}"
    shutil.copytree(pack_project, root, ignore=shutil.ignore_patterns(".envctl"))
    proc = _cli("create", "--target", PACK_TARGET, "--matrix", str(root / "envs" / "matrix.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "refusing the env prefix" in proc.stderr, proc.stdout + proc.stderr
    assert not (root / ".envctl" / "envs").exists() and not (tmp_path / "PWNED").exists()
