"""pytest entry point (`pytest11`): options only. The work, and the native
module, are loaded only when DryCI is on, so the plugin costs nothing otherwise."""

from __future__ import annotations

import pytest

# What a test's key holds of its code (`--dryci-precision`, ini `dryci_precision`).
PRECISIONS = ("function", "file")
DEFAULT_PRECISION = "function"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dryci", "DryCI: skip tests that already passed with identical inputs")
    group.addoption(
        "--dryci",
        action="store_true",
        default=None,
        help="skip tests that passed before with identical inputs; publish new passes",
    )
    group.addoption(
        "--dryci-no-publish",
        action="store_true",
        default=False,
        help="query and skip, but publish nothing",
    )
    group.addoption(
        "--dryci-no-skip",
        action="store_true",
        default=False,
        help="run every test, still publish the passes",
    )
    group.addoption(
        "--dryci-config",
        metavar="PATH",
        default=None,
        help="repo_dagger.yaml or pyproject.toml to read rules from "
        "(default: found in the root directory)",
    )
    group.addoption(
        "--dryci-strict",
        action="store_true",
        default=False,
        help="turn every cache failure into an error (for debugging; off by default)",
    )
    group.addoption(
        "--dryci-no-env-hash",
        action="store_true",
        default=False,
        help="do not hash the installed Python distributions into the cache key",
    )
    group.addoption(
        "--dryci-explain",
        action="store_true",
        default=False,
        help="say, for each test that ran, why it was not served from the cache",
    )
    group.addoption(
        "--dryci-observed",
        metavar="PATH",
        default=None,
        help="write a JSON report of what tests read at run time outside their static "
        "dependency graph (files, listings, modules, variables, subprocesses, network), "
        "with the path_rules that would make file inputs static",
    )
    group.addoption(
        "--dryci-precision",
        choices=PRECISIONS,
        default=None,
        help="what a test's key holds of the code it depends on: the module-level code of "
        "the files of its static closure and the bodies of the functions the test was seen "
        "to run (function, the default: an edit of one function runs only the tests that "
        "ran it), or every file of its closure whole (file)",
    )
    parser.addini("dryci", type="bool", default=False, help="turn DryCI on (like --dryci)")
    parser.addini(
        "dryci_precision",
        default="",
        help="function (the default) or file (like --dryci-precision)",
    )
    parser.addini("dryci_config", default="", help="DryCI rules file (like --dryci-config)")
    parser.addini(
        "dryci_skip_collection",
        type="bool",
        default=True,
        help="do not import test files all of whose tests passed before with identical inputs, "
        "nor, under -k, -m or node ids, those whose selected tests did (selected from "
        "the records of earlier collections)",
    )
    parser.addini(
        "dryci_observe",
        type="bool",
        default=True,
        help="record the files, folders, modules and environment variables each test reads "
        "at run time, and serve it only while they are unchanged",
    )
    parser.addini(
        "dryci_observe_ignore",
        type="linelist",
        default=[],
        help="paths (absolute, or relative to the rootdir) whose reads are not inputs, "
        "besides the built-in list (pytest's temporary folders, the interpreter, "
        "site-packages, /proc, /dev, /sys, /run)",
    )
    parser.addini(
        "dryci_serve_subprocess",
        type="bool",
        default=True,
        help="serve from the cache a test that started a subprocess (its executable is an input)",
    )
    parser.addini(
        "dryci_serve_network",
        type="bool",
        default=True,
        help="serve from the cache a test that opened a network connection",
    )
    parser.addini(
        "dryci_hash_environment",
        type="bool",
        default=True,
        help="hash the installed Python distributions into the cache key",
    )


def pytest_configure(config: pytest.Config) -> None:
    enabled = config.getoption("dryci")
    if enabled is None:
        enabled = config.getini("dryci")
    if not enabled:
        return
    from pytest_dryci.session import DryciSession

    config.pluginmanager.register(DryciSession(config), "dryci-session")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args) -> None:
    """Under function-level keys, the functions that run are noted from
    before the first conftest.py is imported (and what it imports)."""
    if _function_level(early_config):
        try:
            from pytest_dryci.functions import start

            start(early_config)
        except Exception:  # DryCI's session tries again, and says why in its summary
            pass


def _function_level(config: pytest.Config) -> bool:
    """Whether this run keys tests at function level, read before the
    plugin is configured (the options are parsed by then)."""
    options = config.known_args_namespace
    enabled = getattr(options, "dryci", None)
    if enabled is None:
        enabled = config.getini("dryci")
    precision = getattr(options, "dryci_precision", None) or config.getini("dryci_precision")
    function_level = (precision or DEFAULT_PRECISION) == "function"
    return bool(enabled) and function_level and bool(config.getini("dryci_observe"))
