"""The create stage on real envs: local conda channel + torch/onnx/onnxruntime wheels.

Nothing is mocked: each env is linked by py-rattler and uv and run with its
own python, isolated from the host (-I, no PYTHONPATH/PYTHONHOME). The first
env of the module pays for the caches; later ones hardlink from them.
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
from support.project import torch_matrix

from envctl.core.errors import EnvctlError
from envctl.core.paths import default_prefix
from envctl.create.build import STATE_FILE, create_env, env_state
from envctl.create.prefixswap import SCRATCH_MARKER
from envctl.host.platform import host_platform
from envctl.lock.render import render_target
from envctl.lock.solve import lock_target
from envctl.matrix.loader import load_matrix
from support import lockfactory as lf
from support import procs
from support.faults import leftovers
from support.local_channel import PY_MM, PY_VERSION

pytestmark = [
    pytest.mark.slow,  # builds real envs
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]

SRC = str(Path(__file__).resolve().parents[2] / "src")
TARGET = "local-cpu"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def run_env_python(prefix: Path, code: str) -> str:
    proc = subprocess.run(
        [str(prefix / "bin" / "python"), "-I", "-c", code], env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def writers(staging: Path) -> list[str]:
    """Command lines of live processes that name `staging` (an orphaned uv would)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(staging) in cmdline:
            found.append(cmdline)
    return found


def lock_with_envctl(root: Path, channel: Path) -> None:
    """Render and lock TARGET with envctl's own lock stage (a broken lock stage fails these tests too)."""
    matrix_path = root / "envs" / "matrix.yaml"
    matrix_path.parent.mkdir(parents=True)
    matrix_path.write_text(torch_matrix(channel, TARGET))
    target = load_matrix(matrix_path).targets[TARGET]
    render_target(root, target, Path("envs/matrix.yaml"))
    lock_target(root, target)


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_channel: Path) -> Path:
    root = tmp_path_factory.mktemp("project")
    lock_with_envctl(root, local_channel)
    return root


def locked_counts(root: Path) -> dict[str, int]:
    lock = lf.parse(root / "locks" / f"{TARGET}.conda-lock.yml")
    counts = {"conda": 0, "pip": 0}
    for pkg in lock.package:
        if pkg.platform == "linux-64":
            counts[pkg.manager] += 1
    return counts


@pytest.fixture(scope="module")
def built(project: Path):
    started = time.monotonic()
    result = create_env(project, TARGET)
    print(f"\nfirst create: {time.monotonic() - started:.2f}s, {result.size_bytes / 2**20:.0f} MiB")
    return result


def copy_project(src: Path, dest: Path, edit=None) -> Path:
    """A second project whose lock is `src`'s, optionally edited through conda-lock's models."""
    lock = dest / "locks" / f"{TARGET}.conda-lock.yml"
    lock.parent.mkdir(parents=True)
    shutil.copy(src / "locks" / lock.name, lock)
    if edit:
        lf.edit_lock(lock, edit)
    return dest


def test_create_installs_exactly_the_lock(built, project: Path):
    prefix = default_prefix(project, TARGET)
    assert built.action == "created" and built.prefix == prefix and not built.waited_for_lock
    assert built.packages == locked_counts(project)
    assert built.packages["conda"] >= 2 and built.packages["pip"] >= 5
    assert built.python == prefix / "bin" / "python" and built.python_version.startswith(PY_VERSION + " ")
    out = json.loads(run_env_python(prefix, (
        "import json, sys, torch, onnx, onnxruntime, numpy;"
        "print(json.dumps([sys.prefix, torch.__version__, onnx.__version__, onnxruntime.__version__, torch.__file__]))"
    )))
    assert out[0] == str(prefix)
    assert out[1].split("+")[0] == "2.13.0"
    assert out[2] and out[3]
    assert out[4].startswith(str(prefix) + "/")  # the env's torch, not the host's
    # Console scripts of both installers name the final prefix, never the staging folder.
    for script in ("pip", "torchrun"):
        first = (prefix / "bin" / script).read_text().splitlines()[0]
        assert first.startswith(f"#!{prefix}/bin/python"), (script, first)
    assert subprocess.run([str(prefix / "bin" / "torchrun"), "--help"], env=clean_env(), capture_output=True, timeout=300).returncode == 0
    state = env_state(prefix)
    assert state["target"] == TARGET and state["host_platform"] == "linux-64"
    assert state["lock_sha256"] == built.lock_sha256 and state["envctl_version"]
    assert built.size_bytes > 100 * 2**20
    assert leftovers(prefix) == []


