"""The pytest hooks that open and close observation windows (`observe`):
a test's, from its start (`pytest_runtest_logstart`) to its teardown report
(`attach`), and a collector's collection (a test file's import, a folder's
conftest.py). Workers observe too; what a test read travels on its teardown
report, attached by the session's `pytest_runtest_logreport` (`attach`).

Every test pays for this in Python calls, so they are as few as can be
(counted with cProfile and cachegrind on suites made by
bench/plugin_bench.py): one plain hook call per test opens its window and
one notes the test at teardown, the report it closes on is one DryCI handles
anyway, no fixture set-up is wrapped
(a fixture of a wider scope than a test is told apart only when it reads,
`Observer.window`), and a test that read nothing, whose collectors and
fixtures read nothing, gets its empty attribute without a call.

Under function-level keys, the same windows also note the repository
functions run in them (in the profiler's windows, opened and closed with
these), and a fixture of a wider scope than a test gets a window for those
(`FixtureFunctionWindows`)."""

from __future__ import annotations

import pytest

from pytest_dryci import _native
from pytest_dryci.functions import CALLS_ATTRIBUTE
from pytest_dryci.functions import stop as stop_functions
from pytest_dryci.observe import NOTHING_READ, REPORT_ATTRIBUTE, Attribution, Observer, Reads

PLUGIN_NAME = "dryci-observing"


class ObservingPlugin:
    def __init__(self, observer: Observer, functions: bool = False) -> None:
        self.observer = observer
        self.functions = functions
        observer.functions = functions
        self.stack = observer.stack  # the windows, innermost last
        self.attribution = Attribution(observer)
        # The location of the test whose window is open (its teardown
        # report gets its inputs), the window, and the test once torn down.
        self.running: tuple | None = None
        self.reads: Reads | None = None
        self.item: pytest.Item | None = None

    def _open(self) -> Reads:
        reads = Reads()
        self.stack.append(reads)
        if self.functions:
            _native.open_function_window()
        return reads

    def _close(self, reads: Reads) -> list[str] | None:
        """Closes the innermost window, `reads`: the functions it ran (under
        function-level keys; None when some may have gone unnoted, as when
        `reads` is no longer the innermost window)."""
        stack = self.stack
        if not stack or stack[-1] is not reads:
            return None if self.functions else []
        stack.pop()
        return _native.close_function_window() if self.functions else []

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_make_collect_report(self, collector: pytest.Collector):
        # pytest's own walk of the folders is machinery, left out by the observer.
        reads = self._open()
        try:
            return (yield)
        finally:
            reads.add_functions(self._close(reads))
            if reads:  # only windows that read something are kept
                self.attribution.keep_collector(collector.nodeid, reads)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        # Before the test's set-up: its window, open until its teardown report.
        if self.reads is not None:
            self._close(self.reads)  # a test that made no teardown report
        self.reads = self.observer.test_window = self._open()
        self.running = location

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        # After pytest's own: the test's fixtures are torn down.
        self.item = item

    def attach(self, report: pytest.TestReport) -> None:
        """Gives a test's teardown report what the test read and closes its
        window. Called by the session's `pytest_runtest_logreport` for
        teardown reports: before pytest-xdist sends the report and before
        DryCI records it. (A hook implementation of its own would be one
        more call per report.)"""
        own, item, running = self.reads, self.item, self.running
        if own is None or item is None or not (report.location == item.location == running):
            return  # no window of this test's: no inputs, so never published
        self.reads = self.observer.test_window = self.running = self.item = None
        functions = self._close(own)
        attribution = self.attribution
        if self.functions:
            own.add_functions(functions)
            calls = _native.take_function_calls()
            if calls:
                setattr(report, CALLS_ATTRIBUTE, calls)
            observed = attribution.test_inputs(item, own)
        elif attribution.collectors or attribution.fixtures or own.kinds or own.env:
            observed = attribution.test_inputs(item, own)
        else:
            observed = NOTHING_READ  # most tests
        setattr(report, REPORT_ATTRIBUTE, observed)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.observer.close()
        if self.functions:
            stop_functions()


class FixtureFunctionWindows:
    """Under function-level keys: a window of the profiler's around the
    set-up of each fixture of a wider scope than a test, so that the
    functions it runs count for every test that uses it, not for the test
    it happens to be set up for. (Its reads need no window, `Observer.window`.)"""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        # FixtureDef -> whether it is function-scoped (a definition lives all
        # session; its `scope` is three Python calls away).
        self.function_scoped: dict[object, bool] = {}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(self, fixturedef, request):
        function_scoped = self.function_scoped.get(fixturedef)
        if function_scoped is None:
            function_scoped = fixturedef.scope == "function"
            self.function_scoped[fixturedef] = function_scoped
        if function_scoped:
            return (yield)
        _native.open_function_window()
        try:
            return (yield)
        finally:
            functions = _native.close_function_window()
            if functions is None or functions:
                self.observer.fixture(fixturedef).add_functions(functions)
