"""The lock stage, end to end: real solver, real local channel, real pip indexes.

The conda part comes from the local test channel (tests/support/local_channel.py);
the pip part from PyPI plus the find-links location pip is configured with on
this machine (for the CPU torch 2.13.0 wheel).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from envctl.cli.exitcodes import exit_code
from envctl.core.errors import EnvctlError
from envctl.core.paths import env_file
from envctl.lock.lockfile import lock_path
from envctl.lock.pip_resolve import choose_wheel
from envctl.lock.render import render_target, spec_hash
from envctl.lock.solve import check_locks, lock_target, read_lock_meta
from envctl.matrix.loader import load_matrix
from support.local_channel import PY_MM, PY_TAG, PY_VERSION
from support.pipconfig import torch_pip_options

SRC = Path(__file__).resolve().parents[2] / "src"

MATRIX = """\
defaults:
  channels: ["{channel}"]
  python: "{py_mm}"
  torch: "2.13.0"
  onnx: "*"
  onnxruntime: "*"
  protobuf: "*"
  opset: 17
  exporters: [torchscript]
  pip: [torch, onnx, onnxruntime, protobuf]
  pip_options: {pip_options}
targets:
  cpu-torch:
    platforms: [linux-64]
    onnxscript: "*"
    pip: [torch, onnx, onnxruntime, protobuf, onnxscript]
  two-arch:
    platforms: [linux-64, linux-aarch64]
  # CUDA in the conda part only: no CUDA torch or onnxruntime-gpu is served
  # here, and envctl's rules refuse PyPI's CUDA 13 torch beside cuda 11.8.
  cuda118:
    platforms: [linux-64]
    cuda: "11.8"
    torch: "2.13.0+cpu"
    onnxruntime_build: cpu
    conda_extra: ["cuda-version=11.8", "envctl-gpu-probe"]
  cuda-too-new:
    platforms: [linux-64]
    cuda: "11.8"
    torch: "2.13.0+cpu"
    onnxruntime_build: cpu
    conda_extra: ["cuda-version=12.9", "envctl-gpu-probe"]
  cpu-probe:
    platforms: [linux-64]
    conda_extra: ["envctl-gpu-probe"]
  elsewhere:
    platforms: [linux-64]
    channels: ["file:///nonexistent/envctl-test-channel"]