def test_second_create_is_a_noop_without_heavy_imports(built, project: Path):
    # How fast it is belongs to scripts/bench; here: it does nothing, and imports nothing heavy to decide so.
    prefix = default_prefix(project, TARGET)
    state = prefix / STATE_FILE
    before = (state.stat().st_mtime_ns, sorted(p.name for p in prefix.parent.iterdir()))
    again = create_env(project, TARGET)
    assert again.action == "unchanged" and again.lock_sha256 == built.lock_sha256
    assert (state.stat().st_mtime_ns, sorted(p.name for p in prefix.parent.iterdir())) == before
    code = (
        "import sys; from pathlib import Path; from envctl.create.build import create_env;"
        f"r = create_env(Path({str(project)!r}), {TARGET!r});"
        "heavy = sorted(m for m in ('rattler', 'conda_lock', 'uv', 'rich', 'yaml') if m in sys.modules);"
        "print(r.action, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[0] == "unchanged" and out[1].strip() == "[]", out


def test_second_env_of_the_same_lock_hardlinks_from_caches(built, project: Path, tmp_path: Path):
    started = time.monotonic()
    second = create_env(project, TARGET, prefix=tmp_path / "second")
    assert second.action == "created"
    print(f"\nsecond env: {time.monotonic() - started:.2f}s, owns {second.own_bytes / 2**20:.1f} MiB"
          f" of {second.size_bytes / 2**20:.0f} MiB")
    assert second.own_bytes < 0.05 * second.size_bytes
    assert run_env_python(second.prefix, "import numpy, onnx; print('ok')") == "ok"


def test_force_rebuilds(built, project: Path):
    prefix = default_prefix(project, TARGET)
    before = env_state(prefix)
    events = []
    rebuilt = create_env(project, TARGET, force=True, progress=lambda event, **info: events.append(event))
    assert rebuilt.action == "rebuilt"
    assert env_state(prefix)["lock_sha256"] == before["lock_sha256"]
    assert {"conda", "pip", "check", "swap", "done"} <= set(events)
    assert run_env_python(prefix, "import onnxruntime; print('ok')") == "ok"
    assert leftovers(prefix) == []


@pytest.mark.parametrize(
    ("manager", "package"),
    [("conda", "python"), ("pip", "numpy")],
)
def test_tampered_hash_is_refused_and_env_left_intact(built, project: Path, tmp_path: Path, manager, package):
    prefix = default_prefix(project, TARGET)
    before = env_state(prefix)
    bad = "0" * 64

    def tamper(lock):
        for pkg in lock.package:
            if pkg.manager == manager and pkg.name == package:
                expected = pkg.hash.sha256
                pkg.hash.sha256 = bad  # conda entries keep their md5: sha256 alone must still refuse
        tamper.expected = expected

    other = copy_project(project, tmp_path / "tampered", tamper)
    with pytest.raises(EnvctlError) as err:
        create_env(other, TARGET, prefix=prefix)
    message = str(err.value)
    assert package in message and bad in message and tamper.expected in message, message
    assert "expected" in message and "actual" in message
    assert env_state(prefix) == before
    assert run_env_python(prefix, "import numpy; print('ok')") == "ok"
    assert leftovers(prefix) == []


def test_local_archive_changed_behind_the_repodata_is_refused(local_channel: Path, tmp_path: Path):
    # rattler trusts file:// archives without hashing them; create hashes them against the lock.
    channel = tmp_path / "channel"
    (channel / "linux-64").mkdir(parents=True)
    shutil.copy(local_channel / "linux-64" / "repodata.json", channel / "linux-64")
    entries = lf.channel_entries(channel, "linux-64", ["python_abi"])
    archive = channel / "linux-64" / entries[0].url.rsplit("/", 1)[1]
    shutil.copy(local_channel / "linux-64" / archive.name, archive)
    with open(archive, "ab") as handle:
        handle.write(b"tampered")  # still extracts: bz2 ignores trailing bytes
    lf.write_lock(tmp_path / "locks" / "abi.conda-lock.yml", target="abi", channel=channel,
                  platforms=["linux-64"], packages=entries)
    with pytest.raises(EnvctlError, match=r"python_abi .*archive's sha256 does not match the lock \(expected [0-9a-f]{64}, actual"):
        create_env(tmp_path, "abi")
    assert not default_prefix(tmp_path, "abi").exists()


@pytest.mark.parametrize("kill_when", ["staging appears", "pip part running"])
def test_sigkill_midway_leaves_previous_env_and_next_create_completes(built, project: Path, tmp_path: Path, kill_when):
    prefix = tmp_path / "env"
    create_env(project, TARGET, prefix=prefix)
    before = env_state(prefix)
    code = (
        "from pathlib import Path; from envctl.create.build import create_env;"
        f"create_env(Path({str(project)!r}), {TARGET!r}, prefix=Path({str(prefix)!r}), force=True)"
    )
    with procs.subreaper():  # uv, orphaned by the kill, is adopted here so its end can be read
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC})
        staging = prefix.with_name(f"env~staging-{proc.pid}")
        probe = staging if kill_when == "staging appears" else staging / "lib" / f"python{PY_MM}" / "site-packages" / "torch"
        deadline = time.monotonic() + 300
        while not probe.exists():
            assert proc.poll() is None, "create finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        uv_pids = [pid for pid, cmd in procs.children_of(proc.pid) if " pip install " in cmd]
        if kill_when == "pip part running":
            assert uv_pids, "the pip part was running, so uv was"
        procs.stop(uv_pids)  # it cannot finish on its own before envctl is killed
        assert proc.poll() is None, "create finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        statuses = procs.reap_adopted(uv_pids)
    assert staging.exists()  # killed mid-way: the half env is only in staging
    # Nothing the killed create started (uv) goes on writing into the staging folder:
    # it died with create (PR_SET_PDEATHSIG sends it SIGKILL) rather than running on to its end.
    assert all(procs.killed_by_sigkill(status) for status in statuses.values()), statuses
    deadline = time.monotonic() + 60
    while writers(staging):
        assert time.monotonic() < deadline, writers(staging)
        time.sleep(0.05)
    assert env_state(prefix) == before
    assert run_env_python(prefix, "import numpy; print('ok')") == "ok"

    again = create_env(project, TARGET, prefix=prefix, force=True)
    assert again.action == "rebuilt"
    assert leftovers(prefix) == []


