"""The pytest hooks that open and close observation windows (`observe`):
a test's protocol, a fixture's setup, a collector's collection (a test
file's import, a folder's conftest.py). Workers observe too; what a test
read travels on its teardown report."""

from __future__ import annotations

import pytest

from pytest_dryci.observe import REPORT_ATTRIBUTE, Attribution, Observer, Reads


class ObservingPlugin:
    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.attribution = Attribution(observer)
        # The item whose protocol runs (its teardown report gets its inputs).
        self.running: pytest.Item | None = None

    def _close(self, reads: Reads, into: dict, key) -> None:
        self.observer.pop(reads)
        if reads:  # only windows that read something are kept
            into.setdefault(key, Reads()).update(reads)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_make_collect_report(self, collector: pytest.Collector):
        # pytest's own walk of the folders is machinery, left out by the observer.
        reads = self.observer.push()
        try:
            return (yield)
        finally:
            self._close(reads, self.attribution.collectors, collector.nodeid)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(self, fixturedef, request):
        reads = self.observer.push()
        try:
            return (yield)
        finally:
            self._close(reads, self.attribution.fixtures, fixturedef)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        # Live while the test runs: its teardown report reads it.
        self.attribution.tests[item.nodeid] = self.observer.push()
        self.running = item
        try:
            return (yield)
        finally:
            self.running = None
            self.observer.pop(self.attribution.tests.pop(item.nodeid))

    # A wrapper: before every implementation (xdist sends the report, DryCI records it).
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport):
        item = self.running
        if report.when == "teardown" and item is not None and item.nodeid == report.nodeid:
            setattr(report, REPORT_ATTRIBUTE, self.attribution.test_inputs(item))
        return (yield)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.observer.close()
