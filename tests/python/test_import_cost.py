"""With --dryci off, the plugin costs an import of `pytest_dryci.plugin`
and nothing more: no native module (which also holds the whole server), no
other DryCI module."""

from __future__ import annotations

import pytest

# A test of the project run below: it writes which DryCI modules its pytest
# process loaded. It runs after collection and plugin configuration, so
# everything the plugin loads when pytest starts is in sys.modules by then.
LOADED_MODULES_TEST = """
import pathlib, sys

def test_write_loaded_dryci_modules():
    loaded = sorted(name for name in sys.modules if name.startswith("pytest_dryci"))
    pathlib.Path("loaded.txt").write_text("\\n".join(loaded))
"""


def loaded_modules(pytester: pytest.Pytester, *args: str) -> list[str]:
    pytester.makepyfile(test_loaded=LOADED_MODULES_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    return (pytester.path / "loaded.txt").read_text().split("\n")


def test_without_dryci_only_the_entry_point_is_loaded(pytester: pytest.Pytester):
    assert loaded_modules(pytester) == ["pytest_dryci", "pytest_dryci.plugin"]


def test_with_dryci_the_native_module_is_loaded(pytester: pytest.Pytester):
    # The other direction: the check above would see the native module.
    assert "pytest_dryci._native" in loaded_modules(pytester, "--dryci")
