"""Where there is no fcntl (Windows), every envctl module imports and lock-only certification runs.

Each check runs in a fresh interpreter with `fcntl` made unimportable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NO_FCNTL = "import sys; sys.modules['fcntl'] = None\n"


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_FCNTL + code], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_every_module_imports_without_fcntl(tmp_path):
    modules = sorted(".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "src" / "envctl").rglob("*.py")
                     if "smoke" not in p.parts and p.name != "__main__.py")
    done = _run("import importlib\n"
                f"for name in {modules!r}:\n"
                "    importlib.import_module(name)\n"
                "print('imported', len(" + repr(modules) + "))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"imported {len(modules)}" in done.stdout


def test_lock_only_certification_without_fcntl(tmp_path):
    shipped = (REPO / "envs" / "matrix.yaml").read_text()
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "matrix.yaml").write_text(shipped)
    code = ("import sys\nfrom envctl.cli import main\n"
            "sys.argv = ['envctl', 'certify', '--target', 'windows-cuda12', '--json']\nmain()\n")
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    cert = json.loads(done.stdout)
    assert cert["certified"] == "lock-only" and cert["result"] == "skipped"
    assert (tmp_path / "certs" / "windows-cuda12.json").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="the point is the fallback on POSIX test machines")
def test_the_env_lock_falls_back_to_filelock(tmp_path):
    code = ("from pathlib import Path\nfrom envctl.create import prefixswap\n"
            "assert prefixswap.fcntl is None\n"
            f"with prefixswap.prefix_lock(Path({str(tmp_path / 'env')!r}), None) as waited:\n"
            "    print('held', waited)\n")
    done = _run(code, tmp_path)
    assert done.returncode == 0 and "held False" in done.stdout, done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="the point is the fallback on POSIX test machines")
def test_the_filelock_fallback_excludes_a_second_holder_until_the_first_lets_go(tmp_path):
    """Two processes without fcntl: the second waits (and says so) while the first holds the env's lock."""
    import time

    env, go = tmp_path / "env", tmp_path / "go"

    def holder(name: str) -> subprocess.Popen:
        code = (NO_FCNTL + "import os, time\nfrom pathlib import Path\nfrom envctl.create import prefixswap\n"
                f"mark = Path({str(tmp_path)!r}) / {name!r}\n"
                "def progress(event, **info):\n"
                "    (mark.parent / (mark.name + '.' + event)).write_text(info.get('message', ''))\n"
                f"with prefixswap.prefix_lock(Path({str(env)!r}), progress) as waited:\n"
                "    mark.write_text(str(waited))\n"
                f"    while not os.path.exists({str(go)!r}):\n"
                "        time.sleep(0.01)\n")
        return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def wait_for(path: Path, procs: list[subprocess.Popen], ceiling: float = 120) -> str:
        deadline = time.monotonic() + ceiling
        while not path.exists():
            assert all(p.poll() is None for p in procs), [p.communicate(timeout=60) for p in procs]
            assert time.monotonic() < deadline, f"{path.name} did not appear"
            time.sleep(0.01)
        return path.read_text()

    first = holder("first")
    second = None
    try:
        assert wait_for(tmp_path / "first", [first]) == "False"
        second = holder("second")
        wait_for(tmp_path / "second.waiting", [first, second])  # it found the lock taken
        assert not (tmp_path / "second").exists(), "the second process holds the lock while the first does"
        go.write_text("")
        assert first.wait(timeout=120) == 0, first.communicate(timeout=60)
        assert second.wait(timeout=120) == 0, second.communicate(timeout=60)
        assert (tmp_path / "second").read_text() == "True"  # it waited, then held it
    finally:
        go.write_text("")
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
