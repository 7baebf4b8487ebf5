"""Loading the smoke runner's modules in the test process, as the runner loads them in a target env.

The runner's modules import their siblings by bare name (`import envctl_smoke_models`): inside
a target env they sit in one folder on sys.path, not in the envctl package. So a test loads each
by file path under that bare name, once per process.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from envctl.smoke import RUNNER_PATH

SMOKE_FOLDER = RUNNER_PATH.parent


def load_smoke_module(name: str) -> ModuleType:
    """The smoke module `name` (e.g. "envctl_smoke_domain"), loaded under its bare name; reused when loaded."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SMOKE_FOLDER / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
