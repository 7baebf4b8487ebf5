"""Matrix targets for the CI generator tests (GitHub and GitLab): one CPU shape and one CUDA shape."""

from __future__ import annotations


def cpu(platforms: list[str], **extra) -> dict:
    """A CPU target on `platforms`, conda-forge only; `extra` keys override or add."""
    target = {"platforms": platforms, "channels": ["conda-forge"], "python": "3.12", "torch": "2.13",
              "onnx": "1.21.*", "onnxruntime": "1.26.*", "protobuf": ">=4.25.1", "opset": 18,
              "exporters": ["torchscript"]}
    return target | extra


def cuda(platforms: list[str], **extra) -> dict:
    """A CUDA 12.6 target whose torch and onnxruntime come from pip; `extra` keys override or add."""
    return cpu(platforms, **({"cuda": "12.6", "cudnn": "9", "torch": "2.13.0+cu126", "pip": ["torch", "onnxruntime"]} | extra))
