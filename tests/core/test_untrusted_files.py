"""Files a user or an env controls never end in a traceback, a hang or a raw terminal sequence.

Classes, each through the CLI: a matrix that is not text; JSON nested past
any sane depth; package records and METADATA of the wrong type or encoding;
data fields that carry ESC sequences, C1 controls, bidi overrides, newlines
or rich markup.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.core.text import printable, printable_lines
from support.project import ONE_TARGET_MATRIX

# What must never reach a terminal from data: C0 (but the newline a table or paragraph itself writes), C1, bidi.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def envctl(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), COLUMNS="300", **(env or {}))
    return subprocess.run([sys.executable, "-m", "envctl", *args], cwd=cwd, capture_output=True, timeout=timeout,
                          env=full)


def text(done: subprocess.CompletedProcess) -> str:
    return (done.stdout + done.stderr).decode("utf-8", "replace")


# ---------------------------------------------------------------- the matrix

NOT_TEXT = {
    "nul": b"version: 1\x00\ntargets: {}\n",
    "nul-in-value": b"version: 1\ntargets:\n  t:\n    python: \"3.1\x001\"\n",
    "invalid-utf8": b"version: 1\ntargets:\n  t: \xff\xfe\n",
    "utf16": "version: 1\ntargets: {}\n".encode("utf-16"),
    "escape": b"version: 1\ntargets:\n  \x1b[31mt: {}\n",
    "c1": "version: 1\ntargets:\n  t\u0085x: {}\n".encode(),
    "binary": bytes(range(256)) * 8,
    "elf-header": b"\x7fELF\x02\x01\x01" + b"\x00" * 200,
    "deep-flow": b"x: " + b"[" * 5000 + b"]" * 5000,
    "deep-block": "".join(f"{'  ' * i}k{i}:\n" for i in range(300)).encode() + b"  " * 300 + b"v\n",
}


@pytest.mark.parametrize("kind", sorted(NOT_TEXT))
@pytest.mark.parametrize("command", [["matrix", "check"], ["status"]])
def test_a_matrix_that_is_not_text_is_a_clear_error(tmp_path, kind, command):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "matrix.yaml").write_bytes(NOT_TEXT[kind])
    done = envctl(*command, cwd=tmp_path)
    out = text(done)
    assert done.returncode == 2, out
    assert "Traceback" not in out and "Error:" not in out.replace("envctl:", ""), out
    assert "envs/matrix.yaml" in out, out
    assert not RAW_CONTROL.search(out), ascii(out)


# ---------------------------------------------------------------- an env's records


def fake_env(root: Path) -> Path:
    """An env made of files only (what `list` reads; nothing in it is run)."""
    prefix = root / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python").symlink_to(sys.executable)
    (prefix / "conda-meta" / "good-1.0-0.json").write_text(json.dumps(
        {"name": "good", "version": "1.0", "build": "0", "files": ["lib/python3.11/site-packages/good-1.0.dist-info/METADATA"]}))
    site = prefix / "lib" / "python3.11" / "site-packages"
    for name in ("good", "fine"):
        (site / f"{name}-1.0.dist-info").mkdir(parents=True)
        (site / f"{name}-1.0.dist-info" / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    return prefix


BAD_RECORDS = {
    "files-int": json.dumps({"name": "bad", "version": "1", "files": 5}),
    "files-mixed": json.dumps({"name": "bad", "version": "1", "files": ["a", 3, None]}),
    "name-int": json.dumps({"name": 5, "version": "1"}),
    "version-null": json.dumps({"name": "bad", "version": None}),
    "build-list": json.dumps({"name": "bad", "version": "1", "build": ["x"]}),
    "channel-dict": json.dumps({"name": "bad", "version": "1", "channel": {"url": "x"}}),
    "top-level-list": json.dumps([{"name": "bad", "version": "1"}]),
    "deep-list": "[" * 100_000 + "]" * 100_000,
    "deep-object": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "deep-in-files": json.dumps({"name": "bad", "version": "1", "files": []})[:-2] + "[" * 80 + "]" * 80 + "]}",
    "not-utf8": b'{"name": "bad\xff", "version": "1"}',
    "not-json": "{name: bad",
    "huge-number": '{"name": "bad", "version": 1' + "0" * 5000 + "}",
}


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_list_skips_a_malformed_conda_record_with_a_warning(tmp_path, kind):
    prefix = fake_env(tmp_path)
    record = prefix / "conda-meta" / "bad-1-0.json"
    data = BAD_RECORDS[kind]
    record.write_bytes(data if isinstance(data, bytes) else data.encode())
    done = envctl("list", "--prefix", str(prefix), "--json", cwd=tmp_path, timeout=60)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err
    assert "Traceback" not in err and "bad-1-0.json" in err and "warning" in err, err
    listed = {(p["name"], p["manager"]) for p in json.loads(done.stdout)["packages"]}
    assert listed == {("good", "conda"), ("fine", "pip")}  # the rest is still listed; good's dist-info is conda's


BAD_METADATA = {
    "not-utf8": b"Metadata-Version: 2.1\nName: bad\nVersion: 1\xff\xfe\n",
    "latin1-name": b"Metadata-Version: 2.1\nName: b\xe9d\nVersion: 1\n",
    "no-name": b"Metadata-Version: 2.1\nVersion: 1\n",
    "empty": b"",
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("kind", sorted(BAD_METADATA))
def test_list_skips_an_unreadable_pip_metadata_with_a_warning(tmp_path, kind):
    prefix = fake_env(tmp_path)
    folder = prefix / "lib" / "python3.11" / "site-packages" / "bad-1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_bytes(BAD_METADATA[kind])
    done = envctl("list", "--prefix", str(prefix), cwd=tmp_path, timeout=60)
    out = text(done)
    assert done.returncode == 0, out
    assert "Traceback" not in out and "bad-1.0.dist-info" in out, out
    assert "fine" in done.stdout.decode()


def test_list_does_not_hang_on_a_fifo_metadata(tmp_path):
    prefix = fake_env(tmp_path)
    folder = prefix / "lib" / "python3.11" / "site-packages" / "bad-1.0.dist-info"
    folder.mkdir()
    os.mkfifo(folder / "METADATA")
    done = envctl("list", "--prefix", str(prefix), cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "FIFO" in text(done), text(done)


# ---------------------------------------------------------------- terminal injection

HOSTILE = [
    "\x1b[31mred\x1b[0m",  # SGR colour
    "\x1b]0;pwned\x07",  # OSC: window title
    "\x1b]52;c;cGF5bG9hZA==\x07",  # OSC 52: write the clipboard
    "\x9b31m",  # C1 CSI
    "line\nFORGED: passed",  # a forged second line
    "over\rwrite",  # carriage return
    "back\x08\x08space",
    "rtl\u202eexe.txt",  # bidi override
    "[bold]styled[/bold]",  # rich markup must stay text
    "[link=file:///etc/passwd]x[/link]",
]


def test_list_shows_hostile_pip_names_inert(tmp_path):
    prefix = fake_env(tmp_path)
    for i, name in enumerate(HOSTILE):
        folder = prefix / "lib" / "python3.11" / "site-packages" / f"evil{i}-1.0.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace(chr(10), ' ')}\nVersion: 1\x1b[2J\n")
    done = envctl("list", "--prefix", str(prefix), cwd=tmp_path, timeout=60)
    out = text(done)
    assert done.returncode == 0, out
    assert not RAW_CONTROL.search(out), ascii(out)
    assert "[bold]styled[/bold]" in out and "\\x1b[31mred" in out  # shown as the text it is, not as style


def forged_certificate(field_value: str) -> dict:
    return {"target": "t", "result": "failed", "certified": "run", "created_at": field_value,
            "host": {"hostname": field_value}, "reason": field_value,
            "failure": {"class": field_value, "stage": field_value, "message": field_value, "remedy": field_value}}


@pytest.mark.parametrize("value", ["".join(HOSTILE), "[red]only markup[/red] [/]"])
def test_status_shows_forged_certificate_fields_inert(tmp_path, value):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "matrix.yaml").write_text(ONE_TARGET_MATRIX)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "t.json").write_text(json.dumps(forged_certificate(value)))
    done = envctl("status", cwd=tmp_path, timeout=60)
    out = text(done)
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert not RAW_CONTROL.search(out), ascii(out)


def test_status_reports_a_deeply_nested_certificate(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "matrix.yaml").write_text(ONE_TARGET_MATRIX)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "t.json").write_text('{"result": ' + "[" * 100_000 + "]" * 100_000 + "}")
    done = envctl("status", "--json", cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "Traceback" not in text(done), text(done)
    assert "levels deep" in json.loads(done.stdout)["targets"][0]["stages"]["certified"]["detail"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_printable_leaves_nothing_that_acts_on_a_terminal(value):
    shown = printable(value)
    assert not RAW_CONTROL.search(shown) and "\n" not in shown
    assert "\n" not in "".join(printable_lines(value).split("\n"))
    assert printable_lines(value).count("\n") == value.count("\n")


def test_printable_keeps_ordinary_text():
    assert printable("torch 2.13.0+cpu — ünïcode ✓") == "torch 2.13.0+cpu — ünïcode ✓"
    assert printable("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\nc\\u202e"


@pytest.mark.parametrize("state", [
    {"lock_sha256": 5, "target": ["t"], "packages": [1, 2], "size_bytes": "big", "own_bytes": True},
    {"lock_sha256": "ab", "packages": {"conda": "many", "pip": None}},
    "[" * 100_000 + "]" * 100_000,
    ["not", "an", "object"],
])
def test_a_forged_env_state_file_is_typed_not_trusted(tmp_path, state):
    """The env's own conda-meta/envctl-state.json is data: wrong types are dropped, never crashed on."""
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "matrix.yaml").write_text(ONE_TARGET_MATRIX)
    prefix = tmp_path / ".envctl" / "envs" / "t"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python").symlink_to(sys.executable)
    (prefix / "conda-meta" / "envctl-state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    for command in (["status"], ["list", "--target", "t"], ["status", "--json"]):
        done = envctl(*command, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, text(done)
        assert "Traceback" not in text(done)
