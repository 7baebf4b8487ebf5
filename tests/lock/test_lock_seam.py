"""The lock seam: a format turns bytes into typed records and names what is wrong; a command reads the lock once.

The format is given bytes, never a path (lock/records.py's LockFormat), so a
test can hand it any text. conda-lock's names live in its module only.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import yaml

from envctl.lock.conda_lock_format import CondaLockFormat
from envctl.lock.records import LockFormatError

SRC = Path(__file__).resolve().parents[2] / "src" / "envctl"

GOOD = {
    "version": 1,
    "metadata": {"platforms": ["linux-64"], "channels": [{"url": "https://conda.example/ch"}],
                 "content_hash": {"linux-64": "0" * 64}, "sources": ["env.yml"],
                 "custom_metadata": {"envctl_target": "t"}},
    "package": [
        {"name": "python", "version": "3.11.7", "manager": "conda", "platform": "linux-64", "dependencies": {},
         "url": "https://conda.example/ch/linux-64/python-3.11.7-0.conda", "hash": {"md5": "a" * 32, "sha256": "b" * 64},
         "category": "main", "optional": False},
        {"name": "six", "version": "1.16.0", "manager": "pip", "platform": "linux-64", "dependencies": {},
         "url": "https://pypi.example/six-1.16.0-py3-none-any.whl", "hash": {"sha256": "c" * 64},
         "category": "main", "optional": False},
    ],
}


def _bytes(edit=None) -> bytes:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    if edit:
        edit(doc)
    return yaml.safe_dump(doc, sort_keys=False).encode()


def test_a_whole_lock_parses_to_typed_records():
    doc = CondaLockFormat().parse(_bytes())
    assert doc.header.target == "t" and doc.header.platforms == ("linux-64",)
    assert [(p.manager, p.name) for p in doc.packages] == [("conda", "python"), ("pip", "six")]
    assert doc.content_hashes == {"linux-64": "0" * 64}


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda d: d.pop("metadata"), "metadata", "no `metadata` mapping"),
    (lambda d: d["metadata"].update(platforms=[]), "metadata.platforms", "names no platforms"),
    (lambda d: d.pop("package"), "package", "no `package` list"),
    (lambda d: d["package"][1].update(url="no slashes"), "package[1].url", "is not a URL"),
    (lambda d: d["package"][0].update(version=None), "package[0].version", "no 'version'"),
    (lambda d: d["package"][1].update(hash={}), "package[1].hash.sha256", "no sha256"),
    (lambda d: d["package"][0].update(platform="win-64"), "package[0].platform", "not one of the lock's platforms"),
    (lambda d: d["package"].append(dict(d["package"][0])), "package[2]", "appears twice"),
    (lambda d: d["package"][0].update(dependencies=["x"]), "package[0].dependencies", "not a mapping"),
])
def test_a_bad_structure_names_the_key(edit, key, words):
    with pytest.raises(LockFormatError) as err:
        CondaLockFormat().parse(_bytes(edit))
    assert err.value.key == key and words in err.value.problem, (err.value.key, err.value.problem)


def test_bytes_that_are_not_yaml_or_text_are_a_format_error():
    for data in (b"\xff\xfe\x00", b"metadata: [unclosed\n"):
        with pytest.raises(LockFormatError, match="not a conda-lock file"):
            CondaLockFormat().parse(data)


def test_a_cli_reader_names_the_file_and_key(tmp_path):
    from envctl.core.errors import EnvctlError
    from envctl.lock.lockfile import load_lock
    from support import broken_locks

    path = broken_locks.write(tmp_path / "t.conda-lock.yml", _bytes(lambda d: d["package"][0].update(url="x")).decode())
    with pytest.raises(EnvctlError) as err:
        load_lock(path).document()
    assert err.value.file == str(path) and err.value.key == "package[0].url", err.value


def test_conda_lock_names_live_in_its_module_only():
    """Imports of conda_lock, its model names and its file suffix appear in lock/conda_lock_format.py alone."""
    home = SRC / "lock" / "conda_lock_format.py"
    found = []
    for path in SRC.rglob("*.py"):
        if path == home or "smoke" in path.relative_to(SRC).parts:
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] == "conda_lock"]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".conda-lock.yml"):
                found.append(f"{path.name}: {node.value!r}")
        found += [f"{path.name}: {word}" for word in ("LockedDependency", "parse_conda_lock_file") if word in text]
    assert found == []


@pytest.mark.slow
def test_one_command_reads_the_lock_once(local_channel, tmp_path, monkeypatch):
    """Through the CLI, in-process: `create` (cold: no env, no parse cache) and `certify` each open the lock file
    once, counted at the system call, whatever stage reads it (staleness check, create, certify)."""
    from typer.testing import CliRunner

    import envctl.lock.lockfile as lockfile
    from envctl.cli import app
    from support.project import pip_target, write_project

    monkeypatch.setenv("ENVCTL_CACHE_DIR", str(tmp_path / "cache"))
    matrix = write_project(tmp_path / "proj", {"small": pip_target(local_channel, models=["cnn"])})
    lock = os.path.abspath(tmp_path / "proj" / "locks" / "small.conda-lock.yml")
    opened = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        if os.path.abspath(os.fspath(path)) == lock:
            opened.append(path)
        return real_open(path, *args, **kwargs)

    def run(*args: str) -> int:
        lockfile._MEMO.clear()  # each command is a process of its own
        opened.clear()
        result = CliRunner().invoke(app, [*args, "--matrix", str(matrix)])
        assert result.exit_code == 0, result.output
        return len(opened)

    monkeypatch.setattr(os, "open", counting_open)
    run("lock", "small")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    assert run("create", "--target", "small", "--no-certify") == 1  # was 6 (check 2, hash 1, parse 3)
    assert run("create", "--target", "small", "--no-certify") == 1  # no-op: was 3
    assert run("certify", "--target", "small") == 1  # was 5
