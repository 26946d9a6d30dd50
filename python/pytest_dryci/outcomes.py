"""Which tests may be published: those whose setup, call and teardown all
passed in this run, and those that were skipped or failed as expected
(xfail), with the reason, so that they can be served as such under the same
key. A test that failed, was rerun, or passed although expected to fail
(xpass) never is."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class TestOutcome:
    __test__ = False  # not a test class, whatever pytest's python_classes say

    phases_passed: int = 0
    failed: bool = False
    skipped: bool = False
    spoiled: bool = False
    duration: float = 0.0
    # Why it was skipped, or why it was expected to fail (and did).
    skip_reason: str | None = None
    xfail_reason: str | None = None

    @property
    def publishable(self) -> bool:
        if self.failed or self.spoiled:
            return False
        return self.phases_passed == 3 or self.result is not None

    @property
    def result(self) -> tuple[str, str] | None:
        """("skipped" or "xfailed", reason) for a test that did not simply pass."""
        if self.xfail_reason is not None:
            return ("xfailed", self.xfail_reason)
        if self.skip_reason is not None:
            return ("skipped", self.skip_reason)
        return None


class OutcomeTracker:
    """Folds `pytest_runtest_logreport` reports into one outcome per node id."""

    def __init__(self) -> None:
        self.outcomes: dict[str, TestOutcome] = {}

    def record(self, report: pytest.TestReport) -> None:
        # Called for each of three reports per test: the report's outcome is
        # read once, rather than through its `passed`/`failed`/`skipped` properties.
        nodeid = report.nodeid
        outcome = self.outcomes.get(nodeid)
        if outcome is None:
            outcome = self.outcomes[nodeid] = TestOutcome()
        outcome.duration += report.duration
        result = report.outcome
        if result == "rerun":
            # A flaky test (failed, then passed on rerun) gets another chance next time.
            outcome.spoiled = True
        elif result == "failed":
            outcome.failed = True
        elif hasattr(report, "wasxfail"):
            if result == "skipped":
                outcome.xfail_reason = str(report.wasxfail)
            else:
                outcome.spoiled = True  # a non-strict xfail that passed is never published
        elif result == "skipped":
            outcome.skipped = True
            outcome.skip_reason = skip_reason(report)
        elif result == "passed":
            outcome.phases_passed += 1

    def results(self) -> dict[str, tuple[str, str]]:
        """node id -> ("skipped" or "xfailed", reason), of the publishable
        tests that did not simply pass."""
        return {
            nodeid: o.result
            for nodeid, o in self.outcomes.items()
            if o.publishable and o.result is not None
        }

    def publishable(self) -> dict[str, float]:
        """node id -> seconds it took (setup + call + teardown)."""
        return {nodeid: o.duration for nodeid, o in self.outcomes.items() if o.publishable}

    def counts(self) -> tuple[int, int, int]:
        """(total, failed, skipped) over the tests seen."""
        failed = sum(o.failed for o in self.outcomes.values())
        skipped = sum(o.skipped and not o.failed for o in self.outcomes.values())
        return len(self.outcomes), failed, skipped


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skip report gives, as `pytest.mark.skip(reason=...)` takes it."""
    longrepr = report.longrepr
    message = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
    return message.removeprefix("Skipped: ")
