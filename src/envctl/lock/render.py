"""Render a target into a standard conda `environment.yml`.

The file is the stage every later one hashes: it is byte-for-byte
deterministic, and its header holds the hash of the target definition it came
from, so `status` and `lock --check` can tell when it is stale. Beside it goes
`virtual-packages.yml` in conda-lock's format, so `conda-lock -f
environment.yml --virtual-package-spec virtual-packages.yml` solves the same
thing envctl does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from envctl.core.atomic import ensure_inside, write_text_atomic
from envctl.core.errors import BlockedByRules
from envctl.core.limits import read_project_text
from envctl.core.hashing import sha256_text_digest
from envctl.core.paths import env_dir, env_file, virtual_packages_file
from envctl.matrix.loader import Target
from envctl.host.platform import virtual_packages
from envctl.matrix.versions import Spec

if TYPE_CHECKING:  # the rules load only where a target is rendered or checked: a freshness check needs none
    from envctl.rules.api import Finding

HASH_LINE = "# envctl-target-hash: "
CONDA_NAMES = {"torch": "pytorch"}


@dataclass(frozen=True)
class RenderResult:
    target: str
    path: Path
    changed: bool
    spec_hash: str


def _conda_spec(name: str, spec: Spec | None, build: str | None = None) -> str:
    version = spec.conda() if spec else ""
    if not version:
        text = name
    elif version[0] in "<>=!~":
        text = f"{name}{version}"
    elif version.endswith(".*") and "," not in version:
        text = f"{name}={version[:-2]}"
    else:
        text = f"{name}=={version}"
    return f"{text}[build={build}]" if build else text


def _pip_req(name: str, spec: Spec | None) -> str:
    return f"{name}{spec.pip() if spec else ''}"


def _requirements(target: Target) -> tuple[list[str], list[str]]:
    """(conda specs, pip requirements) for a target, implied ones included."""
    gpu = target.onnxruntime_build == "gpu"
    wanted: dict[str, Spec | None] = {
        "torch": target.torch,
        "onnx": target.onnx,
        "onnxruntime": target.onnxruntime,
        "protobuf": target.protobuf,
    }
    if target.numpy is not None:
        wanted["numpy"] = target.numpy
    if target.onnxscript is not None:
        wanted["onnxscript"] = target.onnxscript
    from envctl.rules.api import implied_requirements

    for implied in implied_requirements(target):
        if implied.package not in wanted or wanted[implied.package] is None:
            wanted[implied.package] = implied.spec
    # A package `pip:` names is taken from pip even with no version given (unpinned), never dropped.
    for name in target.pip:
        wanted.setdefault(name, None)
    # Packages the matrix did not place follow the package that needs them.
    follows = {"onnxscript": "torch", "numpy": "onnxruntime"}
    conda: list[str] = [_conda_spec("python", target.python)]
    pip: list[str] = []
    for name, spec in wanted.items():
        in_pip = name in target.pip or (name in follows and name not in target.pip and follows[name] in target.pip)
        if in_pip:
            pip_name = "onnxruntime-gpu" if (name == "onnxruntime" and gpu) else name
            pip.append(_pip_req(pip_name, spec))
        else:
            build = None
            if gpu and name == "onnxruntime":
                build = "*cuda*"
            if target.cuda and name == "torch":
                build = "cuda*"
            conda.append(_conda_spec(CONDA_NAMES.get(name, name), spec, build))
    conda_gpu = target.cuda and any(n in ("torch", "onnxruntime") and n not in target.pip for n in wanted)
    if conda_gpu and target.cuda:
        conda.append(_conda_spec("cuda-version", Spec.parse(".".join(target.cuda.split(".")[:2]))))
    conda.extend(target.conda_extra)
    pip.extend(target.pip_extra)
    if pip:
        conda.append("pip")
    return conda, pip


def render_text(target: Target, matrix_path: Path) -> str:
    conda, pip = _requirements(target)
    options = target.pip_options
    body: dict = {
        "name": target.name,
        "channels": list(target.channels),
        "platforms": list(target.platforms),
        "dependencies": conda + ([{"pip": pip}] if pip else []),
    }
    if pip:
        # conda-lock reads `pip-repositories` (PEP 503 indexes); it cannot parse
        # `--index-url` lines inside the pip list, so the exact pip options
        # envctl's lock uses live in the `envctl` block.
        indexes = ([options.index_url] if options.index_url else []) + list(options.extra_index_urls)
        if indexes:
            body["pip-repositories"] = indexes
        pip_options = {
            "index_url": options.index_url,
            "extra_index_urls": list(options.extra_index_urls),
            "find_links": list(options.find_links),
        }
        body["envctl"] = {"pip_options": {k: v for k, v in pip_options.items() if v}}
    header = (
        f"# Rendered by envctl from {matrix_path.as_posix()}, target '{target.name}'.\n"
        "# Do not edit: change the matrix and run `envctl render`.\n"
        f"{HASH_LINE}{target.definition_hash()}\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1000)


def virtual_packages_text(target: Target) -> str:
    subdirs = {p: {"packages": virtual_packages(target, p)} for p in target.platforms}
    return (
        "# Virtual packages envctl solves this target against (conda-lock's --virtual-package-spec format).\n"
        + yaml.safe_dump({"subdirs": subdirs}, sort_keys=True, default_flow_style=False)
    )


def spec_hash(text: str) -> str:
    """Hash of a rendered file's content: what a lock records it came from."""
    return sha256_text_digest(text)


