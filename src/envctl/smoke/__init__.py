"""The smoke runner that envctl certify launches inside a target env.

runner.py and its envctl_smoke_*.py siblings run under the target env's interpreter
(`python -I runner.py SPEC RESULT`) and import nothing from envctl. The host only needs
where the runner lives; nothing heavy is imported here.
"""
from pathlib import Path

from envctl.smoke.envctl_smoke_builtins import BUILTIN_NAMES as BUILTIN_MODELS

RUNNER_PATH = Path(__file__).with_name("runner.py")

__all__ = ["BUILTIN_MODELS", "RUNNER_PATH"]
