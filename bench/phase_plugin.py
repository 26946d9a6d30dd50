"""Stamps pytest's phases, times DryCI's hooks (benchmark only).

bench/plugin_bench.py loads it into the profiled pytest runs of the generated suite with
`-p phase_plugin` and bench/ on PYTHONPATH, so it is imported before pytest loads the
plugins of the venv. It wall-stamps the loading of the initial conftests, configure,
collection, the run loop, session finish and the summary. Its wrappers are tryfirst, so
outermost: a phase includes what other plugins' wrappers do after yielding (DryCI reports
the tests of the files it served at the end of the run loop). It wraps every hook
implementation of DryCI's plugins and its native calls in a timer, and at unconfigure
writes {"stamps", "hooks", "native"} as JSON to $DRYCI_BENCH_PHASES_OUT.
"""

import functools
import json
import os
import time

import pytest

STAMPS = {"plugin_imported": time.time()}
HOOKS = {}
NATIVE = {}


def _timed(table, name, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            slot = table.setdefault(name, [0.0, 0])
            slot[0] += time.perf_counter() - started
            slot[1] += 1

    return wrapper


def _wrap_dryci_calls():
    """Times DryCI's calls that matter to a cached run. Done when pytest imports this
    module (`-p`, before it loads the venv's plugins), because DryCI decides in its own
    pytest_configure, before this plugin's. A native class's methods cannot be wrapped, so
    the thin Python methods that make exactly one native call each are (`Session.*`); the
    session module's names are rebound, as it imported them by name."""
    try:
        from pytest_dryci import decisions, session
    except ImportError:
        return
    for name in ("decide", "passed"):
        original = getattr(decisions.Decisions, name)
        setattr(decisions.Decisions, name, _timed(NATIVE, f"Session.{name}", original))
    session.publish = _timed(NATIVE, "Session.publish", session.publish)
    for name, what in (
        ("discover_test_files", "discover_test_files (the files pytest will collect)"),
        ("plan_elisions", "plan_elisions (files served; -k/-m answered from records)"),
        ("report_served", "report_served (every served test reported)"),
    ):
        setattr(session, name, _timed(NATIVE, what, getattr(session, name)))


_wrap_dryci_calls()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # After the venv's plugins are loaded; the conftests of the arguments (or testpaths).
    STAMPS["conftests_start"] = time.time()
    yield
    STAMPS["conftests_end"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    STAMPS["configured"] = time.time()
    pm = config.pluginmanager
    for plugin_name in ("dryci-session", "dryci"):
        plugin = pm.get_plugin(plugin_name)
        if plugin is None:
            continue
        for caller in pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.hookwrapper and not impl.wrapper:
                    impl.function = _timed(HOOKS, caller.name, impl.function)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    STAMPS["sessionstart"] = time.time()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection(session):
    STAMPS["collection_start"] = time.time()
    yield
    STAMPS["collection_end"] = time.time()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    STAMPS["runtestloop_start"] = time.time()
    yield
    STAMPS["runtestloop_end"] = time.time()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    STAMPS["sessionfinish_start"] = time.time()
    yield
    STAMPS["sessionfinish_end"] = time.time()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    STAMPS["summary_start"] = time.time()
    yield
    STAMPS["summary_end"] = time.time()


def pytest_unconfigure(config):
    STAMPS["unconfigure"] = time.time()
    with open(os.environ["DRYCI_BENCH_PHASES_OUT"], "w") as out:
        json.dump({"stamps": STAMPS, "hooks": HOOKS, "native": NATIVE}, out)
