"""--locked proves the lock is what the spec asks for: nothing extra, nothing missing, closed under dependencies.

Through the CLI, on a real lock made by `envctl lock`: an entry nobody asked
for (a hand-added package, one that depends on a requested package, a conda
one), and a package removed together with the lines naming it in its
dependents' records, which only the packages' own metadata can reveal.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.project import torch_matrix
import yaml

from envctl.create.closure import conda_gaps

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the local channel's real python is linux-64 only")



def envctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-m", "envctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def locked(tmp_path_factory, local_channel: Path) -> Path:
    root = tmp_path_factory.mktemp("closure")
    (root / "envs").mkdir()
    (root / "envs" / "matrix.yaml").write_text(torch_matrix(local_channel))
    done = envctl("lock", "t", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def copy_with(locked: Path, dest: Path, edit) -> Path:
    dest.mkdir()
    subprocess.run(["cp", "-a", str(locked / "envs"), str(locked / "locks"), str(dest)], check=True)
    path = dest / "locks" / "t.conda-lock.yml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["package"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def entry(packages: list[dict], name: str) -> dict:
    return next(p for p in packages if p["name"] == name)


def add_renamed(source: str, name: str, depends: dict | None = None):
    def edit(packages):
        extra = copy.deepcopy(entry(packages, source))
        extra["name"] = name
        folder, _, file = extra["url"].rpartition("/")  # an entry of its own (py-rattler refuses a URL twice)
        extra["url"] = f"{folder}/{name}-{file.split('-', 1)[1]}"
        if depends is not None:
            extra["dependencies"] = depends
        packages.append(extra)
    return edit


EXTRA = {
    "pip-unrequested": add_renamed("filelock", "timm"),
    "pip-depends-on-requested": add_renamed("filelock", "evil-plugin", {"torch": "==2.13.0"}),
    "conda-unrequested": add_renamed("python", "openssl"),
}


@pytest.mark.parametrize("kind", sorted(EXTRA))
@pytest.mark.parametrize("command", [["create", "--target", "t", "--no-certify", "--locked"],
                                     ["certify", "--target", "t", "--locked"]])
def test_locked_refuses_a_package_nothing_asked_for(locked, tmp_path, kind, command):
    root = copy_with(locked, tmp_path / "p", EXTRA[kind])
    before = (root / "locks" / "t.conda-lock.yml").read_bytes()
    done = envctl(*command, cwd=root)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "nothing the spec asks for needs" in done.stderr, done.stderr
    assert (root / "locks" / "t.conda-lock.yml").read_bytes() == before  # --locked never relocks
    assert not (root / ".envctl" / "envs" / "t").exists()


def test_the_lock_made_by_envctl_passes(locked):
    done = envctl("lock", "--check", "t", cwd=locked)
    assert done.returncode == 0, done.stderr


def drop_with_mentions(name: str):
    """Remove `name` and every line naming it in other records: closed and complete on paper."""
    def edit(packages):
        packages[:] = [p for p in packages if p["name"] != name]
        for p in packages:
            (p.get("dependencies") or {}).pop(name, None)
    return edit


@pytest.mark.slow  # builds (most of) an env before the check refuses it
def test_locked_create_refuses_a_package_removed_with_its_dependents_records(locked, tmp_path):
    root = copy_with(locked, tmp_path / "p", drop_with_mentions("markupsafe"))
    done = envctl("create", "--target", "t", "--no-certify", "--locked", cwd=root)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "jinja2" in done.stderr.lower() and "markupsafe" in done.stderr.lower(), done.stderr
    assert not (root / ".envctl" / "envs" / "t").exists()  # nothing swapped in
    assert not [p for p in (root / ".envctl" / "envs").iterdir() if "staging" in p.name]


def test_conda_closure_reads_the_records_depends(tmp_path):
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "pip-1-0.json").write_text(json.dumps({"name": "pip", "version": "1", "depends": ["python >=3.8", "__glibc >=2.17"]}))
    assert conda_gaps(tmp_path) == ["pip (conda) needs python >=3.8, which is not installed"]
    (meta / "python-3-0.json").write_text(json.dumps({"name": "python", "version": "3", "depends": []}))
    assert conda_gaps(tmp_path) == []