"""


def make_project(root: Path, channel: Path):
    path = root / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(MATRIX).format(channel=Path(channel).as_uri(), pip_options=json.dumps(torch_pip_options()),
                                                        py_mm=PY_MM))
    return load_matrix(path)


def render(root: Path, matrix, name: str):
    target = matrix.targets[name]
    render_target(root, target, Path("envs/matrix.yaml"))
    return target


def set_pip(root: Path, target, requirements: list[str]) -> None:
    """Replace the rendered pip list, keeping the header (and so the target hash).

    PyPI's torch 2.13.0 for linux-aarch64 needs CUDA 13 wheels that are not
    served here, so foreign-platform targets lock a torch-free pip part.
    """
    path = env_file(root, target)
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(text)
    doc["dependencies"] = [d for d in doc["dependencies"] if not isinstance(d, dict)] + [{"pip": requirements}]
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def packages(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["package"]


@pytest.fixture(scope="module")
def cpu_project(tmp_path_factory, local_channel):
    """A project whose cpu-torch target is rendered and locked once for the module."""
    root = tmp_path_factory.mktemp("cpu")
    matrix = make_project(root, local_channel)
    target = render(root, matrix, "cpu-torch")
    assert [s.kind for s in check_locks(root, [target])] == ["missing"]
    events: list[str] = []
    result = lock_target(root, target, progress=lambda event, **info: events.append(event))
    return root, matrix, target, result, events


def test_lock_linux64_torch_onnx(cpu_project):
    root, _, target, result, events = cpu_project
    path = lock_path(root, target)
    assert result.path == path == root / "locks" / "cpu-torch.conda-lock.yml"
    assert result.platforms == ("linux-64",)
    # The local test channel is a file:// folder of this machine: the lock says it is not portable.
    assert events == ["solve", "solved", "pip", "pip-resolved", "warning", "written"]
    assert len(result.warnings) == 1 and "not portable" in result.warnings[0]

    pkgs = packages(path)
    conda = {p["name"]: p for p in pkgs if p["manager"] == "conda"}
    pip = {p["name"]: p for p in pkgs if p["manager"] == "pip"}
    assert {"python", "pip"} <= set(conda)
    assert conda["python"]["version"] == PY_VERSION  # the channel's python is the running one
    for entry in conda.values():
        assert entry["url"].startswith("file://") and len(entry["hash"]["md5"]) == 32
        assert len(entry["hash"]["sha256"]) == 64 and entry["category"] == "main"
    assert {"torch", "onnx", "onnxruntime", "onnxscript", "protobuf", "numpy"} <= set(pip)
    assert not {"python", "pip"} & set(pip), "packages conda provides must not be pip entries too"
    for entry in pip.values():
        assert entry["url"].endswith(".whl") and len(entry["hash"]["sha256"]) == 64
        assert entry["platform"] == "linux-64"
    # torch is the CPU build: from pip's find-links wheelhouse (a file:// URL, hash of the actual file)
    # where pip is configured with one, else from PyTorch's CPU index (tests/support/pipconfig.py).
    torch = pip["torch"]
    assert torch["version"] == "2.13.0+cpu"
    if torch["url"].startswith("file://"):
        wheel = Path(unquote(urlsplit(torch["url"]).path))
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == torch["hash"]["sha256"]
    else:
        assert "pytorch.org/whl/" in torch["url"], torch["url"]
    assert not any(name.startswith("nvidia-") for name in pip)
    assert {"sympy", "typing-extensions"} <= set(torch["dependencies"])
    assert pip["onnx"]["url"].startswith("https://")
    assert "manylinux" in pip["onnxruntime"]["url"] and "x86_64" in pip["onnxruntime"]["url"]

    assert result.counts == {"linux-64": {"conda": len(conda), "pip": len(pip)}}
    assert result.seconds["linux-64"]["solve"] >= 0 and result.seconds["linux-64"]["pip"] > 0


def test_lock_loads_with_conda_lock_and_records_envctl_fields(cpu_project):
    from conda_lock.lockfile import parse_conda_lock_file

    root, _, target, result, _ = cpu_project
    path = lock_path(root, target)
    lockfile = parse_conda_lock_file(path)
    custom = lockfile.metadata.custom_metadata
    text = env_file(root, target).read_text()
    assert custom["envctl_spec_hash"] == spec_hash(text)
    assert custom["envctl_target"] == "cpu-torch"
    assert custom["envctl_target_hash"] == target.definition_hash()
    assert custom["envctl_version"]
    assert lockfile.metadata.platforms == ["linux-64"]
    assert lockfile.metadata.sources == ["../envs/cpu-torch/environment.yml"]
    assert {p.manager for p in lockfile.package} == {"conda", "pip"}

    info = read_lock_meta(path)
    assert info.spec_hash == spec_hash(text) and info.target == "cpu-torch"
    assert info.platforms == ("linux-64",)
    assert info.sha256 == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == result.sha256
    assert check_locks(root, [target]) == []


def test_read_lock_meta_imports_no_conda_lock_or_rattler(cpu_project):
    root, _, target, _, _ = cpu_project
    code = (
        "import sys, json; from envctl.lock.solve import read_lock_meta, check_locks; "
        f"info = read_lock_meta({str(lock_path(root, target))!r}); "
        "print(json.dumps([info.target, 'conda_lock' in sys.modules, 'rattler' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out) == ["cpu-torch", False, False]


def test_relock_is_byte_identical(cpu_project):
    root, _, target, first, _ = cpu_project
    before = lock_path(root, target).read_bytes()
    again = lock_target(root, target)
    assert not again.changed
    assert lock_path(root, target).read_bytes() == before
    assert again.sha256 == first.sha256


@pytest.mark.parametrize("at", ["fsync", "replace"])
def test_lock_interrupted_at_the_write_leaves_previous_lock(cpu_project, tmp_path, monkeypatch, at):
    """Interrupted while the new lock's bytes are being written (at fsync) or put in place (at the rename)."""
    src_root, _, target, _, _ = cpu_project
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    path = lock_path(root, target)
    before = path.read_bytes()
    env = env_file(root, target)
    env.write_text(env.read_text() + "# edited: the new lock would differ\n")
    reached = []
    real = getattr(os, at)

    def interrupt(*args, **kwargs):
        # Only the lock's own write: the bytes are already in a file when fsync is called.
        names = [os.readlink(f"/proc/self/fd/{a}") if isinstance(a, int) else str(a) for a in args]
        if any(path.name in n for n in names):
            reached.append(names)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(os, at, interrupt)
    with pytest.raises(KeyboardInterrupt):
        lock_target(root, target)
    monkeypatch.undo()
    assert reached, f"the lock was written without os.{at}"
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temp files left behind"
    [stale] = check_locks(root, [target])
    assert stale.kind == "stale" and "environment.yml" in stale.reason


