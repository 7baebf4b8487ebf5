"""Generated CI installs envctl from its source, never by a bare name from an index.

PyPI's `envctl` is an unrelated project: a workflow that ran `pip install
envctl==X` would install a stranger's code the day a matching version appears.
Every CI system of the registry (envctl.suite.ci.systems()) is checked here.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import envctl
from envctl.suite.ci_install import DIST_NAME, check_install_spec
from envctl.suite.ci import CiSystem, systems
from envctl.cli import app
from envctl.core.errors import EnvctlError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PINNED = f"{DIST_NAME} @ git+https://example.org/team/envctl.git@{COMMIT}"
TARGET = {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.12", "torch": "2.13",
          "onnx": "1.21.*", "onnxruntime": "1.26.*", "protobuf": ">=4.25.1", "opset": 18,
          "exporters": ["torchscript"]}


def _generator(system: CiSystem):
    def generate(matrix: Path, *extra: str):
        if not system.takes_branch:  # --branch goes only to systems whose file names the branch
            extra = tuple(a for i, a in enumerate(extra) if a != "--branch" and (i == 0 or extra[i - 1] != "--branch"))
        return runner.invoke(app, ["ci", system.name, "--matrix", str(matrix), "--out", "-", *extra])
    return generate


GENERATORS = {name: _generator(system) for name, system in systems().items()}  # every CI system


def install_args(text: str) -> list[str]:
    """Every requirement or path a generated file hands to `pip install`."""
    found = []
    for line in text.splitlines():
        m = re.search(r"\bpip install\s+(.*)$", line)
        if m:
            found += [a for a in shlex.split(m.group(1)) if not a.startswith("-")]
    return found


def from_source(arg: str) -> bool:
    """A path in the checkout, or a git URL pinned to a full commit; never a name for an index."""
    if arg in (".", "..") or arg.startswith(("./", "../")):
        return True
    return bool(re.fullmatch(rf"{re.escape(DIST_NAME)} @ git\+https://\S+@[0-9a-f]{{40}}(#\S*)?", arg))


def project(root: Path, pyproject_name: str | None = None, sub: str = "") -> Path:
    (root / ".git").mkdir(parents=True)
    if pyproject_name:
        (root / "pyproject.toml").write_text(f'[project]\nname = "{pyproject_name}"\n')
    path = root / sub / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"cpu": TARGET}}))
    return path


@pytest.fixture()
def installed_from_git(tmp_path, monkeypatch):
    """Distribution metadata saying envctl was installed from a pinned git URL (PEP 610), found first on sys.path."""
    info = tmp_path / "site" / f"{DIST_NAME.replace('-', '_')}-{envctl.__version__}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {envctl.__version__}\n")
    (info / "direct_url.json").write_text(json.dumps(
        {"url": "https://example.org/team/envctl.git", "vcs_info": {"vcs": "git", "commit_id": COMMIT}}))
    monkeypatch.setattr(sys, "path", [str(info.parent), *sys.path])
    return PINNED


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_generated_ci_installs_envctl_from_source(generator, tmp_path, installed_from_git):
    generate = GENERATORS[generator]
    cases = {
        "envctl's own repository": (REPO / "envs" / "matrix.yaml", (), "."),
        "a project inside envctl's checkout": (project(tmp_path / "own", DIST_NAME, "examples/demo"), (), "../.."),
        "a user's project, envctl installed from git": (project(tmp_path / "user", "my-models"), (), PINNED),
        "a user's project, --install of a vendored copy": (project(tmp_path / "vendored"), ("--install", "./tools/envctl"),
                                                           "./tools/envctl"),
    }
    for case, (matrix, extra, expected) in cases.items():
        result = generate(matrix, *extra)
        assert result.exit_code == 0, f"{case}: {result.output}"
        args = install_args(result.stdout)
        assert args, f"{case}: the generated file installs nothing"
        assert all(from_source(a) for a in args), f"{case}: {args}"
        assert set(args) == {expected}, case


@pytest.mark.parametrize("generator", sorted(GENERATORS))
@pytest.mark.parametrize("spec", ["envctl", "envctl==0.1.0", f"{DIST_NAME}=={envctl.__version__}", DIST_NAME,
                                  f"{DIST_NAME} @ git+https://example.org/team/envctl.git@main",
                                  f"{DIST_NAME} @ https://example.org/envctl-0.1.0.tar.gz"])
def test_install_by_name_or_moving_ref_is_refused(generator, spec, tmp_path):
    result = GENERATORS[generator](project(tmp_path), "--install", spec)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--install" in result.output


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_user_project_without_a_known_source_is_told_to_pass_install(generator, tmp_path):
    # The envctl running the tests is an editable install from a local folder: no portable source.
    result = GENERATORS[generator](project(tmp_path, "my-models"))
    assert result.exit_code == 2 and "--install" in result.output and "Traceback" not in result.output


def test_check_install_spec_accepts_paths_and_pinned_urls():
    for spec in (".", "..", "./tools/envctl", "../envctl", PINNED, PINNED + "#subdirectory=tools",
                 f"{DIST_NAME} @ https://example.org/envctl-0.1.0.tar.gz#sha256={'a' * 64}"):
        assert check_install_spec(spec) == spec
    with pytest.raises(EnvctlError, match="index"):
        check_install_spec("envctl>=0")


def test_distribution_is_ours_and_version_is_one_source():
    assert DIST_NAME != "envctl"  # PyPI's envctl is someone else's
    dist = metadata.distribution(DIST_NAME)
    assert dist.version == envctl.__version__
    assert any(ep.name == "envctl" and ep.group == "console_scripts" for ep in dist.entry_points)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(rf'^name = "{DIST_NAME}"$', pyproject, re.M)