def recorded_target_hash(path: Path) -> str | None:
    """The target hash in a rendered file's header, or None if absent."""
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(HASH_LINE):
                    return line[len(HASH_LINE):].strip()
                if not line.startswith("#"):
                    break
    except OSError:
        return None
    return None


def is_fresh(root: Path, target: Target) -> bool:
    return recorded_target_hash(env_file(root, target)) == target.definition_hash()


def blocking_findings(target: Target) -> list[Finding]:
    """Rule errors that stop a target from rendering.

    A target marked `xfail` renders anyway: the team declared it broken on
    purpose, and certification must show it still fails (or report the
    unexpected pass).
    """
    if target.xfail:
        return []
    from envctl.rules.api import check_target

    return [f for f in check_target(target) if f.severity == "error"]


def refuse_blocked(targets: list[Target], matrix_path: Path) -> None:
    """BlockedByRules naming every target a rule error stops (the rules run once per target, here)."""
    blocked = {t.name: found for t in targets if (found := blocking_findings(t))}
    if not blocked:
        return
    reasons = "; ".join(f"{name}: {f.rule} ({f.message})" for name, found in blocked.items() for f in found)
    what = f"target '{next(iter(blocked))}' cannot work" if len(targets) == 1 else \
        f"{len(blocked)} target(s) cannot work"
    raise BlockedByRules(f"nothing rendered: {what}: {reasons}", file=matrix_path,
                         hint="Run `envctl matrix check` for sources and remedies.")


def render_target(root: Path, target: Target, matrix_path: Path) -> RenderResult:
    """Write envs/<target>/environment.yml (+ virtual-packages.yml); refuse on rule errors."""
    refuse_blocked([target], matrix_path)
    return write_rendered(root, target, matrix_path)


def write_rendered(root: Path, target: Target, matrix_path: Path) -> RenderResult:
    """Write the rendered files of a target `refuse_blocked` already passed."""
    text = render_text(target, matrix_path)
    # envs/<target> may be a symlink committed into the project: never write through it.
    ensure_inside(root, env_dir(root, target), "rendered spec folder")
    path = env_file(root, target)
    changed = not path.exists() or read_project_text(path, what="environment.yml") != text
    if changed:
        write_text_atomic(path, text)
    vp_path = virtual_packages_file(root, target)
    vp_text = virtual_packages_text(target)
    if not vp_path.exists() or read_project_text(vp_path, what="virtual-packages.yml") != vp_text:
        write_text_atomic(vp_path, vp_text)
    return RenderResult(target.name, path, changed, spec_hash(text))
