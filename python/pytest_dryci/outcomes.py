"""Which tests may be published: only those whose setup, call and teardown all
passed in this run and that never failed, were never rerun, skipped or xfailed."""

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

    @property
    def publishable(self) -> bool:
        return not (self.failed or self.skipped or self.spoiled) and self.phases_passed == 3


class OutcomeTracker:
    """Folds `pytest_runtest_logreport` reports into one outcome per node id."""

    def __init__(self) -> None:
        self.outcomes: dict[str, TestOutcome] = {}

    def record(self, report: pytest.TestReport) -> None:
        outcome = self.outcomes.setdefault(report.nodeid, TestOutcome())
        outcome.duration += report.duration
        if report.outcome == "rerun":
            # A flaky test (failed, then passed on rerun) gets another chance next time.
            outcome.spoiled = True
        elif report.failed:
            outcome.failed = True
        elif hasattr(report, "wasxfail"):
            outcome.spoiled = True  # xfail and xpass are never published
        elif report.skipped:
            outcome.skipped = True
        elif report.passed:
            outcome.phases_passed += 1

    def publishable(self) -> dict[str, float]:
        """node id -> seconds it took (setup + call + teardown)."""
        return {nodeid: o.duration for nodeid, o in self.outcomes.items() if o.publishable}

    def counts(self) -> tuple[int, int, int]:
        """(total, failed, skipped) over the tests seen."""
        failed = sum(o.failed for o in self.outcomes.values())
        skipped = sum(o.skipped and not o.failed for o in self.outcomes.values())
        return len(self.outcomes), failed, skipped
