"""Serving whole test files from the cache without collecting them.

When every test of a file passed under the file's current dependency hash
(a "complete file" record in the local store), importing the file and
running pytest's protocol for each test only to skip it is wasted time:
collection and the per-test protocol are pytest's largest fixed costs. Such a
file yields no items at all (`ServedFile`); instead, each of its tests is
reported as skipped with the usual reason, with its node id, through the
reporting hooks (`report_served`), so the terminal, `-rs`, junitxml and
other reporters still see every test.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest


class ServedFile(pytest.File):
    """A test file served from the cache: collected as nothing."""

    def collect(self) -> Iterable[pytest.Item]:
        return ()


def report_served(config: pytest.Config, root: Path, node_ids: list[str], reason: str) -> None:
    """Reports each of `node_ids` as a test skipped at setup, the way pytest
    reports a test skipped by a marker, without creating an item."""
    hook = config.hook
    message = f"Skipped: {reason}"
    paths: dict[str, str] = {}
    for node_id in node_ids:
        file_part, _, name = node_id.partition("::")
        location = (file_part, 0, name.replace("::", "."))
        if file_part not in paths:
            paths[file_part] = str(root / file_part)
        longrepr = (paths[file_part], 1, message)
        hook.pytest_runtest_logstart(nodeid=node_id, location=location)
        for when, outcome, detail in (("setup", "skipped", longrepr), ("teardown", "passed", None)):
            report = pytest.TestReport(
                nodeid=node_id,
                location=location,
                keywords={},
                outcome=outcome,
                longrepr=detail,
                when=when,
            )
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=node_id, location=location)
