"""Reporting served tests in bulk: what pytest shows and counts for each
test served without collection, without a round of hook calls per test.

`collection.report_served` sends each served test's setup report through
pytest's reporting hooks. At 11,600 served tests that was 40% of a cached
run, and 83% of it was `TerminalReporter.pytest_runtest_logreport`: per
report, the `pytest_report_teststatus` hook, `_add_stats`, and
`_write_progress_information_if_past_edge`, which measures the width of the
whole current line (`wcswidth`) after every letter. When every
implementation of the reporting hooks is one listed here, `BulkReporter`
does the same work for all of them at once:

- each listed implementation of `pytest_runtest_logreport` other than the
  terminal's is called directly with each report, in pluggy's order
  (`LOGREPORT_DIRECT`: the session's failure count, the last-failed cache,
  junitxml, DryCI's own record...);
- the status of each kind of report (skipped, xfailed) is asked of
  `pytest_report_teststatus` once: every implementation of it listed in
  `TESTSTATUS_PURE` answers from the outcome, `when` and `wasxfail` only;
- the terminal's part is done a run of letters at a time: the file's name
  written as its first test's logstart writes it, the reports appended to
  `stats` and the progress ids added, the letters written, and pytest's
  own `_write_progress_information_if_past_edge` called where the line
  reaches the edge, so with the same state as when pytest calls it.

The text is the same, byte for byte (with colours, each letter is still
written on its own, escape codes included); so are `stats` (summary
counts, -rA lines), the progress counter and everything the listed plugins
record. `tests/python/test_bulk_reporting.py` pins it against the per-test
path.

Anything else takes the per-test path (`BulkReporter.of` returns None):
- a plugin implementing `pytest_runtest_logreport`,
  `pytest_report_teststatus`, `pytest_runtest_logstart` or
  `pytest_runtest_logfinish` that is not listed (pytest-reportlog, say), or
  wrapping one of them;
- a terminal writing a line per test (-v), the "times" progress style, a
  letter that is not one printable ASCII character;
- pytest before 8.4 (its terminal writes progress in logfinish, which is
  not listed) or after 9.2 (not checked against yet: `KNOWN_PYTEST`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import pytest

# The newest pytest whose TerminalReporter this module reproduces.
KNOWN_PYTEST = (9, 2)
TERMINAL_LOGREPORT = ("_pytest.terminal", "TerminalReporter.pytest_runtest_logreport")
TERMINAL_LOGSTART = ("_pytest.terminal", "TerminalReporter.pytest_runtest_logstart")
# Implementations of pytest_runtest_logreport that write nothing to the
# terminal: called directly, with each report.
LOGREPORT_DIRECT = frozenset(
    {
        ("_pytest.main", "Session.pytest_runtest_logreport"),
        ("_pytest.cacheprovider", "LFPlugin.pytest_runtest_logreport"),
        ("_pytest.logging", "LoggingPlugin.pytest_runtest_logreport"),
        ("_pytest.junitxml", "LogXML.pytest_runtest_logreport"),
        ("_pytest.terminal", "TerminalProgressPlugin.pytest_runtest_logreport"),
        ("pytest_rerunfailures", "XDistHooks.pytest_runtest_logreport"),
        ("pytest_dryci.session", "DryciSession.pytest_runtest_logreport"),
    }
)
# Implementations of pytest_report_teststatus whose answer depends only on
# the report's outcome, `when` and `wasxfail` (and type: a subtest's).
TESTSTATUS_PURE = frozenset(
    {
        ("_pytest.terminal", "pytest_report_teststatus"),
        ("_pytest.runner", "pytest_report_teststatus"),
        ("_pytest.skipping", "pytest_report_teststatus"),
        ("_pytest.subtests", "pytest_report_teststatus"),
        ("pytest_rerunfailures", "pytest_report_teststatus"),
    }
)
# Implementations of logstart and logfinish that do nothing for a test that
# logged nothing (the live-logging handler's reset) or that does not run
# (DryCI's observation window); the per-test path leaves them out too
# (`collection._has_visible_impl`).
LOG_INVISIBLE = frozenset(
    {
        ("_pytest.logging", "LoggingPlugin.pytest_runtest_logstart"),
        ("_pytest.logging", "LoggingPlugin.pytest_runtest_logfinish"),
        ("pytest_dryci.observing", "ObservingPlugin.pytest_runtest_logstart"),
    }
)


def _name(impl) -> tuple[str, str]:
    function = impl.function
    return getattr(function, "__module__", "") or "", getattr(function, "__qualname__", "")


def _plain(impl) -> bool:
    return not (getattr(impl, "wrapper", False) or getattr(impl, "hookwrapper", False))


class BulkReporter:
    """Reports served tests in bulk, as the hooks would have."""

    def __init__(self, config: pytest.Config, reporter, direct: list[Callable[[Any], None]]):
        self.config = config
        self.reporter = reporter
        self.writer = reporter._tw
        # called with each report, in pluggy's order (last registered first)
        self.direct = direct
        self.show_progress = reporter._show_progress_info
        self.show_fspath = bool(reporter.showfspath)
        # has-wasxfail -> (category, letter, markup)
        self.statuses: dict[bool, tuple[str, str, dict[str, bool]]] = {}
        # pytest 9.2 keys the progress by the parsed node id (`report.id`)
        self.progress_key = operator.attrgetter(
            "id" if isinstance(getattr(pytest.TestReport, "id", None), property) else "nodeid"
        )

    @classmethod
    def of(cls, config: pytest.Config) -> BulkReporter | None:
        """The bulk reporter, when every implementation of the reporting
        hooks is one it knows; None for the per-test path."""
        try:
            from _pytest.terminal import TerminalReporter
        except ImportError:
            return None
        if tuple(pytest.version_tuple[:2]) > KNOWN_PYTEST:
            return None
        manager = config.pluginmanager
        reporter = manager.get_plugin("terminalreporter")
        if type(reporter) is not TerminalReporter:
            return None
        test_cases = getattr(pytest.Config, "VERBOSITY_TEST_CASES", None)
        if test_cases is None or config.get_verbosity(test_cases) > 0:
            return None
        if getattr(reporter, "_show_progress_info", None) not in (False, "progress", "count"):
            return None
        needed = ("_add_stats", "_write_progress_information_if_past_edge", "write_fspath_result")
        if not all(callable(getattr(reporter, name, None)) for name in needed):
            return None
        if not isinstance(getattr(reporter, "_progress_nodeids_reported", None), set):
            return None
        hook = config.hook
        for impl in hook.pytest_report_teststatus.get_hookimpls():
            if _name(impl) not in TESTSTATUS_PURE or not _plain(impl):
                return None
        for caller in (hook.pytest_runtest_logstart, hook.pytest_runtest_logfinish):
            for impl in caller.get_hookimpls():
                known = _name(impl) in LOG_INVISIBLE or (
                    impl.plugin is reporter and _name(impl) == TERMINAL_LOGSTART
                )
                if not known or not _plain(impl):
                    return None
        direct: list[Callable[[Any], None]] = []
        terminal = False
        # pluggy calls the implementations from the last of this list to the first
        for impl in reversed(hook.pytest_runtest_logreport.get_hookimpls()):
            name = _name(impl)
            if not _plain(impl):
                return None
            if impl.plugin is reporter and name == TERMINAL_LOGREPORT:
                terminal = True
            elif name in LOGREPORT_DIRECT and tuple(impl.argnames) in ((), ("report",)):
                direct.append(_direct_call(impl.function, bool(impl.argnames)))
            else:
                return None
        if not terminal:
            return None
        return cls(config, reporter, direct)

    def status(self, report: pytest.TestReport) -> tuple[str, str, dict[str, bool]] | None:
        """(category, letter, markup) of a report of this kind, as the
        terminal derives them; None for a status the terminal would show
        otherwise than as one letter of width one."""
        xfail = hasattr(report, "wasxfail")
        known = self.statuses.get(xfail)
        if known is not None:
            return known
        answer = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        if not isinstance(answer, (tuple, list)) or len(answer) != 3:
            return None
        category, letter, word = answer
        if not (isinstance(letter, str) and len(letter) == 1 and letter.isascii()):
            return None
        if not letter.isprintable():
            return None
        markup = word[1] if isinstance(word, tuple) else None
        if markup is not None:
            markup = dict(markup)
        elif report.passed:
            markup = {"yellow": True} if xfail else {"green": True}
        elif report.failed:
            markup = {"red": True}
        elif report.skipped:
            markup = {"yellow": True}
        else:
            markup = {}
        known = self.statuses[xfail] = (category, letter, markup)
        return known

    def report(self, reports: Sequence[pytest.TestReport]) -> bool:
        """Reports `reports` (in order, each file's together), or returns
        False having reported nothing when one of them has a status the
        bulk path does not write (the caller reports them one by one)."""
        statuses = []
        status = self.status
        for report in reports:
            known = status(report)
            if known is None:
                return False
            statuses.append(known)
        for call in self.direct:
            for report in reports:
                call(report)
        reporter = self.reporter
        if not self.show_fspath:  # no file names: one line of letters runs on across files
            self._letters(reports, statuses, 0, len(reports))
        start = 0
        while self.show_fspath and start < len(reports):
            part = reports[start].nodeid.partition("::")[0]
            end = start + 1
            while end < len(reports) and reports[end].nodeid.partition("::")[0] == part:
                end += 1
            # each test's logstart; only the file's first one writes
            reporter.write_fspath_result(reports[start].nodeid, "")
            reporter.flush()
            self._letters(reports, statuses, start, end)
            start = end
        if reports:
            reporter._tests_ran = True
            if hasattr(reporter, "_current_logreport"):
                reporter._current_logreport = reports[-1]
        return True

    def _letters(self, reports, statuses, start: int, end: int) -> None:
        """The terminal's part of logreport for reports[start:end], one
        run of letters up to the edge of the line at a time. pytest checks
        after each letter whether the line is past the edge and, if so,
        writes the progress and a new line; the check is made here only
        after the letter that reaches the edge, where it writes."""
        reporter = self.reporter
        while start < end:
            edge = False
            stop = end
            if self.show_progress:
                count = self._letters_to_edge()
                if count is not None and start + count <= end:
                    stop = start + count
                    edge = True
            self._write_run(reports, statuses, start, stop)
            if edge and not reporter._is_last_item:
                reporter._write_progress_information_if_past_edge()
            reporter.flush()
            start = stop

    def _letters_to_edge(self) -> int | None:
        """After how many more letters of width one the line is past the
        edge, as `_write_progress_information_if_past_edge` measures it
        (None: never, on this line)."""
        reserved = self.reporter._screen_width - self._progress_length() - 1
        width = self._line_width()
        if width < 0:  # a control character: pytest's width stays -1 on this line
            return 1 if width >= reserved else None
        return max(1, reserved - width)

    def _line_width(self) -> int:
        """The terminal writer's `width_of_current_line`, without measuring
        a line of printable ASCII (letters, progress, most file names)
        character by character: there its width is its length. Measured
        once per file, it took half of this module's time."""
        line = getattr(self.writer, "_current_line", None)
        if isinstance(line, str) and line.isascii() and line.isprintable():
            return len(line)
        return self.writer.width_of_current_line

    def _write_run(self, reports, statuses, start: int, stop: int) -> None:
        """Stats, progress ids and letters of reports[start:stop], in
        groups of one status: pytest adds each report to `stats` (which sets
        the main colour when its category is new) before its progress id."""
        reporter = self.reporter
        progress = reporter._progress_nodeids_reported
        key = self.progress_key
        writer = self.writer
        while start < stop:
            status = statuses[start]
            end = start + 1
            while end < stop and statuses[end] is status:
                end += 1
            category, letter, markup = status
            group = reports[start:end]
            reporter._add_stats(category, group)
            progress.update(map(key, group))
            if writer.hasmarkup:  # escape codes around each letter, as pytest writes them
                for _ in group:
                    writer.write(letter, **markup)
            else:
                writer.write(letter * len(group), **markup)
            start = end

    def _progress_length(self) -> int:
        """What `_write_progress_information_if_past_edge` reserves at the end of the line."""
        if self.show_progress == "count":
            collected = self.reporter._session.testscollected
            return len(f" [{collected}/{collected}]")
        return len(" [100%]")


def _direct_call(function: Callable, with_report: bool) -> Callable[[Any], None]:
    if with_report:
        return function
    return lambda report: function()
