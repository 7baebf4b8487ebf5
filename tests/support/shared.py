"""Targets several test modules need, built, locked and certified once per session.

The ORT 1.16.3 target that is expected to fail and the linux-aarch64 target
that can only be locked here are the same in test_certify, test_suite and
test_htmlreport. They live in one shared project root (a session fixture in
conftest.py); each module writes its own matrix file there (`envs/<name>.yaml`)
naming these targets with the same definitions, so the rendered file, the
lock and the env are the ones already made (freshness goes by the target's
definition hash, not by which matrix file named it).
"""

from __future__ import annotations

from pathlib import Path

from support.project import pip_target

XFAIL = "opset 20 is beyond what onnxruntime 1.16 loads"
OLD_RUNTIME = "old-runtime"
AARCH64 = "aarch64-only"


def shared_targets(channel: Path) -> dict[str, dict]:
    return {
        # TorchScript writes opset 20 (IR 9); onnxruntime 1.16 loads up to 19.
        OLD_RUNTIME: pip_target(channel, onnxruntime="1.16.3", numpy="<2", onnx=">=1.16,<1.18", protobuf="<5",
                                opset=20, models=["cnn"], xfail=XFAIL),
        # Locked, never run here: PyPI's torch 2.9 for aarch64 is a CPU build
        # (2.11+ pulls CUDA 13 wheels), and locking reads only its metadata.
        AARCH64: pip_target(channel, platforms=["linux-aarch64"], torch="2.9.1"),
    }