def test_check_locks_missing_and_stale(cpu_project, tmp_path):
    src_root, _, target, _, _ = cpu_project
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    assert check_locks(root, [target]) == []

    env = env_file(root, target)
    env.write_text(env.read_text().replace("- pip\n", "- pip\n- libprotobuf\n", 1))
    [stale] = check_locks(root, [target])
    assert (stale.target, stale.kind) == ("cpu-torch", "stale")

    lock_path(root, target).write_text("not: [a lock")
    assert [s.kind for s in check_locks(root, [target])] == ["unreadable"]

    lock_path(root, target).unlink()
    [missing] = check_locks(root, [target])
    assert (missing.kind, missing.path) == ("missing", str(lock_path(root, target)))


def test_two_platforms_lock_both(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "two-arch")
    # `pip` is also in the conda part: it must come from conda only.
    set_pip(tmp_path, target, ["onnx", "numpy", "pip"])
    result = lock_target(tmp_path, target)
    assert result.platforms == ("linux-64", "linux-aarch64")
    pkgs = packages(result.path)
    for platform, arch in (("linux-64", "x86_64"), ("linux-aarch64", "aarch64")):
        conda = {p["name"]: p for p in pkgs if p["platform"] == platform and p["manager"] == "conda"}
        pip = {p["name"]: p for p in pkgs if p["platform"] == platform and p["manager"] == "pip"}
        assert f"/{platform}/python-{PY_VERSION}-" in conda["python"]["url"]
        assert {"onnx", "numpy", "protobuf"} <= set(pip)
        assert "pip" not in pip and "python" not in pip
        assert arch in pip["numpy"]["url"] and f"-{PY_TAG}-" in pip["numpy"]["url"]
        assert result.counts[platform] == {"conda": len(conda), "pip": len(pip)}
    assert set(result.seconds) == {"linux-64", "linux-aarch64"}
    assert read_lock_meta(result.path).platforms == ("linux-64", "linux-aarch64")


def test_cuda_target_locks_on_cpu_host(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "cuda118")
    result = lock_target(tmp_path, target)
    pkgs = packages(result.path)
    conda = {p["name"]: p for p in pkgs if p["manager"] == "conda"}
    assert conda["cuda-version"]["version"] == "11.8"
    assert conda["envctl-gpu-probe"]["dependencies"] == {"__cuda": ""}
    assert not any(p["name"].startswith("__") for p in pkgs), "virtual packages are not locked"
    pip = {p["name"]: p for p in pkgs if p["manager"] == "pip"}
    assert pip["torch"]["version"] == "2.13.0+cpu" and "onnxruntime" in pip


