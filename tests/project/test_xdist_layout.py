"""The suite's layout under the README's `-n auto --dist loadgroup` holds (tests/conftest.py)."""

import pytest


def test_under_loadgroup_each_test_carries_its_module_group(request):
    """xdist's scheduler reads a test's group from nothing but its node id (`...::test@group`).
    Without it a module's tests go out one by one to both workers, and each worker builds
    the module and session fixtures again (pytest-dev/pytest-xdist#1386, pytest 9.2)."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("checks the layout of `-n N --dist loadgroup` runs (the README's test commands)")
    assert request.node.nodeid.endswith("@" + __name__), request.node.nodeid
