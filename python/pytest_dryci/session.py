"""The DryCI plugin object: pytest's hooks, wired to the modules that do the
work. When it is configured, the controller (the only process of a serial
run) finds the files pytest will collect and decides about them in one
native call (`decisions`); files whose every test passed before are not even
imported (`serving`, `collection`), and when that is every file, no
pytest-xdist worker is started. After collection, a serial run decides
about the collected files it had not foreseen (doctest modules, say), and
the passed tests get a skip marker. Under pytest-xdist the workers only
apply the controller's decisions (so they import only the files with tests
to run), and the controller, which sees every report, reports the tests of
the files served whole and publishes once (`publishing`), each pass with
what its test was observed to read at run time (`observing`). Every cache failure degrades to
running the tests (unless --dryci-strict).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_dryci.collection import ServedFile, report_served, settle_garbage
from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import NodeIdParts, discover_test_files, explicit_files, file_part
from pytest_dryci.hermeticity import safe_observed_report, write_report
from pytest_dryci.last_run import write_last_run
from pytest_dryci.observe import Observer, default_ignored
from pytest_dryci.observing import ObservingPlugin
from pytest_dryci.publishing import RunRecord, publish
from pytest_dryci.serving import (
    SERVED,
    SERVED_ATTRIBUTE,
    mark_passed,
    may_serve_whole_files,
    names_node_ids,
    serve_without_workers,
    skip_reason,
)
from pytest_dryci.settings import Degradations, Settings
from pytest_dryci.summary import explanations, why_ran, write_summary

WORKER_INPUT_KEY = "dryci"
# On the first report each xdist worker sends: how many tests it serves
# without collection (an int crosses with the report, as pytest serialises it).
SERVED_COUNT_ATTRIBUTE = "dryci_served_count"


class DryciSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.degradations = Degradations(strict=bool(config.getoption("dryci_strict")))
        self.settings = Settings.from_pytest(config, self.degradations)
        self.workerinput = getattr(config, "workerinput", None)
        if self.workerinput is None:
            self.decisions = Decisions.for_controller(config, self.settings, self.degradations)
        else:
            sent = self.workerinput.get(WORKER_INPUT_KEY) or {}
            self.decisions = Decisions.from_worker_input(sent, self.degradations)
        self.parts = NodeIdParts(config.rootpath)
        self.explicit_files = explicit_files(config, self.parts)
        self.serve_whole_files = may_serve_whole_files(config, self.settings)
        self.observing = self.start_observing()
        self.record = RunRecord(
            observing=self.observing is not None,
            serve_subprocess=self.settings.serve_subprocess,
            serve_network=self.settings.serve_network,
        )
        self.published: int | None = None
        self.explanations: list[str] = []  # --dryci-explain
        self.observed_report: list[dict] | None = None
        # Every test will be served without collection: start no xdist worker.
        self.without_workers = False
        # Under xdist: (produced, collected) per test file, as a worker saw them.
        self.workers_collection: tuple[dict, dict] | None = None
        # Under xdist, on a worker: whether it said how many tests it serves.
        self.told_served_count = False
        # Under xdist, on the controller until the run loop ends: the items
        # a worker collected, and the tests the workers serve.
        self.worker_items: int | None = None
        self.workers_serve = 0
        self.session: pytest.Session | None = None

    def start_observing(self) -> ObservingPlugin | None:
        """Observes what each test reads (`observing`), unless switched off;
        a failure to install degrades to static keys."""
        settings = self.settings
        if not settings.observe:
            return None
        try:
            ignored = default_ignored(settings.root)
            ignored += [str(settings.root / path) for path in settings.observe_ignore]
            basetemp = self.config.option.basetemp
            if basetemp:
                ignored.append(os.path.abspath(basetemp))
            observer = Observer(str(settings.root), ignored)
            observer.start()
        except Exception as err:  # an interpreter without audit hooks, say
            self.degradations.add(f"cannot observe what tests read ({err}); static keys only")
            return None
        plugin = ObservingPlugin(observer)
        self.config.pluginmanager.register(plugin, "dryci-observing")
        return plugin

    # -- deciding -------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        """Decides as soon as the plugin is registered (pytest_configure is
        historic): before pytest-xdist starts any worker, so that none is
        started when every test will be served."""
        if self.workerinput is not None or config.option.help:
            return
        files = discover_test_files(config, self.parts)
        self.decisions.decide(files, self.degradations)
        complete = self.decisions.complete
        if files and self.serve_whole_files and all(part in complete for part in files):
            self.without_workers = True
            serve_without_workers(config.pluginmanager)

    def pytest_plugin_registered(self, plugin, manager) -> None:
        # pytest-xdist may set up its distributed session after this plugin decided.
        if self.without_workers:
            serve_without_workers(manager)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        if self.without_workers:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.showfspath = None  # xdist switched file names off; back to the default

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[WORKER_INPUT_KEY] = self.decisions.to_worker()

    # -- serving ----------------------------------------------------------------

    @pytest.hookimpl(trylast=True)  # after --ignore, collect_ignore and the like have spoken
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config):
        """Serves a complete file found while walking a folder without even
        creating a collector for it (the cheapest way past pytest's collection)."""
        if not self.decisions.complete or collection_path.suffix != ".py":
            return None
        part = self.parts.of(collection_path)
        if part in self.decisions.complete and part not in self.explicit_files and self.serve(part):
            return True
        return None

    def pytest_pycollect_makemodule(self, module_path: Path, parent: pytest.Collector):
        """Serves a complete file named on the command line instead of importing it."""
        if not self.decisions.complete:
            return None
        part = self.parts.of(module_path)
        if part is None or part not in self.decisions.complete or not self.serve(part):
            return None
        return ServedFile.from_parent(parent, path=module_path)

    def serve(self, part: str) -> bool:
        if not self.serve_whole_files:
            return False
        self.record.served_files[part] = self.decisions.complete[part]
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session):
        result = yield
        # Served tests count as collected: a run where all were served is no "no tests ran".
        session.testscollected += self.record.served_count()
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ):
        # Before every other plugin: what each file produced, before any
        # deselects or drops items (a complete file needs all of them).
        record = self.record
        for item in items:
            record.produced[file_part(item.nodeid)].append(item.nodeid)
        result = yield
        # After every other plugin: the items that will run.
        if self.workerinput is None:
            decisions = self.decisions
            unforeseen = {}
            for item in items:
                part = file_part(item.nodeid)
                if part not in decisions.short_hashes and part not in decisions.unhashed:
                    unforeseen.setdefault(part, str(item.path))
            decisions.decide(unforeseen, self.degradations)
        for item in items:
            record.collected[file_part(item.nodeid)].append(item.nodeid)
        mark_passed(items, self.decisions, record.served_files)
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self.worker_items = len(ids)

    def count_served_tests(self, report: pytest.TestReport) -> None:
        """Counts the served tests in the session's tests, as a serial run
        does, for pytest's progress ([100%] when the last one is reported).
        pytest-xdist sets that number to the items of each worker that
        finishes collecting, after its hooks; a worker says what it serves
        on its first report, before the terminal shows any progress."""
        served = getattr(report, SERVED_COUNT_ATTRIBUTE, None)
        if served is not None:
            self.workers_serve = served
        if self.session is not None and self.worker_items is not None:
            self.session.testscollected = self.worker_items + self.workers_serve

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        result = yield
        # After the loop: under xdist, the workers have said which files they served.
        served_files = self.record.served_files
        if self.worker_items is not None:
            session.testscollected = self.worker_items + self.record.served_count()
            self.worker_items = None  # final: served reports need not count
        if self.workerinput is None and served_files:
            for node_ids in served_files.values():
                self.record.served_nodeids.update(node_ids)
            settle_garbage()
            short_hashes = self.decisions.short_hashes
            report_served(
                session.config,
                Path(session.config.rootpath),
                (
                    (node_ids, skip_reason(short_hashes[part]))
                    for part, node_ids in served_files.items()
                ),
                self.decisions.complete_results,
            )
            settle_garbage(collect=False)
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        # Every worker collects the same files, so serves the same ones and
        # sees the same items: the first worker that finished says.
        output = getattr(node, "workeroutput", {}).get(WORKER_INPUT_KEY)
        if not output or self.workers_collection is not None:
            return
        self.record.served_files = output["served"]
        self.workers_collection = output["produced"], output["collected"]

    # -- recording and publishing -----------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        report = yield
        if call.when == "setup" and item.stash.get(SERVED, False):
            setattr(report, SERVED_ATTRIBUTE, True)  # a skip or xfail served as before
        if self.workerinput is not None and not self.told_served_count:
            self.told_served_count = True
            setattr(report, SERVED_COUNT_ATTRIBUTE, self.record.served_count())
        return report

    @pytest.hookimpl(tryfirst=True)  # before the terminal shows the progress
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.observing is not None and report.when == "teardown":
            self.observing.attach(report)  # before pytest-xdist sends it
        if self.workerinput is not None:
            return
        if self.worker_items is not None:
            self.count_served_tests(report)
        self.record.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.workerinput is not None:
            record = self.record
            self.config.workeroutput[WORKER_INPUT_KEY] = {
                "served": record.served_files,
                "produced": dict(record.produced),
                "collected": dict(record.collected),
            }
            return
        if self.workers_collection is not None:
            produced, collected = self.workers_collection
            self.record.produced.update(produced)
            self.record.collected.update(collected)
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.record.served_files:
            session.exitstatus = pytest.ExitCode.OK  # every test was served from the cache
        self.leave_last_run()
        if self.settings.publish:
            self.published = publish(
                self.record, self.decisions, self.degradations, self.may_record_whole_files()
            )

    def leave_last_run(self) -> None:
        """Records for `dryci explain` and `dryci observed` why each test ran
        and what tests read outside their graph (`last_run`)."""
        reasons = why_ran(self.record, self.decisions, self.settings.skip)
        if self.config.getoption("dryci_explain"):
            self.explanations = explanations(reasons)
        report, problem = safe_observed_report(self.record, self.decisions, self.parts)
        if problem:
            self.degradations.add(problem)
        self.observed_report = report
        served = len(self.record.served_nodeids)
        problem = write_last_run(self.settings.root, reasons, served, report)
        if problem:
            self.degradations.add(problem)

    def may_record_whole_files(self) -> bool:
        """Only a run that saw what each file produced before anything was
        deselected (a serial run, or the controller told by a worker), and
        only one not narrowed to node ids, collects whole files."""
        distributed = self.config.pluginmanager.has_plugin("dsession")
        seen = not distributed or self.workers_collection is not None
        return seen and self.settings.skip_collection and not names_node_ids(self.config)

    # -- reporting --------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.workerinput is not None:
            return
        write = terminalreporter.write_line
        write_summary(write, self.record, self.decisions, self.degradations, self.published)
        for line in self.explanations:
            write(line)
        report_path = self.config.getoption("dryci_observed")
        if report_path and self.observed_report is not None:
            write_report(report_path, self.observed_report, write)
