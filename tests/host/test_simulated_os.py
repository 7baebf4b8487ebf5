"""envctl on Windows and macOS, as far as a Linux machine can tell: the real CLI in a CPython
stripped of what each OS lacks (tests/support/simulated_os.py), before anything is imported.

Regression tests for issue 20: `envctl --version` died on Windows at `signal.SIGHUP`,
`os.killpg`/`preexec_fn`/`CDLL(None)` were reachable from lock, create, certify and
run, and `run` crashed on macOS at `signal.sigtimedwait`. The real OSes run the
fast tier in CI (.github/workflows/tests.yml).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import simulated_os
from support.project import pip_target, write_project

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")
OSES = sorted(simulated_os.SIMULATE)
CEILING = 300


def envctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = SRC
    return env


def simulated(os_name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(simulated_os.command(os_name, *args), cwd=cwd, env=envctl_env(), capture_output=True,
                          text=True, timeout=CEILING)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


@pytest.fixture
def shipped(tmp_path) -> Path:
    """A project holding the shipped matrix (its windows-cuda12 and macos-arm64-cpu targets)."""
    (tmp_path / "envs").mkdir()
    shutil.copy(REPO / "envs" / "matrix.yaml", tmp_path / "envs" / "matrix.yaml")
    return tmp_path


@pytest.mark.parametrize("os_name", OSES)
def test_the_simulation_takes_away_what_the_os_lacks(os_name, tmp_path):
    """The fixture itself: it must remove what the issue saw break, or the tests below prove nothing."""
    probe = ("import os, signal, ctypes, subprocess, sys\n"
             "from support import simulated_os\n"
             f"simulated_os.SIMULATE[{os_name!r}]()\n"
             "print(hasattr(signal, 'sigtimedwait'), hasattr(signal, 'SIGHUP'), hasattr(os, 'killpg'))\n"
             "try:\n    import fcntl; print('fcntl')\nexcept ImportError:\n    print('no fcntl')\n"
             "try:\n    ctypes.CDLL(None, use_errno=True).prctl; print('prctl')\nexcept (TypeError, AttributeError):\n"
             "    print('no prctl')\n"
             "try:\n    subprocess.run(['true'], preexec_fn=lambda: None); print('preexec')\nexcept ValueError:\n"
             "    print('no preexec')\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO / "tests", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = {"windows": ["False False False", "no fcntl", "no prctl", "no preexec"],
                "macos": ["False True True", "fcntl", "no prctl", "preexec"]}[os_name]
    assert done.stdout.split("\n")[:4] == expected


@pytest.mark.parametrize("os_name", OSES)
def test_every_module_imports(os_name, tmp_path):
    modules = sorted(".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "src" / "envctl").rglob("*.py")
                     if "smoke" not in p.parts and p.name != "__main__.py")
    code = ("import sys, importlib\nsys.path.insert(0, sys.argv[1])\nfrom support import simulated_os\n"
            f"simulated_os.SIMULATE[{os_name!r}]()\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\nprint('imported', len({modules!r}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "tests")], cwd=tmp_path, env=envctl_env(),
                          capture_output=True, text=True, timeout=CEILING)
    assert done.returncode == 0, done.stderr
    assert f"imported {len(modules)}" in done.stdout


@pytest.mark.parametrize("os_name", OSES)
def test_the_cli_works_on_the_shipped_matrix(os_name, shipped):
    """--version, matrix check, render, status, doctor, ci and report: everything that needs no env."""
    assert simulated(os_name, "--version", cwd=shipped).stdout.startswith("envctl ")
    check = simulated(os_name, "matrix", "check", cwd=shipped)
    assert check.returncode == 0 and "windows-cuda12" in check.stdout, check.stderr
    assert simulated(os_name, "render", "--all", cwd=shipped).returncode == 0
    assert (shipped / "envs" / "windows-cuda12" / "environment.yml").exists()
    status = simulated(os_name, "status", cwd=shipped)
    assert "windows-cuda12" in status.stdout and "envctl lock windows-cuda12" in status.stdout
    doctor = simulated(os_name, "doctor", cwd=shipped)
    assert doctor.returncode in (0, 1) and "drift" in doctor.stdout, doctor.stderr
    workflow = simulated(os_name, "ci", "github", "--install", "envctl-onnx @ git+https://example.com/envctl.git@0123456789abcdef0123456789abcdef01234567", "--out", str(shipped / "wf.yml"),
                         cwd=shipped)
    assert workflow.returncode == 0, workflow.stderr
    assert "windows-cuda12" in (shipped / "wf.yml").read_text()


@pytest.mark.parametrize("os_name", OSES)
def test_lock_only_certification(os_name, shipped):
    """The shipped windows-cuda12 target certifies lock-only here (this is not a win-64 machine with a GPU)."""
    done = simulated(os_name, "certify", "--target", "windows-cuda12", "--json", cwd=shipped)
    assert done.returncode == 0, done.stderr
    cert = json.loads(done.stdout)
    assert cert["certified"] == "lock-only" and cert["result"] == "skipped"
    assert (shipped / "certs" / "windows-cuda12.json").exists()
    report = simulated(os_name, "report", "--html", str(shipped / "report.html"), cwd=shipped)
    assert report.returncode == 0, report.stderr
    assert "windows-cuda12" in (shipped / "report.html").read_text()


@pytest.fixture(scope="module")
def lockable(tmp_path_factory, local_channel) -> Path:
    root = tmp_path_factory.mktemp("lockable")
    write_project(root, {"small": pip_target(local_channel)})
    return root


@pytest.mark.parametrize("os_name", OSES)
def test_lock(os_name, lockable):
    (lockable / "locks" / "small.conda-lock.yml").unlink(missing_ok=True)
    done = simulated(os_name, "lock", "small", cwd=lockable)
    assert done.returncode == 0, done.stderr
    assert (lockable / "locks" / "small.conda-lock.yml").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="the point is the fallback on POSIX test machines")
def test_the_env_lock_falls_back_to_filelock_without_fcntl(tmp_path):
    code = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom support import simulated_os\n"
            "simulated_os.SIMULATE['windows']()\n"
            "from pathlib import Path\nfrom envctl.create import prefixswap\n"
            "assert prefixswap.fcntl is None\n"
            f"with prefixswap.prefix_lock(Path({str(tmp_path / 'env')!r}), None) as waited:\n"
            "    print('held', waited)\n")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "tests")], cwd=tmp_path, env=envctl_env(),
                          capture_output=True, text=True, timeout=CEILING)
    assert done.returncode == 0 and "held False" in done.stdout, done.stderr


# ---------------------------------------------------------------- envctl run


@pytest.fixture
def prefix(tmp_path) -> Path:
    """An env as `run` sees one: bin/python, conda-meta, activation scripts (added per test)."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "conda-meta").mkdir()
    (env / "etc" / "conda" / "activate.d").mkdir(parents=True)
    os.symlink(sys.executable, env / "bin" / "python")
    return env