def test_cuda_version_conflict_is_explained(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "cuda-too-new")
    with pytest.raises(EnvctlError) as caught:
        lock_target(tmp_path, target)
    err = caught.value
    assert exit_code(err) == 1
    assert "cuda-too-new" in err.message and "linux-64" in err.message
    assert "__cuda=11.8" in err.message  # what it was solved against
    assert "cuda-version 12.9" in err.message and "__cuda >=12.9" in err.message  # the solver's explanation
    assert not lock_path(tmp_path, target).exists()


def test_cpu_target_gets_no_cuda(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "cpu-probe")
    with pytest.raises(EnvctlError) as caught:
        lock_target(tmp_path, target)
    assert exit_code(caught.value) == 1
    assert "envctl-gpu-probe" in caught.value.message and "__cuda" in caught.value.message
    assert "__cuda=" not in caught.value.message  # not among the virtual packages solved against


def test_channel_override(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "elsewhere")
    with pytest.raises(EnvctlError) as caught:
        lock_target(tmp_path, target)
    assert exit_code(caught.value) == 1 and "nonexistent/envctl-test-channel" in caught.value.message

    url = Path(local_channel).as_uri()
    result = lock_target(tmp_path, target, channels=[url])
    assert read_lock_meta(result.path).channels == (url,)
    conda = [p for p in packages(result.path) if p["manager"] == "conda"]
    assert conda and all(p["url"].startswith(url + "/") for p in conda)
    # The override changes where packages come from, not what spec was locked.
    assert check_locks(tmp_path, [target]) == []


