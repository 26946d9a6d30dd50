"""Applying the decisions during collection: which test files may be served
without collecting them (whole, or what a selection picks from their
records), and the skip marker on each collected test that passed before.
(How served files are reported is `collection.py`; selecting from records
is `selection.py`.)"""

from __future__ import annotations

import pytest

from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import file_part
from pytest_dryci.selection import CannotAnswer, Elision, Selection
from pytest_dryci.settings import Settings

SKIP_REASON_PREFIX = "dryci: passed before with identical inputs"
# On the report of a test served as the skip or the expected failure it was
# before (its reason is the test's own, so the prefix cannot tell).
SERVED_ATTRIBUTE = "dryci_served"


def skip_reason(short_hash: str) -> str:
    return f"{SKIP_REASON_PREFIX} ({short_hash})"


def is_dryci_skip(report: pytest.TestReport) -> bool:
    longrepr = report.longrepr
    return (
        report.skipped
        and isinstance(longrepr, tuple)
        and len(longrepr) == 3
        and SKIP_REASON_PREFIX in str(longrepr[2])
    )


def names_node_ids(config: pytest.Config) -> bool:
    """Whether the command line narrows the run to node ids (`file.py::test`)."""
    return any("::" in arg for arg in config.args)


def may_elide(config: pytest.Config, settings: Settings) -> bool:
    """Whether any file may go uncollected: not when the run only collects,
    nor when it deselects by what no record holds (the last failures,
    --deselect prefixes, the stepwise position), after collection."""
    option = config.option
    if not settings.skip or not settings.skip_collection or option.collectonly:
        return False
    return not any(getattr(option, name, None) for name in ("lf", "deselect", "stepwise"))


def plan_elisions(
    decisions: Decisions, files: dict[str, str], selection: Selection | None
) -> dict[str, Elision]:
    """The files to serve without collecting them (node-id part -> what to
    serve and deselect). Without a selection, the complete files, whole.
    With one, each file whose record answers it and whose every selected
    test has a result to serve (asked in one native call for all of them);
    a file all of whose tests are deselected needs none."""
    if selection is None:
        return {part: Elision(node_ids, None) for part, node_ids in decisions.complete.items()}
    answers: dict[str, tuple[list[str], list[str]]] = {}
    wanted: list[str] = []
    for part, (node_ids, matchers) in decisions.recorded.items():
        path = files.get(part)
        if path is None:
            continue
        try:
            answers[part] = selected, _ = selection.select(part, path, node_ids, matchers)
        except CannotAnswer:
            continue
        wanted.extend(selected)
    found = decisions.passed(wanted)
    elisions = {}
    for part, (selected, deselected) in answers.items():
        if not all(node_id in found for node_id in selected):
            continue
        elisions[part] = Elision(selected, deselected)
        for node_id in selected:
            _, kind, reason = found[node_id]
            if kind != "passed":
                decisions.complete_results[node_id] = (kind, reason)
    return elisions


def serve_without_workers(manager: pytest.PytestPluginManager) -> None:
    """Every test will be served without collection: pytest-xdist's workers
    would start only to collect nothing, so the controller runs the session
    itself (it reports served tests either way). xdist's distributed session
    and its reporter, if registered, are unregistered before its
    `pytest_sessionstart` starts any worker."""
    for name in ("dsession", "terminaldistreporter"):
        plugin = manager.get_plugin(name)
        if plugin is not None:
            manager.unregister(plugin, name)


def mark_passed(
    items: list[pytest.Item], decisions: Decisions, served_files: dict[str, list[str]]
) -> set[str]:
    """Marks every item with a result under its file's current hash, in one
    native call for all of them: a pass is skipped with DryCI's reason, a
    skip is skipped with its own, an expected failure is xfailed unrun.
    Returns the node ids of the skips and expected failures (their setup
    reports carry `SERVED_ATTRIBUTE`)."""
    candidates = [
        item
        for item in items
        if (part := file_part(item.nodeid)) in decisions.passed_ms and part not in served_files
    ]
    passed = decisions.passed([item.nodeid for item in candidates])
    served_results: set[str] = set()
    if not passed:
        return served_results
    markers: dict[str, pytest.MarkDecorator] = {}
    for item in candidates:
        result = passed.get(item.nodeid)
        if result is None:
            continue
        _, kind, reason = result
        if kind == "skipped":
            item.add_marker(pytest.mark.skip(reason=reason))
        elif kind == "xfailed":
            item.add_marker(pytest.mark.xfail(run=False, reason=reason))
        else:
            part = file_part(item.nodeid)
            marker = markers.get(part)
            if marker is None:
                marker = markers[part] = pytest.mark.skip(
                    reason=skip_reason(decisions.short_hashes[part])
                )
            item.add_marker(marker)
            continue
        served_results.add(item.nodeid)
    return served_results
