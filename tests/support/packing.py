"""The bundles the pack tests share (session fixtures in conftest).

Packing is the expensive part. Two projects, each locked once per session:

* `pack_project` / `pack_bundle`: target `edge`, the whole export stack (python and pip from the
  local channel; torch, onnx, onnxruntime, protobuf and numpy from pip), packed with
  `--compress none` (1.2 GB, but packed and installed in half the time of gzip's 570 MB: the
  gzip payload is the small bundle's, so both payloads are installed). Only the tests that
  prove the packed stack runs (an offline install that certifies, a signal during
  `--certify`'s smoke run) use it.
* `small_pack_project` / `small_pack_bundle`: target `mini`, the same channel's python and pip
  with one pip wheel (numpy: C extensions, bundled shared libraries and entry points) and no
  torch (~95 MB packed, ~140 MB installed). The tests of the header's and the installer's own
  mechanics (damage refused, prefix rules, leftovers, signals during install, symlinks, hash
  tools, a second install) install, damage and interrupt copies of this one.

test_pack.py and test_pack_hardening.py use both. `installed_pack_bundle` is pack_bundle installed
once, offline where this machine can cut the network (`install_offline`): test_pack.py checks and
certifies that install (test_pack_hardening.py's signal tests install the bundle for themselves).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACK_TARGET = "edge"
SMALL_TARGET = "mini"
SMALL_PIP = ["numpy>=1.26"]  # the small target's whole pip part


def make_pack_project(root: Path, local_channel: Path) -> Path:
    from typer.testing import CliRunner

    from envctl.cli import app
    from support.project import pip_target, write_project

    matrix = write_project(root, {PACK_TARGET: pip_target(local_channel, models=["cnn"])})
    result = CliRunner().invoke(app, ["lock", PACK_TARGET, "--matrix", str(matrix)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root


def make_small_pack_project(root: Path, local_channel: Path) -> Path:
    """A project whose target `mini` is locked without torch: rendered as any target (a matrix
    target must name torch), then its environment.yml's pip part is cut to SMALL_PIP before
    locking, as tests/pack/test_pack.py's aarch64 test does (the rendered header, and so the
    target's freshness, stays)."""
    import yaml

    from envctl.core.paths import env_file
    from envctl.lock.render import render_target
    from envctl.lock.solve import lock_target
    from envctl.matrix.loader import load_matrix
    from support.project import pip_target, write_project

    matrix = write_project(root, {SMALL_TARGET: pip_target(local_channel, models=["cnn"])})
    target = load_matrix(matrix).targets[SMALL_TARGET]
    render_target(root, target, matrix)
    path = env_file(root, target)
    text = path.read_text()
    headers = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(text)
    doc["dependencies"] = [d for d in doc["dependencies"] if not isinstance(d, dict)] + [{"pip": SMALL_PIP}]
    path.write_text(headers + yaml.safe_dump(doc, sort_keys=False))
    lock_target(root, target)
    lock = yaml.safe_load((root / "locks" / f"{SMALL_TARGET}.conda-lock.yml").read_text())
    names = {p["name"] for p in lock["package"]}
    assert "numpy" in names and "pip" in names and "torch" not in names, sorted(names)
    return root


def make_bundle(project: Path, out: Path, target: str = PACK_TARGET, compress: str = "gzip") -> Path:
    from typer.testing import CliRunner

    from envctl.cli import app

    result = CliRunner().invoke(app, ["pack", "--target", target, "--out", str(out), "--compress", compress, "--matrix",
                                      str(project / "envs" / "matrix.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".envctl-pack-")], "the pack work folder was left behind"
    return out


REPO = Path(__file__).resolve().parents[2]


def bundle_leftovers(prefix: Path) -> list[str]:
    """The installer's hidden work folders beside `prefix` (`.<name>.*`): none may outlive an install."""
    return sorted(p.name for p in prefix.parent.glob(f".{prefix.name}.*"))


def can_unshare() -> bool:
    """Root with util-linux `unshare`: a private network and mount namespace can be made (offline runs, tmpfs)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, timeout=60).returncode == 0


def hidden_paths(local_channel: Path) -> list[str]:
    """Everything an install could cheat with: the channel, the package caches, the wheels, envctl itself."""
    from support.pipconfig import find_links

    home_cache = Path.home() / ".cache"
    paths = [local_channel, home_cache, REPO, Path(sys.prefix)]
    paths += [Path(p) for p in find_links() if Path(p).is_dir()]
    for var in ("UV_CACHE_DIR", "RATTLER_CACHE_DIR", "ENVCTL_CACHE_DIR", "XDG_CACHE_HOME", "ENVCTL_TEST_CHANNEL_CACHE"):
        if os.environ.get(var):
            paths.append(Path(os.environ[var]))
    resolved = sorted({str(p.resolve()) for p in paths if p.exists()})
    # A folder inside another hidden one is gone once the outer one is covered.
    return [p for p in resolved if not any(p.startswith(q + "/") for q in resolved)]


def offline(command: str, hide: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `command` with no network and `hide` covered by empty tmpfs mounts (a private mount namespace)."""
    mounts = "".join(f"mount -t tmpfs envctl-hidden '{p}' && " for p in hide)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(["unshare", "-n", "-m", "--propagation", "private", "sh", "-c", mounts + command],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class InstalledBundle:
    original: Path  # the bundle as packed
    bundle: Path  # its copy on the "device", which installed it
    prefix: Path  # where it installed (spaces in the path)
    hidden: list[str]  # what was covered while it installed: [] where the install could not be cut off


def install_offline(bundle: Path, device: Path, local_channel: Path) -> InstalledBundle:
    """Copy `bundle` to `device` (a folder with a space) and install it at "my envs/edge env" there:
    with no network and the channel, caches, wheels and envctl covered where `can_unshare()`; plainly otherwise."""
    device.mkdir(parents=True, exist_ok=True)
    shipped = device / bundle.name
    shutil.copy(bundle, shipped)
    prefix = device / "my envs" / "edge env"
    command = f"sh '{shipped}' --prefix '{prefix}'"
    if can_unshare():
        hide = hidden_paths(local_channel)
        proc = offline(command, hide, device)
    else:
        hide = []
        proc = subprocess.run(["sh", "-c", command], cwd=device, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return InstalledBundle(original=bundle, bundle=shipped, prefix=prefix, hidden=hide)