def test_pip_failure_names_target_platform_and_reason(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = render(tmp_path, matrix, "two-arch")
    set_pip(tmp_path, target, ["onnx==0.0.0.1"])
    with pytest.raises(EnvctlError) as caught:
        lock_target(tmp_path, target)
    message = caught.value.message
    assert exit_code(caught.value) == 1
    assert "two-arch" in message and "linux-64" in message and f"python {PY_VERSION}" in message
    assert "onnx==0.0.0.1" in message  # uv's own explanation


def test_unrendered_or_stale_spec_is_refused(tmp_path, local_channel):
    matrix = make_project(tmp_path, local_channel)
    target = matrix.targets["cpu-probe"]
    with pytest.raises(EnvctlError, match="not rendered"):
        lock_target(tmp_path, target)
    render(tmp_path, matrix, "cpu-probe")
    changed = dataclasses.replace(target, opset=18)
    with pytest.raises(EnvctlError, match="another definition"):
        lock_target(tmp_path, changed)


def test_choose_wheel_prefers_the_most_specific_tag():
    protobuf = [
        "protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl",
        "protobuf-7.36.2-py3-none-any.whl",
        "protobuf-7.36.2-cp310-abi3-macosx_10_9_universal2.whl",
    ]
    glibc = {"__glibc": "2.28"}
    assert choose_wheel(protobuf, "linux-64", glibc, "3.11.7") == protobuf[0]
    assert choose_wheel(protobuf, "linux-aarch64", glibc, "3.11.7") == protobuf[1]
    assert choose_wheel(protobuf, "osx-arm64", {"__osx": "11.0"}, "3.11.7") == protobuf[2]
    numpy = [
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-musllinux_1_2_x86_64.whl",
        "numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    ]
    assert choose_wheel(numpy, "linux-64", glibc, "3.11.7") == numpy[0]
    assert choose_wheel(numpy, "linux-64", glibc, "3.12.1") == numpy[2]


def test_conda_provided_packages_pin_and_drop_their_pypi_dependencies(tmp_path):
    """A package conda provides is fixed at conda's version, and its PyPI
    dependencies are not pulled in (conda already satisfied them)."""
    from envctl.lock.pip_resolve import PipOptionsSpec, resolve

    common = dict(platform="linux-64", python_version="3.11.7", virtual={"__glibc": "2.28"},
                  options=PipOptionsSpec(), base=tmp_path)
    alone, _ = resolve(["onnxscript"], provided={}, **common)
    assert {"onnx", "protobuf"} <= {p.name for p in alone}
    beside_conda, _ = resolve(["onnxscript"], provided={"onnx": "1.23.2"}, **common)
    names = {p.name for p in beside_conda}
    assert "onnx" not in names and "protobuf" not in names  # protobuf came only through onnx
    onnx_ir = next(p for p in beside_conda if p.name == "onnx-ir")
    assert "onnx" in onnx_ir.dependency_names  # the edge to the conda package is kept


# ---------------------------------------------------------------- issue 12 item 8: a lock holds what it claims


def _cut_before_entry(text: str, which: int) -> str:
    starts = [i for i in range(len(text)) if text.startswith("\n- name:", i)]
    return text[: starts[which] + 1]


@pytest.mark.parametrize("damage", ["empty package list", "cut before the last entry", "cut before the first entry",
                                    "cut mid-list", "duplicated entry", "content hash changed", "requested package removed"])
def test_damaged_locks_are_not_fresh(cpu_project, tmp_path, damage):
    src_root, _, target, _, _ = cpu_project
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    path = lock_path(root, target)
    text = path.read_text()
    doc = yaml.safe_load(text)
    if damage == "empty package list":
        new = text[: text.index("\npackage:") + 1] + "package: []\n"
    elif damage.startswith("cut before"):
        new = _cut_before_entry(text, -1 if "last" in damage else 0)
    elif damage == "cut mid-list":
        new = _cut_before_entry(text, len(doc["package"]) // 2)
    elif damage == "duplicated entry":
        new = text + text[text.index("\n- name:") + 1:].split("\n- name:", 1)[0] + "\n"
    elif damage == "content hash changed":
        platform = doc["metadata"]["platforms"][0]
        new = text.replace(doc["metadata"]["content_hash"][platform], "0" * 64)
    else:
        python = next(p for p in doc["package"] if p["name"] == "python")
        doc["package"] = [p for p in doc["package"] if p is not python]
        new = text[: text.index("\npackage:") + 1] + yaml.safe_dump({"package": doc["package"]}, sort_keys=False)
    assert new != text
    path.write_text(new)
    try:
        read_lock_meta(path)  # the metadata still reads: only the body tells
        [stale] = check_locks(root, [target])
        assert stale.kind == "unreadable" and "does not hold what it claims" in stale.reason, stale
    finally:
        path.unlink()  # deliberately broken: not one of the locks every reader must read


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda p: p.update(url="noslashes"), "is not a URL"),
    (lambda p: p.update(url="file://x.conda"), "does not end in"),
    (lambda p: p.update(name="six\n--extra-index-url http://evil.invalid"), "contains a newline"),
    (lambda p: p.update(version=None), "no 'version'"),
    (lambda p: p.update(hash={}), "no hash"),
    (lambda p: p.update(platform="win-64"), "not one of the lock's platforms"),
])
def test_bad_lock_entries_are_clear_errors_at_create(cpu_project, tmp_path, edit, expected):
    from envctl.create.build import create_env

    src_root, _, target, _, _ = cpu_project
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    path = lock_path(root, target)
    doc = yaml.safe_load(path.read_text())
    edit(doc["package"][0])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        with pytest.raises(EnvctlError) as err:
            create_env(root, target.name, prefix=tmp_path / "env")
        assert expected in err.value.message and exit_code(err.value) == 2, err.value.message
        assert not (tmp_path / "env").exists()
    finally:
        path.unlink()  # deliberately broken: not one of the locks every reader must read


def test_a_duplicated_package_is_named_at_create(cpu_project, tmp_path):
    from envctl.create.build import create_env

    src_root, _, target, _, _ = cpu_project
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    path = lock_path(root, target)
    doc = yaml.safe_load(path.read_text())
    doc["package"].append(dict(doc["package"][0]))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        with pytest.raises(EnvctlError, match=f"{doc['package'][0]['name']} appears twice"):
            create_env(root, target.name, prefix=tmp_path / "env")
    finally:
        path.unlink()  # deliberately broken: not one of the locks every reader must read
