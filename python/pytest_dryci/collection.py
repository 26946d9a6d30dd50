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

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class ServedFile(pytest.File):
    """A test file served from the cache: collected as nothing."""

    def collect(self) -> Iterable[pytest.Item]:
        return ()


def report_served(
    config: pytest.Config, root: Path, served: Iterable[tuple[list[str], str]]
) -> None:
    """Reports each node id of `served` ((node ids, skip reason) per file) as
    a test skipped at setup, the way pytest reports a test skipped by a
    marker, without creating an item: logstart, the skipped setup report,
    logfinish.

    pytest's runner would also send a passed teardown report. None of
    pytest's reporters shows or counts one (the terminal, `-v`, `-rs`,
    junitxml, the last-failed cache), and leaving it out saves a third of
    the hook calls, of the report objects and of the time spent here.
    """
    hook = config.hook
    logstart = hook.pytest_runtest_logstart
    logreport = hook.pytest_runtest_logreport
    logfinish = hook.pytest_runtest_logfinish
    report = pytest.TestReport
    with _batched_terminal_output(config), _no_cyclic_gc():
        for node_ids, reason in served:
            message = f"Skipped: {reason}"
            file_part = ""
            longrepr = ("", 1, message)
            for node_id in node_ids:
                part, _, name = node_id.partition("::")
                if part != file_part:  # once per file: its ids come together
                    file_part = part
                    longrepr = (str(root / part), 1, message)
                location = (part, 0, name.replace("::", "."))
                logstart(nodeid=node_id, location=location)
                logreport(report=report(node_id, location, {}, "skipped", longrepr, "setup"))
                logfinish(nodeid=node_id, location=location)


@contextmanager
def _batched_terminal_output(config: pytest.Config) -> Iterator[None]:
    """Holds back the terminal writer's flushes while served tests are
    reported: the output is the same, written in a few large writes instead
    of a write system call per test."""
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        yield
        return
    writer = config.get_terminal_writer()
    if not callable(getattr(writer, "flush", None)):
        yield
        return
    writer.flush = _no_flush  # an instance attribute shadowing the method
    try:
        yield
    finally:
        del writer.flush
        writer.flush()


def _no_flush() -> None:
    pass


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Reporting creates many small objects and no garbage cycles; the
    collector's passes over every live object meanwhile are pure cost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle_garbage(collect: bool = True) -> None:
    """Moves every object alive now out of the cyclic collector's sight
    (`gc.freeze`), after collecting what is already garbage, so that its
    __del__ methods and the warnings they raise still happen, in pytest's
    session. Served reports live until the process exits: without this,
    pytest's collection at unconfigure and the interpreter's at exit each
    walk every one of them again. Not when the user switched the collector off."""
    if not gc.isenabled():
        return
    if collect:
        gc.collect()
    gc.freeze()