def test_restores_an_env_parked_aside_by_a_killed_swap(built, project: Path, tmp_path: Path):
    # Where renameat2 is missing the swap is two renames; a kill between them
    # leaves <prefix>~old-<pid> (marked as envctl's) and no prefix. Recreate exactly that on disk.
    prefix = tmp_path / "env"
    create_env(project, TARGET, prefix=prefix)
    marker = json.dumps({"pid": 424242, "prefix": str(prefix)})
    (prefix / SCRATCH_MARKER).write_text(marker)
    os.rename(prefix, prefix.with_name("env~old-424242"))
    (prefix.with_name("env~staging-424242") / "bin").mkdir(parents=True)
    (prefix.with_name("env~staging-424242") / SCRATCH_MARKER).write_text(marker)
    again = create_env(project, TARGET, prefix=prefix)
    assert again.action == "unchanged"
    assert leftovers(prefix) == []
    assert not (prefix / SCRATCH_MARKER).exists()
    assert run_env_python(prefix, "print('ok')") == "ok"


def test_concurrent_creates_serialize(built, project: Path, tmp_path: Path):
    prefix = tmp_path / "env"
    code = (
        "import json; from pathlib import Path; from envctl.create.build import create_env;"
        f"r = create_env(Path({str(project)!r}), {TARGET!r}, prefix=Path({str(prefix)!r}),"
        " progress=lambda event, **info: print('event', event, flush=True));"
        "print(json.dumps(r.to_json()))"
    )

    def start():
        return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                                stdout=subprocess.PIPE, text=True)

    first = start()
    deadline = time.monotonic() + 120
    while not prefix.with_name(f"env~staging-{first.pid}").exists():  # first now holds the lock
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    second = start()
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0]
    results = [json.loads(out.splitlines()[-1]) for out in outs]
    assert results[0]["action"] == "created" and not results[0]["waited_for_lock"]
    assert results[1]["action"] == "unchanged" and results[1]["waited_for_lock"]
    assert "event waiting" in outs[1]
    assert leftovers(prefix) == []


def test_lock_for_other_platforms_is_refused(local_channel: Path, tmp_path: Path):
    lf.write_lock(tmp_path / "locks" / "arm.conda-lock.yml", target="arm", channel=local_channel,
                  platforms=["linux-aarch64"], packages=lf.channel_entries(local_channel, "linux-aarch64", ["python"]))
    with pytest.raises(EnvctlError) as err:
        create_env(tmp_path, "arm")
    assert "linux-aarch64" in str(err.value) and "linux-64" in str(err.value)
    assert not default_prefix(tmp_path, "arm").exists()


def test_missing_lock_is_a_user_error(tmp_path: Path):
    with pytest.raises(EnvctlError, match="no lock for target 'nope'"):
        create_env(tmp_path, "nope")


def test_lock_of_another_target_is_refused(project: Path, tmp_path: Path):
    lock = tmp_path / "locks" / "renamed.conda-lock.yml"
    lock.parent.mkdir()
    shutil.copy(project / "locks" / f"{TARGET}.conda-lock.yml", lock)
    with pytest.raises(EnvctlError, match=f"made for target '{TARGET}'"):
        create_env(tmp_path, "renamed")


def test_refuses_to_replace_a_folder_envctl_did_not_make(project: Path, tmp_path: Path):
    prefix = tmp_path / "mine"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "precious.txt").write_text("keep me")
    with pytest.raises(EnvctlError, match="not made by envctl"):
        create_env(project, TARGET, prefix=prefix)
    assert (prefix / "precious.txt").read_text() == "keep me"
    assert not (prefix / STATE_FILE).exists()
