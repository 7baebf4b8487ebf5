"""A throwaway envctl project wired to the local conda channel and pip's wheels.

Tests write a matrix whose targets take python+pip from the local `file://`
channel (what conda-forge is for users) and torch/onnx/onnxruntime from pip,
with pip's own find-links (read from pip's configuration, never hard-coded).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from support.local_channel import PY_MM, channel_url
from support.pipconfig import torch_pip_options

TORCH = "2.13.0"

# A one-target matrix (`t`) on conda-forge: enough for commands that read a matrix and build nothing.
ONE_TARGET_MATRIX = """\
version: 1
targets:
  t:
    platforms: [linux-64]
    channels: [conda-forge]
    python: "3.11"
    torch: "2.13.0"
    onnx: "*"
    onnxruntime: "*"
    protobuf: "*"
    exporters: [torchscript]
    opset: 17
"""


def pip_target(channel: Path, **overrides) -> dict:
    """A linux-64 target: python from the channel, the export stack from pip."""
    target = {
        "platforms": ["linux-64"],
        "channels": [channel_url(channel)],
        "python": PY_MM,  # the local channel's python is the interpreter running the tests
        "torch": TORCH,
        "onnx": ">=1.17",
        "onnxruntime": ">=1.19",
        "protobuf": "*",
        "numpy": ">=1.26",
        "opset": 18,
        "exporters": ["torchscript"],
        "pip": ["torch", "onnx", "onnxruntime", "protobuf", "numpy"],
        "pip_options": torch_pip_options(),
        "timeout": 600,
    }
    target.update(overrides)
    return target


def write_project(root: Path, targets: dict[str, dict], files: dict[str, str] | None = None,
                  name: str = "matrix.yaml") -> Path:
    """Write root/envs/<name> (and extra files such as user model modules); return the matrix path."""
    path = root / "envs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}, sort_keys=False))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return path


_TORCH_MATRIX = """\
defaults:
  channels: [{channel}]
  python: "{py_mm}"
  torch: "2.13.0"
  onnx: "*"
  onnxruntime: "*"
  protobuf: "*"
  numpy: "*"
  opset: 17
  exporters: [torchscript]
  pip: [torch, onnx, onnxruntime, protobuf, numpy]
  pip_options: {pip_options}
targets:
  {target}:
    platforms: [linux-64]
"""


def torch_matrix(channel: Path, target: str = "t") -> str:
    """The matrix text of one real torch target (conda python from `channel`, the pip part from
    pip's own find-links or PyTorch's CPU index): what the env-building tests lock and create."""
    import json

    return _TORCH_MATRIX.format(channel=json.dumps(channel.as_uri()), py_mm=PY_MM, target=target,
                                pip_options=json.dumps(torch_pip_options()))
