"""Serving whole test files from the cache without collecting them.

When every test of a file passed under the file's current dependency hash
(a "complete file" record in the local store), importing the file and
running pytest's protocol for each test only to skip it is wasted time:
collection and the per-test protocol are pytest's largest fixed costs. Such a
file yields no items at all (`ServedFile`); instead, each of its tests is
reported as skipped with the usual reason, with its node id, through the
reporting hooks (`report_served`), so the terminal, `-rs`, junitxml and
other reporters still see every test; when only listeners it knows are
registered, `bulk_reporting` gives them the same a file at a time.
"""

from __future__ import annotations

import gc
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_dryci.bulk_reporting import BulkReporter
from pytest_dryci.observing import PLUGIN_NAME as OBSERVING_PLUGIN


class ServedFile(pytest.File):
    """A test file served from the cache: collected as nothing."""

    def collect(self) -> Iterable[pytest.Item]:
        return ()


def report_served(
    config: pytest.Config,
    root: Path,
    served: Iterable[tuple[list[str], str]],
    results: dict[str, tuple[str, str]],
) -> None:
    """Reports each node id of `served` ((node ids, skip reason) per file) as
    a test skipped at setup, the way pytest reports a test skipped by a
    marker, without creating an item: logstart, the skipped setup report,
    logfinish. A test in `results` (node id -> kind, reason) is reported as
    what it did: skipped with its own reason, or xfailed.

    pytest's runner would also send a passed teardown report. None of
    pytest's reporters shows or counts one (the terminal, `-v`, `-rs`,
    junitxml, the last-failed cache), and leaving it out saves a third of
    the hook calls, of the report objects and of the time spent here.

    When every plugin listening is one `bulk_reporting` knows (pytest's
    quiet or normal terminal among them), the reports are handed to it at
    once: the same output and records, without the hook calls per test.
    """
    bulk = BulkReporter.of(config)
    with _batched_terminal_output(config), cyclic_gc_paused():
        if bulk is None:
            _report_each(config, _served_reports(root, served, results))
            return
        reports = list(_served_reports(root, served, results))
        if not bulk.report(reports):
            _report_each(config, reports)


def _served_reports(
    root: Path,
    served: Iterable[tuple[list[str], str]],
    results: dict[str, tuple[str, str]],
) -> Iterator[pytest.TestReport]:
    """The setup report of each served test, in order."""
    report = pytest.TestReport
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
            result = results.get(node_id) if results else None
            if result is None:
                yield report(node_id, location, {}, "skipped", longrepr, "setup")
            else:
                yield _result_report(node_id, location, root / part, result)


def _result_report(
    node_id: str, location: tuple, path: Path, result: tuple[str, str]
) -> pytest.TestReport:
    """The setup report of a test served as the skip or expected failure it was."""
    kind, reason = result
    prefix = "Skipped" if kind == "skipped" else "XFailed"
    served = pytest.TestReport(
        node_id, location, {}, "skipped", (str(path), 1, f"{prefix}: {reason}"), "setup"
    )
    if kind == "xfailed":
        served.wasxfail = reason
    return served


def _report_each(config: pytest.Config, reports: Iterable[pytest.TestReport]) -> None:
    """Each report through the hooks, as pytest's runner sends it: logstart
    and logfinish only when an implementation may show something."""
    hook = config.hook
    logstart = hook.pytest_runtest_logstart
    logreport = hook.pytest_runtest_logreport
    logfinish = hook.pytest_runtest_logfinish
    call_logstart = _has_visible_impl(config, logstart, "logstart")
    call_logfinish = _has_visible_impl(config, logfinish, "logfinish")
    for report in reports:
        node_id = report.nodeid
        if call_logstart:
            logstart(nodeid=node_id, location=report.location)
        logreport(report=report)
        if call_logfinish:
            logfinish(nodeid=node_id, location=report.location)


def _has_visible_impl(config: pytest.Config, caller, hook: str) -> bool:
    """Whether any implementation of pytest_runtest_log`hook` may do
    something for a served test. The call is left out only when each one is
    a plugin known to do nothing for a test that logged nothing: the
    live-logging handler's reset, the terminal's, when it prints neither
    file names nor test ids at start (-q), and DryCI's observation window (a
    served test does not run). Any other plugin implementing the hook,
    pytest 8's terminal progress in logfinish included, gets every call.
    """
    quiet_terminal = False
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hook == "logstart":
        quiet_terminal = not (
            getattr(reporter, "showfspath", True) or getattr(reporter, "showlongtestinfo", True)
        )
    for impl in caller.get_hookimpls():
        name = config.pluginmanager.get_name(impl.plugin)
        if name in ("logging-plugin", OBSERVING_PLUGIN):
            continue
        if name == "terminalreporter" and quiet_terminal:
            continue
        return True
    return False


@contextmanager
def _batched_terminal_output(config: pytest.Config) -> Iterator[None]:
    """Holds back the terminal writer's output while served tests are
    reported and writes it in one piece afterwards: the same text, without a
    write system call per test (one per letter when the stream is unbuffered,
    as with PYTHONUNBUFFERED=1, one per flush otherwise)."""
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        yield
        return
    writer = config.get_terminal_writer()
    stream = getattr(writer, "_file", None)
    if stream is None or not callable(getattr(writer, "flush", None)):
        yield
        return
    held = io.StringIO()
    writer._file = held
    writer.flush = _no_flush  # an instance attribute shadowing the method
    try:
        yield
    finally:
        writer._file = stream
        del writer.flush
        stream.write(held.getvalue())
        writer.flush()


def _no_flush() -> None:
    pass


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """For DryCI's own bulk work (reporting served tests, recording the
    run): it creates many small objects and no garbage cycles, so the
    collector's passes over every live object of the suite meanwhile are
    pure cost (on the plugin benchmark's first run, one full pass is 0.2 s).
    What it made and dropped is freed by reference counting before the
    collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freeze_startup_objects() -> bool:
    """Moves the objects pytest, its plugins and the initial conftests made
    out of the cyclic collector's sight while DryCI decides and, when it
    serves every file, while pytest walks the folders (`gc.freeze`): the tens
    of thousands of small objects deciding and serving create trigger
    collections, and each full one walked all of pytest again (9 ms of a
    cached run). Nothing is collected here, so no garbage of theirs is lost:
    `thaw_startup_objects` gives them back before any test runs. Returns
    whether they were frozen."""
    if not gc.isenabled() or gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def thaw_startup_objects() -> None:
    """Undoes `freeze_startup_objects`: tests see the collector as pytest left it."""
    gc.unfreeze()


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
