"""The pytest hooks that open and close observation windows (`observe`):
a test's protocol, the setup of a fixture of a wider scope than a test, a
collector's collection (a test file's import, a folder's conftest.py).
Workers observe too; what a test read travels on its teardown report,
attached by the session's `pytest_runtest_logreport` (`attach`).

Every test pays for this in Python calls: about 50 more per test than with
observation off, before these were cut to about 15 (counted with cProfile
on a 300-file suite made by bench/plugin_bench.py; the instructions of its
first run over the same run without observation went from +4.0% to +1.8%,
counted with cachegrind). So a function-scoped fixture opens no window (it is set up for
one test, inside that test's window, so what it reads is that test's), the
windows are pushed and popped in place, and a test that read nothing, whose
collectors and fixtures read nothing, gets its empty attribute without a call."""

from __future__ import annotations

import pytest

from pytest_dryci import _native
from pytest_dryci.functions import CALLS_ATTRIBUTE
from pytest_dryci.functions import stop as stop_functions
from pytest_dryci.observe import REPORT_ATTRIBUTE, Attribution, Observer, Reads


class ObservingPlugin:
    def __init__(self, observer: Observer, functions: bool = False) -> None:
        self.observer = observer
        # Under function-level keys each window also notes the repository
        # functions that run in it (`functions`), in the profiler's windows,
        # opened and closed with these.
        self.functions = functions
        observer.functions = functions
        self.stack = observer.stack  # the windows, innermost last
        self.attribution = Attribution(observer)
        # The item whose protocol runs (its teardown report gets its inputs)
        # and its window.
        self.running: pytest.Item | None = None
        self.reads: Reads | None = None
        # FixtureDef -> whether it is function-scoped (a definition lives all
        # session; its `scope` is three Python calls away).
        self.function_scoped: dict[object, bool] = {}

    def _open(self) -> Reads:
        reads = Reads()
        self.stack.append(reads)
        if self.functions:
            _native.open_function_window()
        return reads

    def _close(self, reads: Reads) -> bool:
        """Closes the innermost window, `reads`; whether it read (or ran) anything."""
        stack = self.stack
        if stack and stack[-1] is reads:
            stack.pop()
            if self.functions:
                reads.add_functions(_native.close_function_window())
        return bool(reads)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_make_collect_report(self, collector: pytest.Collector):
        # pytest's own walk of the folders is machinery, left out by the observer.
        reads = self._open()
        try:
            return (yield)
        finally:
            if self._close(reads):  # only windows that read something are kept
                self.attribution.keep_collector(collector.nodeid, reads)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(self, fixturedef, request):
        function_scoped = self.function_scoped.get(fixturedef)
        if function_scoped is None:
            function_scoped = fixturedef.scope == "function"
            self.function_scoped[fixturedef] = function_scoped
        if function_scoped:
            return (yield)
        # Set up once for many tests: its reads count for each test that uses it.
        reads = self._open()
        try:
            return (yield)
        finally:
            if self._close(reads):
                self.attribution.keep_fixture(fixturedef, reads)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        # Live while the test runs: its teardown report reads it.
        outer = self.running, self.reads
        reads = self.reads = Reads()
        self.running = item
        stack = self.stack
        stack.append(reads)
        if self.functions:
            _native.open_function_window()
        try:
            return (yield)
        finally:
            if stack and stack[-1] is reads:
                stack.pop()
                if self.functions:
                    _native.close_function_window()  # `attach` took what it ran
            self.running, self.reads = outer

    def attach(self, report: pytest.TestReport) -> None:
        """Gives a test's teardown report what the test read. Called by the
        session's `pytest_runtest_logreport` (tryfirst) for teardown
        reports: before pytest-xdist sends the report and before DryCI
        records it. (A hook implementation of its own would be one more
        call per report.)"""
        item = self.running
        # Its location, not its node id: both name the test, and pytest 9
        # builds a node id in two Python calls where the location is cached.
        if item is None or item.location != report.location:
            return
        own = self.reads
        attribution = self.attribution
        if self.functions:
            own.add_functions(_native.window_functions())
            calls = _native.take_function_calls()
            if calls:
                setattr(report, CALLS_ATTRIBUTE, calls)
            observed = attribution.test_inputs(item, own)
        elif attribution.collectors or attribution.fixtures or own.kinds or own.env:
            observed = attribution.test_inputs(item, own)
        else:
            observed = {}  # most tests
        setattr(report, REPORT_ATTRIBUTE, observed)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.observer.close()
        if self.functions:
            stop_functions()
