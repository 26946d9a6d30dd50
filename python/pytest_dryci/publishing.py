"""Publishing: what this run saw (every report, what each file produced and
kept), which passes may be published, which files' collections may be
recorded, and the one native call that publishes them. Failures are never
published."""

from __future__ import annotations

from collections import defaultdict

import pytest

from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import file_part
from pytest_dryci.functions import CALLS_ATTRIBUTE
from pytest_dryci.observe import REPORT_ATTRIBUTE
from pytest_dryci.outcomes import OutcomeTracker
from pytest_dryci.selection import CannotAnswer, Selection
from pytest_dryci.serving import SERVED_ATTRIBUTE, is_dryci_skip
from pytest_dryci.settings import Degradations


class RunRecord:
    """What the controller saw of this run."""

    def __init__(
        self,
        observing: bool,
        serve_subprocess: bool,
        serve_network: bool,
        functions: bool = False,
    ) -> None:
        self.observing = observing
        # Under function-level keys, only a pass whose functions were all
        # noted may be published, and the calls between functions seen by
        # every test (served or not, passed or not) make the session's call graph.
        self.functions = functions
        self.calls: list[tuple[str, str]] = []
        # which observed kinds of test may be published, so served next time
        self.servable = {"subprocesses": serve_subprocess, "network": serve_network}
        self.tracker = OutcomeTracker()
        # node id -> what the test read at run time (its teardown report says)
        self.observed: dict[str, dict] = {}
        # node ids served from the cache, whether skipped by marker or without collection
        self.served_nodeids: set[str] = set()
        # node-id part -> node ids as the file produced them, and as they were kept
        self.produced: dict[str, list[str]] = defaultdict(list)
        self.collected: dict[str, list[str]] = defaultdict(list)
        # node-id part -> what -k and -m match its node ids against, as produced
        self.matchers: dict[str, str] = {}
        # node-id parts whose collection reported an error (never recorded)
        self.collection_errors: set[str] = set()
        # node-id part -> node ids, for files served without collection
        self.served_files: dict[str, list[str]] = {}
        # node-id part -> node ids deselected from its record, for the files
        # served without collection under a selection (-k, -m, node ids)
        self.deselected_files: dict[str, list[str]] = {}

    def record(self, report: pytest.TestReport) -> None:
        if self.functions:
            calls = getattr(report, CALLS_ATTRIBUTE, None)
            if calls:
                self.calls.extend((caller, callee) for caller, callee in calls)
        nodeid = report.nodeid
        if nodeid in self.served_nodeids:
            return  # a served test, or the teardown after a cache skip
        if is_dryci_skip(report) or getattr(report, SERVED_ATTRIBUTE, False):
            self.served_nodeids.add(nodeid)
            return
        self.tracker.record(report)
        if report.when == "teardown":
            observed = getattr(report, REPORT_ATTRIBUTE, None)
            if isinstance(observed, dict):
                self.observed[nodeid] = observed

    def publishable(self) -> dict[str, float]:
        """node id -> seconds, of the passes that may be published: when
        observing, only those whose inputs were observed."""
        publishable = self.tracker.publishable()
        if self.functions:
            observed = self.observed
            publishable = {
                n: s for n, s in publishable.items() if "functions" in observed.get(n, {})
            }
        if self.observing:
            observed = self.observed
            if all(self.servable.values()):  # the default: only whether it was observed
                return {n: s for n, s in publishable.items() if n in observed}
            publishable = {
                n: s for n, s in publishable.items() if n in observed and self.servable_test(n)
            }
        return publishable

    def servable_test(self, nodeid: str) -> bool:
        observed = self.observed[nodeid]
        if not observed:
            return True
        return all(allowed or not observed.get(kind) for kind, allowed in self.servable.items())

    def started(self, kind: str) -> int:
        """How many tests that ran started a subprocess ("subprocesses") or
        connected to the network ("network")."""
        return sum(1 for observed in self.observed.values() if observed and observed.get(kind))

    def served_count(self) -> int:
        return sum(len(node_ids) for node_ids in self.served_files.values())

    def deselected_count(self) -> int:
        return sum(len(node_ids) for node_ids in self.deselected_files.values())

    def collections(
        self, decisions: Decisions, selection: Selection | None
    ) -> dict[str, tuple[list[str], str | None]]:
        """node-id part -> (every node id the file produced, its matchers or
        None), for each file collected whole under a hash, without a
        collection error. With its matchers when the run's `selection`
        (-k, -m) answered from them keeps exactly what the run kept: what a
        later run selects from the record is then what pytest selects.
        Without, only when nothing of the file was deselected or dropped."""
        recorded = {}
        for part, produced in self.produced.items():
            if (
                part not in decisions.short_hashes
                or part in self.served_files
                or part in self.collection_errors
            ):
                continue
            kept = sorted(self.collected.get(part, ()))
            matchers = self.matchers.get(part)
            if matchers is not None and selection is not None:
                try:  # a recording run names no node ids: the path is not read
                    selected, _ = selection.select(part, part, produced, matchers)
                except CannotAnswer:
                    selected = None
                if selected is not None and sorted(selected) == kept:
                    recorded[part] = (produced, matchers)
                    continue
            if kept == sorted(produced):
                recorded[part] = (produced, None)
        return recorded


def publish(
    record: RunRecord,
    decisions: Decisions,
    degradations: Degradations,
    collections: dict[str, tuple[list[str], str | None]],
) -> int:
    """Publishes the run's passes and records `collections`; returns the passes published."""
    if decisions.native is None:
        return 0
    publishable = record.publishable()
    passes: dict[str, dict[str, int]] = defaultdict(dict)
    for nodeid, seconds in publishable.items():
        part = file_part(nodeid)
        if part in decisions.short_hashes:
            passes[part][nodeid] = int(seconds * 1000)
    if not passes and not collections:
        return 0
    total, failed, skipped = record.tracker.counts()
    served = len(record.served_nodeids)
    # Only what read something crosses: no entry means no requirement.
    observed = {n: o for n in publishable if (o := record.observed.get(n))}
    outcomes = {n: result for n, result in record.tracker.results().items() if n in publishable}
    try:
        publication = decisions.native.publish(
            dict(passes),
            outcomes,
            observed,
            collections,
            calls=record.calls,
            total=total + served,
            failed=failed,
            skipped=skipped,
            served=served,
        )
    except Exception as err:  # a record the native side cannot take: the run stands
        degradations.add(f"cannot publish this run's results ({err!r}); they run again next time")
        return 0
    for warning in publication.warnings:
        degradations.add(warning)
    return publication.published