def _script(prefix: Path, name: str, text: str) -> None:
    (prefix / "etc" / "conda" / "activate.d" / name).write_text(text)


SHOW = "import os, sys; print(os.environ.get('CONDA_PREFIX'), os.environ.get('A'), os.environ.get('B'), sep='|'); sys.exit(5)"


@pytest.mark.parametrize("os_name", OSES)
def test_run_activates_and_returns_the_commands_status(os_name, prefix, tmp_path):
    _script(prefix, "a.sh", 'export A="from $CONDA_PREFIX"\n')
    _script(prefix, "b.sh", "echo noise from an activation script\nexport B=2\n")
    done = simulated(os_name, "run", "--prefix", str(prefix), "--", "python", "-c", SHOW, cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert done.stdout.strip().split("|") == [str(prefix), f"from {prefix}", "2"], "activation output must not reach stdout"


@pytest.mark.parametrize("os_name", OSES)
def test_an_exit_in_an_activation_script_does_not_skip_the_command(os_name, prefix, tmp_path):
    """`exit 0` in activate.d once ended the wrapper shell: the command never ran and envctl returned 0."""
    _script(prefix, "a.sh", "export A=1\nexit 0\nexport A=never\n")
    done = simulated(os_name, "run", "--prefix", str(prefix), "--", "python", "-c", SHOW, cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert done.stdout.strip().split("|") == [str(prefix), "1", "None"]
    assert "a.sh" in done.stderr and "exit 0" in done.stderr


def test_a_failing_activation_script_fails_the_run_and_names_itself(prefix, tmp_path):
    _script(prefix, "z-broken.sh", "exit 3\n")
    marker = tmp_path / "ran"
    done = simulated("macos", "run", "--prefix", str(prefix), "--", "python", "-c",
                     f"open({str(marker)!r}, 'w')", cwd=tmp_path)
    assert done.returncode != 0 and not marker.exists()
    assert "z-broken.sh" in done.stderr and "status 3" in done.stderr


@pytest.mark.parametrize("os_name", OSES)
def test_a_signal_sent_to_envctl_reaches_the_command(os_name, prefix, tmp_path):
    """Without sigtimedwait (macOS) or SIGHUP (Windows), forwarding still works where the OS has the signal."""
    out = tmp_path / "pid"
    command = ("import os, sys, time\nopen(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()) + '\\n')\n"
               "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\ntime.sleep(600)\n")
    proc = subprocess.Popen(simulated_os.command(os_name, "run", "--prefix", str(prefix), "--", "python", "-c", command,
                                                 str(out)), env=envctl_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- dead ends name the way that works


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="needs a host that is not the Jetson's")
def test_a_target_this_machine_cannot_build_names_pack(shipped):
    done = subprocess.run([sys.executable, "-m", "envctl", "create", "--target", "jetson-cuda11.8"], cwd=shipped,
                          env=envctl_env(), capture_output=True, text=True, timeout=CEILING)
    assert done.returncode != 0
    text = " ".join(done.stderr.split())
    assert "envctl pack --target jetson-cuda11.8" in text and "sh jetson-cuda11.8.sh --prefix DIR" in text
    assert text.index("envctl pack") < text.index("sh jetson-cuda11.8.sh --prefix DIR")


def _python38() -> str | None:
    """A Python 3.8 that runs (a pyenv shim may exist without its version being selected)."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for candidate in [shutil.which("python3.8"), *sorted(Path(root).glob("versions/3.8*/bin/python3.8"))]:
        if candidate and subprocess.run([str(candidate), "-c", "pass"], capture_output=True, timeout=60).returncode == 0:
            return str(candidate)
    return None


OLD_PYTHON = _python38()


@pytest.mark.skipif(OLD_PYTHON is None, reason="no Python 3.8 here")
def test_python_38_like_jetpack_5_is_told_to_use_a_bundle(tmp_path):
    done = subprocess.run([OLD_PYTHON, "-m", "envctl", "--version"], cwd=tmp_path, env=envctl_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "envctl pack --target" in done.stderr and "--prefix DIR" in done.stderr
