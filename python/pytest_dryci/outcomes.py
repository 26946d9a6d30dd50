"""Which tests may be published: those whose setup, call and teardown all
passed in this run, and those that were skipped or failed as expected
(xfail), with the reason, so that they can be served as such under the same
key. A test that failed, was rerun, or passed although expected to fail
(xpass) never is."""

from __future__ import annotations

import pytest


class OutcomeTracker:
    """Folds `pytest_runtest_logreport` reports into one outcome per node id.

    Kept in flat tables of strings and numbers rather than an object per
    test: such tables hold nothing the cyclic collector tracks, so the
    outcomes of a large suite add nothing to each of its full passes (an
    object per test did, in every pass until the run ended)."""

    def __init__(self) -> None:
        # node id -> seconds its setup, call and teardown took: every test seen
        self.seconds: dict[str, float] = {}
        # node id -> how many of its three phases passed
        self.passed_phases: dict[str, int] = {}
        self.failed: set[str] = set()
        # rerun (flaky), or passed although expected to fail (xpass)
        self.spoiled: set[str] = set()
        # node id -> why it was skipped, or why it was expected to fail (and did)
        self.skip_reasons: dict[str, str] = {}
        self.xfail_reasons: dict[str, str] = {}

    def record(self, report: pytest.TestReport) -> None:
        # Called for each of three reports per test: the report's outcome is
        # read once, rather than through its `passed`/`failed`/`skipped` properties.
        nodeid = report.nodeid
        seconds = self.seconds
        seconds[nodeid] = seconds.get(nodeid, 0.0) + report.duration
        result = report.outcome
        if result == "rerun":
            # A flaky test (failed, then passed on rerun) gets another chance next time.
            self.spoiled.add(nodeid)
        elif result == "failed":
            self.failed.add(nodeid)
        elif hasattr(report, "wasxfail"):
            if result == "skipped":
                self.xfail_reasons[nodeid] = str(report.wasxfail)
            else:
                self.spoiled.add(nodeid)  # a non-strict xfail that passed is never published
        elif result == "skipped":
            self.skip_reasons[nodeid] = skip_reason(report)
        elif result == "passed":
            passed_phases = self.passed_phases
            passed_phases[nodeid] = passed_phases.get(nodeid, 0) + 1

    def ran(self) -> list[str]:
        """The node ids of every test seen, sorted."""
        return sorted(self.seconds)

    def result(self, nodeid: str) -> tuple[str, str] | None:
        """("skipped" or "xfailed", reason) for a test that did not simply pass."""
        reason = self.xfail_reasons.get(nodeid)
        if reason is not None:
            return ("xfailed", reason)
        reason = self.skip_reasons.get(nodeid)
        if reason is not None:
            return ("skipped", reason)
        return None

    def results(self) -> dict[str, tuple[str, str]]:
        """node id -> ("skipped" or "xfailed", reason), of the publishable
        tests that did not simply pass."""
        results = {}
        for nodeid in {*self.skip_reasons, *self.xfail_reasons}:
            if nodeid not in self.failed and nodeid not in self.spoiled:
                results[nodeid] = self.result(nodeid)
        return results

    def publishable(self) -> dict[str, float]:
        """node id -> seconds it took (setup + call + teardown), of the tests
        that passed all three phases or were skipped or xfailed, and neither
        failed nor were spoiled."""
        unpublishable = self.failed | self.spoiled
        passed_phases = self.passed_phases
        results = {*self.skip_reasons, *self.xfail_reasons}
        return {
            nodeid: seconds
            for nodeid, seconds in self.seconds.items()
            if nodeid not in unpublishable and (passed_phases.get(nodeid) == 3 or nodeid in results)
        }

    def counts(self) -> tuple[int, int, int]:
        """(total, failed, skipped) over the tests seen."""
        skipped = sum(1 for nodeid in self.skip_reasons if nodeid not in self.failed)
        return len(self.seconds), len(self.failed), skipped


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skip report gives, as `pytest.mark.skip(reason=...)` takes it."""
    longrepr = report.longrepr
    message = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
    return message.removeprefix("Skipped: ")
