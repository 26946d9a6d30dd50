"""The DryCI plugin object: pytest's hooks, wired to the modules that do the
work. When it is configured, the controller (the only process of a serial
run) finds the files pytest will collect and decides about them in one
native call (`decisions`); files whose every test passed before are not even
imported (`serving`, `collection`), nor, under -k, -m or node ids, files
whose record answers the selection and whose selected tests passed before
(`selection`); when that is every file, no pytest-xdist worker is started.
After collection, a serial run decides about the collected files it had not
foreseen (doctest modules, say), and the passed tests get a skip marker.
Under pytest-xdist the workers only apply the controller's decisions (so
they import only the files with tests to run), and the controller, which
sees every report, reports the tests of the files served whole and
publishes once (`publishing`), each pass with what its test was observed to
read at run time (`observing`). Every cache failure degrades to running the
tests (unless --dryci-strict).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from pytest_dryci import _native, functions
from pytest_dryci.collection import (
    ServedFile,
    cyclic_gc_paused,
    freeze_startup_objects,
    report_served,
    settle_garbage,
    thaw_startup_objects,
)
from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import NodeIdParts, discover_test_files, explicit_files, file_part
from pytest_dryci.folders import FolderServing
from pytest_dryci.hermeticity import safe_observed_report, write_report
from pytest_dryci.last_run import write_last_run
from pytest_dryci.observe import Observer, ignored_paths
from pytest_dryci.observing import PLUGIN_NAME as OBSERVING_PLUGIN
from pytest_dryci.observing import FixtureFunctionWindows, ObservingPlugin
from pytest_dryci.publishing import RunRecord, publish
from pytest_dryci.selection import (
    Elision,
    RecordedItem,
    Selection,
    encode_matchers,
    rewrite_node_id_args,
    selects,
    unloaded_conftests,
    unsafe_hooks,
)
from pytest_dryci.serving import (
    SERVED_ATTRIBUTE,
    mark_passed,
    may_elide,
    names_node_ids,
    plan_elisions,
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
        # First, so that as little as possible runs before the hook is installed.
        self.function_level = self.start_functions()
        self.observing = self.start_observing()
        if self.observing is None and self.function_level is not None:
            functions.stop()  # the windows are observation's: file-level keys
            self.function_level = None
        if self.workerinput is None:
            self.decisions = Decisions.for_controller(
                config, self.settings, self.degradations, self.function_level
            )
        else:
            sent = self.workerinput.get(WORKER_INPUT_KEY) or {}
            self.decisions = Decisions.from_worker_input(sent, self.degradations)
            self.check_worker_functions(sent)
        self.parts = NodeIdParts(config.rootpath)
        self.explicit_files = explicit_files(config, self.parts)
        # Before node ids into served files are rewritten (`rewrite_node_id_args`).
        self.names_node_ids = names_node_ids(config)
        self.may_elide = may_elide(config, self.settings)
        # node-id part -> what is served of it without collecting it
        self.elisions: dict[str, Elision] = {}
        # Serves whole folders of elided files (made at the first folder pytest walks).
        self.folders: FolderServing | None = None
        # Why -k, -m or node ids were not answered from records, if they were not.
        self.not_selected: str | None = None
        # Whether what collection produces is recorded with its matchers.
        self.records_matchers = (
            self.settings.publish and self.settings.skip_collection and not self.names_node_ids
        )
        self.record = RunRecord(
            observing=self.observing is not None,
            serve_subprocess=self.settings.serve_subprocess,
            serve_network=self.settings.serve_network,
            functions=self.function_level is not None,
        )
        self.published: int | None = None
        self.explanations: list[str] = []  # --dryci-explain
        self.observed_report: list[dict] | None = None
        # Every test will be served without collection: start no xdist worker.
        self.without_workers = False
        # Under xdist: what a worker saw of collection (its `workeroutput`).
        self.workers_collection: dict | None = None
        # Under xdist, on a worker: whether it said how many tests it serves.
        self.told_served_count = False
        # Node ids of the tests served as the skip or expected failure they were.
        self.served_results: set[str] = set()
        if self.workerinput is not None:
            sent = self.workerinput.get(WORKER_INPUT_KEY) or {}
            self.elisions = {part: Elision(*e) for part, e in sent.get("elided", {}).items()}
            self.rewrite_node_ids()
        # Under xdist, on the controller until the run loop ends: the items
        # a worker collected, and the tests the workers serve.
        self.worker_items: int | None = None
        self.workers_serve = 0
        self.session: pytest.Session | None = None
        # Whether pytest's own objects are hidden from the collector until the run loop.
        self.startup_frozen = False

    def start_functions(self) -> list[str] | None:
        """Under function-level keys, installs the hook that notes the
        functions tests run (`functions`) and returns the repository files
        imported before it (keyed by their whole content); None when the
        keys stay file-level."""
        settings = self.settings
        if settings.precision != "function":
            return None
        if not settings.observe:
            # Observation switched off keeps the default's keys file-level;
            # asking for function-level keys as well cannot be met.
            if settings.precision_requested:
                self.degradations.add(
                    "function-level keys need observation (dryci_observe = true); file-level keys"
                )
            return None
        try:
            return functions.start(self.config)
        except Exception as err:  # a bad DRYCI_FUNCTION_HOOK, an interpreter without the C API
            self.degradations.add(f"cannot note the functions tests run ({err}); file-level keys")
            return None

    def check_worker_functions(self, sent: dict) -> None:
        """A worker that imported a repository module the controller had not
        imported when it decided may have run its import-time code unseen,
        while the controller's key leaves that module's function bodies out:
        its tests are then not recorded at function level."""
        if self.function_level is None or self.observing is None:
            return
        allowed = set(sent.get("file_level") or ())
        unseen = [path for path in self.function_level if path not in allowed]
        if unseen:
            self.observing.observer.functions_trusted = False

    def start_observing(self) -> ObservingPlugin | None:
        """Observes what each test reads (`observing`), unless switched off;
        a failure to install degrades to static keys."""
        settings = self.settings
        if not settings.observe:
            return None
        try:
            ignored = ignored_paths(
                settings.root, settings.observe_ignore, self.config.option.basetemp
            )
            observer = Observer(str(settings.root), ignored)
            observer.start()
        except Exception as err:  # an interpreter without audit hooks, say
            self.degradations.add(f"cannot observe what tests read ({err}); static keys only")
            return None
        plugin = ObservingPlugin(observer, functions=self.function_level is not None)
        self.config.pluginmanager.register(plugin, OBSERVING_PLUGIN)
        if plugin.functions:
            fixtures = FixtureFunctionWindows(observer)
            self.config.pluginmanager.register(fixtures, "dryci-fixture-functions")
        return plugin

    # -- deciding -------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        """Decides as soon as the plugin is registered (pytest_configure is
        historic): before pytest-xdist starts any worker, so that none is
        started when every test will be served."""
        if self.workerinput is not None or config.option.help:
            return
        self.startup_frozen = freeze_startup_objects()
        conftests: list[str] = []
        files = discover_test_files(config, self.parts, conftests)
        selecting = selects(config)
        selection = None
        if self.may_elide and selecting:
            selection = self.selection(config, conftests)
        self.decisions.decide(files, self.degradations, matchers=selection is not None)
        if self.may_elide and (selection is not None or not selecting):
            self.elisions = plan_elisions(self.decisions, files, selection)
            self.rewrite_node_ids()
        if files and all(part in self.elisions for part in files):
            self.without_workers = True
            serve_without_workers(config.pluginmanager)
            if self.function_level is not None:
                # Nothing it foresaw will run: the hook would only slow the
                # run down. A test it did not foresee runs unrecorded.
                functions.stop()
        else:
            # Test files will be imported: with pytest's objects hidden, the
            # collector's full passes came oftener (1% of a first run).
            self.thaw_startup_objects()

    def selection(self, config: pytest.Config, conftests: list[str]) -> Selection | None:
        """The run's -k, -m and node ids, when records may answer them: no
        plugin or conftest that may change what they see (`selection`)."""
        manager = config.pluginmanager
        unsafe = unsafe_hooks(manager) + unloaded_conftests(conftests, manager)
        if unsafe:
            more = f" and {len(unsafe) - 2} more" if len(unsafe) > 2 else ""
            self.not_selected = f"{', '.join(unsafe[:2])}{more}"
            return None
        selection = Selection.of(config, self.parts)
        if isinstance(selection, str):
            self.not_selected = selection
            return None
        return selection

    def thaw_startup_objects(self) -> None:
        """Before any test runs, or at the latest when the session ends."""
        if self.startup_frozen:
            self.startup_frozen = False
            thaw_startup_objects()

    def rewrite_node_ids(self) -> None:
        """Node ids into files served without collection name the files
        instead: pytest finds no test in a served file."""
        if self.names_node_ids and self.elisions:
            config = self.config
            invocation_dir = Path(config.invocation_params.dir)
            config.args[:] = rewrite_node_id_args(
                config.args, invocation_dir, self.parts, self.elisions
            )

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
        sent = self.decisions.to_worker()
        sent["elided"] = {part: list(elision) for part, elision in self.elisions.items()}
        sent["file_level"] = self.function_level or []
        node.workerinput[WORKER_INPUT_KEY] = sent

    # -- serving ----------------------------------------------------------------

    @pytest.hookimpl(trylast=True)  # after --ignore, collect_ignore and the like have spoken
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config):
        """Serves a complete file found while walking a folder without even
        creating a collector for it (the cheapest way past pytest's
        collection), and a folder all of whose files it would serve (`folders`)."""
        if not self.elisions:
            return None
        if collection_path.suffix != ".py":
            return self.serve_folder(collection_path)
        part = self.parts.of(collection_path)
        if part in self.elisions and part not in self.explicit_files:
            self.serve(part)
            return True
        return None

    def serve_folder(self, path: Path) -> bool | None:
        if not path.is_dir():
            return None
        if self.folders is None:
            self.folders = FolderServing(
                self.config, self.parts, self.elisions, self.explicit_files, own_plugins=[self]
            )
        served = self.folders.files_to_serve(path)
        if served is None:
            return None
        for part in served:
            self.serve(part)
        return True

    def pytest_pycollect_makemodule(self, module_path: Path, parent: pytest.Collector):
        """Serves a complete file named on the command line instead of importing it."""
        if not self.elisions:
            return None
        part = self.parts.of(module_path)
        if part is None or part not in self.elisions:
            return None
        self.serve(part)
        return ServedFile.from_parent(parent, path=module_path)

    def serve(self, part: str) -> None:
        elision = self.elisions[part]
        self.record.served_files[part] = elision.served
        if elision.deselected is not None:
            self.record.deselected_files[part] = elision.deselected

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
        # deselects or drops items (a record of its collection needs all of
        # them), and what -k and -m will match them against.
        record = self.record
        by_part: dict[str, list[pytest.Item]] = defaultdict(list)
        for item in items:
            part = file_part(item.nodeid)
            record.produced[part].append(item.nodeid)
            by_part[part].append(item)
        # Every conftest is loaded by now: these are all the implementations.
        unsafe = unsafe_hooks(config.pluginmanager)
        if self.records_matchers and not unsafe:
            for part, produced in by_part.items():
                matchers = encode_matchers(produced)
                if matchers is not None:
                    record.matchers[part] = matchers
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
        self.served_results |= mark_passed(items, self.decisions, record.served_files)
        self.report_deselected(config, unsafe)
        return result

    def report_deselected(self, config: pytest.Config, unsafe: list[str]) -> None:
        """In the process that collects: the tests deselected from the
        records of the files it served, as pytest reports deselected tests;
        and the served and deselected tests among the terminal's collected
        ones ("collected N items / M deselected / K selected")."""
        record = self.record
        deselected = [
            RecordedItem(node_id)
            for part in record.served_files
            for node_id in record.deselected_files.get(part, ())
        ]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and isinstance(getattr(reporter, "_numcollected", None), int):
            reporter._numcollected += record.served_count() + len(deselected)
        if unsafe and record.deselected_files:
            self.degradations.add(
                f"tests were selected from records, but {unsafe[0]} was registered during "
                "collection and may change what -k and -m see (ini dryci_skip_collection = "
                "false collects every file)"
            )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # a file whose collection failed is never recorded
            self.record.collection_errors.add(file_part(report.nodeid))

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
        self.thaw_startup_objects()
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
        self.record.deselected_files = output["deselected"]
        self.workers_collection = output

    # -- recording and publishing -----------------------------------------------

    # First: before the terminal shows the progress, and before pytest-xdist
    # sends the report from a worker with the attributes set here.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        when = report.when
        if when == "teardown":
            if self.observing is not None:
                self.observing.attach(report)
        elif when == "setup" and report.nodeid in self.served_results:
            setattr(report, SERVED_ATTRIBUTE, True)  # a skip or xfail served as before
        if self.workerinput is not None:
            if not self.told_served_count:
                self.told_served_count = True
                setattr(report, SERVED_COUNT_ATTRIBUTE, self.record.served_count())
            return
        if self.worker_items is not None:
            self.count_served_tests(report)
        self.record.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.thaw_startup_objects()  # collection failed or was interrupted: no run loop
        if self.workerinput is not None:
            record = self.record
            self.config.workeroutput[WORKER_INPUT_KEY] = {
                "served": record.served_files,
                "deselected": record.deselected_files,
                "produced": dict(record.produced),
                "collected": dict(record.collected),
                "matchers": record.matchers,
                "collection_errors": sorted(record.collection_errors),
            }
            return
        if self.workers_collection is not None:
            output = self.workers_collection
            self.record.produced.update(output["produced"])
            self.record.collected.update(output["collected"])
            self.record.matchers.update(output["matchers"])
            self.record.collection_errors.update(output["collection_errors"])
        if self.record.functions:  # calls seen after the last report
            self.record.calls.extend(_native.take_function_calls())
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.record.served_count():
            session.exitstatus = pytest.ExitCode.OK  # every test was served from the cache
        with cyclic_gc_paused():
            self.leave_last_run()
            if self.settings.publish:
                self.published = publish(
                    self.record, self.decisions, self.degradations, self.collections_to_record()
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

    def collections_to_record(self) -> dict[str, tuple[list[str], str | None]]:
        """Only a run that saw what each file produced before anything was
        deselected (a serial run, or the controller told by a worker), and
        only one not narrowed to node ids, collects whole files."""
        distributed = self.config.pluginmanager.has_plugin("dsession")
        seen = not distributed or self.workers_collection is not None
        if not seen or not self.settings.skip_collection or self.names_node_ids:
            return {}
        selection = Selection.of(self.config, self.parts)
        if isinstance(selection, str):
            selection = None
        return self.record.collections(self.decisions, selection)

    # -- reporting --------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.workerinput is not None:
            return
        write = terminalreporter.write_line
        write_summary(
            write,
            self.record,
            self.decisions,
            self.degradations,
            self.published,
            not_selected=self.not_selected,
        )
        for line in self.explanations:
            write(line)
        report_path = self.config.getoption("dryci_observed")
        if report_path and self.observed_report is not None:
            write_report(report_path, self.observed_report, write)
