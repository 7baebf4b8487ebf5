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
