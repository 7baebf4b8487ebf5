"""The smoke runner that envctl certify launches inside a target env.

runner.py and its envctl_smoke_*.py siblings run under the target env's interpreter
(`python -I runner.py SPEC RESULT`) and import nothing from envctl. The host imports the
protocol (envctl_smoke_protocol, envctl_smoke_certificate) and the built-in names as
envctl.smoke.*; nothing heavy is imported here.
"""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from envctl.smoke.envctl_smoke_builtins import BUILTIN_NAMES as BUILTIN_MODELS

RUNNER_PATH = Path(__file__).with_name("runner.py")

__all__ = ["BUILTIN_MODELS", "RUNNER_PATH", "runner_module"]


def runner_module(name: str) -> ModuleType:
    """One of the runner's standard-library modules (envctl_smoke_classes: the classifier), loaded by file
    path under its own name as runner.py loads it, the protocol first (its siblings import it by that name)."""
    for each in ("envctl_smoke_protocol", name):
        if each not in sys.modules:
            spec = importlib.util.spec_from_file_location(each, RUNNER_PATH.with_name(f"{each}.py"))
            assert spec is not None and spec.loader is not None  # a .py file beside runner.py
            module = importlib.util.module_from_spec(spec)
            sys.modules[each] = module
            spec.loader.exec_module(module)
    return sys.modules[name]
