"""Carries the fast tier's guard (tests/support/tier_guard.py) into Python children of a fast test.

Only on PYTHONPATH while a test not marked slow runs; does nothing unless ENVCTL_TEST_HEAVY_LOG is set.
"""

import os

if os.environ.get("ENVCTL_TEST_HEAVY_LOG"):
    import importlib.util
    import sys

    _path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tier_guard.py")
    _spec = importlib.util.spec_from_file_location("_envctl_tier_guard", _path)
    _guard = importlib.util.module_from_spec(_spec)
    sys.modules["_envctl_tier_guard"] = _guard
    _spec.loader.exec_module(_guard)
    _guard.install()
