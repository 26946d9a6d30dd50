"""The DryCI session: hash the test files, ask the cache which tests passed
under those hashes, skip them, and publish this run's passes at the end.

Before collection the controller (the only process of a serial run) finds
the files pytest will collect, builds the graph and queries the cache once;
files whose every test passed before are not even imported (`collection`).
After collection, a serial run hashes the collected files it had not
foreseen (doctest modules, say) in one more call. Under pytest-xdist the
workers only apply the controller's decisions, and the controller, which sees
every report, publishes once. Every cache failure degrades to running the
tests (unless --dryci-strict).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_dryci import _native
from pytest_dryci.collection import ServedFile, report_served, settle_garbage
from pytest_dryci.environment import environment_fingerprint
from pytest_dryci.errors import DryciError
from pytest_dryci.options import options_fingerprint
from pytest_dryci.outcomes import OutcomeTracker

WORKER_INPUT_KEY = "dryci"
SKIP_REASON_PREFIX = "dryci: passed before with identical inputs"
DEFAULT_TIMEOUT_SECONDS = 3.0
MAX_DEGRADATION_LINES = 5


@dataclass
class Settings:
    root: Path
    config_path: str | None
    salt: str
    hash_environment: bool
    publish: bool
    skip: bool
    server: str | None
    token: str | None
    timeout: float

    @classmethod
    def from_pytest(cls, config: pytest.Config, degrade) -> Settings:
        timeout_text = os.environ.get("DRYCI_TIMEOUT", "")
        timeout = DEFAULT_TIMEOUT_SECONDS
        if timeout_text:
            try:
                timeout = float(timeout_text)
                if not timeout > 0:
                    raise ValueError
            except ValueError:
                degrade(
                    f"DRYCI_TIMEOUT={timeout_text!r} is not a positive number of seconds; "
                    f"using {DEFAULT_TIMEOUT_SECONDS}"
                )
                timeout = DEFAULT_TIMEOUT_SECONDS
        config_path = config.getoption("dryci_config") or config.getini("dryci_config") or None
        return cls(
            root=Path(config.rootpath),
            config_path=config_path,
            salt=os.environ.get("DRYCI_SALT", ""),
            hash_environment=config.getini("dryci_hash_environment")
            and not config.getoption("dryci_no_env_hash"),
            publish=not config.getoption("dryci_no_publish"),
            skip=not config.getoption("dryci_no_skip"),
            server=os.environ.get("DRYCI_SERVER") or None,
            token=os.environ.get("DRYCI_TOKEN") or None,
            timeout=timeout,
        )


def file_part(nodeid: str) -> str:
    """`tests/test_a.py::TestX::test_y[1]` -> `tests/test_a.py`"""
    return nodeid.split("::", 1)[0]


def any_of(patterns: list[str]) -> Callable[[str], bool]:
    """A predicate: does a name match any of the glob `patterns` (as
    fnmatch.fnmatch would), compiled into one regular expression."""
    if not patterns:
        return lambda name: False
    match = re.compile("|".join(fnmatch.translate(os.path.normcase(p)) for p in patterns)).match
    return lambda name: match(os.path.normcase(name)) is not None


def is_dryci_skip(report: pytest.TestReport) -> bool:
    longrepr = report.longrepr
    return (
        report.skipped
        and isinstance(longrepr, tuple)
        and len(longrepr) == 3
        and SKIP_REASON_PREFIX in str(longrepr[2])
    )


class DryciSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.degradations: list[str] = []
        self.strict = bool(config.getoption("dryci_strict"))
        self.settings = Settings.from_pytest(config, self.degrade)
        self.workerinput = getattr(config, "workerinput", None)
        # Decisions, shared with xdist workers:
        # nodeid file part -> dependency hash; dependency hash -> {node key: duration ms};
        # nodeid file part -> node ids of a complete file (served without collecting it).
        self.file_hashes: dict[str, str] = {}
        self.passed_before: dict[str, dict[str, int | None]] = {}
        self.complete: dict[str, list[str]] = {}
        self.unhashed: dict[str, str] = {}
        self.graph_warnings: list[str] = []
        self.cache: _native.ResultCache | None = None
        self.store_root: Path = self.settings.root
        self.root_str = str(config.rootpath)
        # "<root>/" on POSIX: a normalised path below it is its node-id prefix as it stands.
        self.root_prefix = os.path.join(self.root_str, "") if os.sep == "/" else None
        # Files named on the command line: pytest collects them even when ignored.
        self.explicit_files = {
            part
            for arg in config.args
            if (part := self.nodeid_part(Path(config.invocation_params.dir) / file_part(arg)))
        }
        # What this run saw (controller only).
        self.tracker = OutcomeTracker()
        self.cached_nodeids: set[str] = set()
        # nodeid file part -> node ids as the file produced them, and as they were kept
        self.produced: dict[str, list[str]] = defaultdict(list)
        self.collected: dict[str, list[str]] = defaultdict(list)
        # nodeid file part -> node ids, for files served without collection
        self.served_files: dict[str, list[str]] = {}
        self.published = 0

    # -- failures -------------------------------------------------------------

    def degrade(self, message: str) -> None:
        """A cache failure: in strict mode an error, otherwise one line in the summary."""
        if self.strict:
            raise pytest.UsageError(f"dryci (strict): {message}")
        self.degradations.append(message)

    # -- deciding -------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.workerinput is not None:
            decisions = self.workerinput.get(WORKER_INPUT_KEY) or {}
            self.file_hashes = decisions.get("file_hashes", {})
            self.passed_before = decisions.get("passed_before", {})
            self.complete = decisions.get("complete", {})
            return
        self.decide(self.discover_test_files(session))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[WORKER_INPUT_KEY] = {
            "file_hashes": self.file_hashes,
            "passed_before": self.passed_before,
            "complete": self.complete,
        }

    @pytest.hookimpl(trylast=True)  # after --ignore, collect_ignore and the like have spoken
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config):
        """Serves a complete file found while walking a folder without even
        creating a collector for it (the cheapest way past pytest's collection)."""
        if not self.complete or collection_path.suffix != ".py":
            return None
        part = self.nodeid_part(collection_path)
        if part in self.complete and part not in self.explicit_files and self.serve(part):
            return True
        return None

    def pytest_pycollect_makemodule(self, module_path: Path, parent: pytest.Collector):
        """Serves a complete file named on the command line instead of importing it."""
        if not self.complete:
            return None
        part = self.nodeid_part(module_path)
        if part is None or part not in self.complete or not self.serve(part):
            return None
        return ServedFile.from_parent(parent, path=module_path)

    def serve(self, part: str) -> bool:
        if not self.may_serve_whole_files():
            return False
        self.served_files[part] = self.complete[part]
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session):
        result = yield
        # Served tests count as collected: a run where all were served is no "no tests ran".
        session.testscollected += self.served_count()
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        result = yield
        # After the loop: under xdist, the workers have said which files they served.
        if self.workerinput is None and self.served_files:
            for node_ids in self.served_files.values():
                self.cached_nodeids.update(node_ids)
            settle_garbage()
            report_served(
                session.config,
                Path(session.config.rootpath),
                (
                    (node_ids, f"{SKIP_REASON_PREFIX} ({self.file_hashes[part][:12]})")
                    for part, node_ids in self.served_files.items()
                ),
            )
            settle_garbage(collect=False)
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        # Every worker collects the same files, so serves the same ones.
        served = getattr(node, "workeroutput", {}).get(WORKER_INPUT_KEY)
        if served and not self.served_files:
            self.served_files = served

    def served_count(self) -> int:
        return sum(len(node_ids) for node_ids in self.served_files.values())

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ):
        # Before every other plugin: what each file produced, before any
        # deselects or drops items (a complete file needs all of them).
        for item in items:
            self.produced[file_part(item.nodeid)].append(item.nodeid)
        result = yield
        # After every other plugin: the items that will run.
        if self.workerinput is None:
            unforeseen = {}
            for item in items:
                part = file_part(item.nodeid)
                if part not in self.file_hashes and part not in self.unhashed:
                    unforeseen.setdefault(part, str(item.path))
            self.decide(unforeseen)
        for item in items:
            self.collected[file_part(item.nodeid)].append(item.nodeid)
        self.apply(items)
        return result

    def may_serve_whole_files(self) -> bool:
        """Not when the selection looks inside files (names, markers, node ids)."""
        option = self.config.option
        if not self.settings.skip or option.keyword or option.markexpr or option.collectonly:
            return False
        if any(getattr(option, name, None) for name in ("lf", "deselect", "stepwise")):
            return False  # they deselect tests by name, after collection
        if not self.config.getini("dryci_skip_collection"):
            return False
        return not any("::" in arg for arg in self.config.args)

    def decide(self, files: dict[str, str]) -> None:
        """Hashes `files` (nodeid file part -> path) and asks the cache about them."""
        if not files:
            return
        settings = self.settings
        salt = f"{settings.salt}\noptions:{options_fingerprint(self.config)}"
        try:
            report = _native.compute_hashes(
                str(settings.root),
                list(files.values()),
                config=settings.config_path,
                salt=salt,
                python_env=environment_fingerprint(str(settings.root / ".dryci"))
                if settings.hash_environment
                else None,
            )
        except DryciError as err:
            self.degrade(f"cannot compute dependency hashes, every test runs: {err}")
            self.unhashed.update((part, "no dependency graph") for part in files)
            return
        self.store_root = Path(report.root)
        self.graph_warnings.extend(report.warnings)
        # Each read of a native attribute converts the whole dict: read once.
        hashes, problems = report.hashes, report.problems
        hashed = {}
        for part, path in files.items():
            dep_hash = hashes.get(path)
            if dep_hash:
                hashed[part] = dep_hash
            else:
                self.unhashed[part] = problems.get(path, "no hash")
        self.file_hashes.update(hashed)
        if not settings.skip:
            return
        cache = self.open_cache()
        if cache is None:
            return
        unique = sorted(set(hashed.values()))
        file_keys = [_native.file_key(h) for h in unique]
        answers, warnings = cache.query(file_keys)
        for warning in warnings:
            self.degrade(warning)
        self.passed_before.update((h, answer) for h, answer in zip(unique, answers) if answer)
        complete, warnings = cache.complete_files(file_keys)
        for warning in warnings:
            self.degrade(warning)
        complete_by_hash = {h: json.loads(ids) for h, ids in zip(unique, complete) if ids}
        for part, dep_hash in hashed.items():
            if dep_hash in complete_by_hash and dep_hash in self.passed_before:
                self.complete[part] = complete_by_hash[dep_hash]

    def open_cache(self) -> _native.ResultCache | None:
        if self.cache is None:
            settings = self.settings
            try:
                self.cache = _native.ResultCache(
                    local_path=str(self.store_root / ".dryci" / "results-v1.sqlite"),
                    server_url=settings.server,
                    token=settings.token,
                    timeout=settings.timeout,
                )
            except DryciError as err:
                self.degrade(str(err))
                return None
            for warning in self.cache.open_warnings:
                self.degrade(warning)
        return self.cache

    def apply(self, items: list[pytest.Item]) -> None:
        by_file: dict[str, list[pytest.Item]] = defaultdict(list)
        for item in items:
            by_file[file_part(item.nodeid)].append(item)
        for part, group in by_file.items():
            dep_hash = self.file_hashes.get(part)
            passed = self.passed_before.get(dep_hash) if dep_hash else None
            if not passed or part in self.served_files:
                continue
            keys = _native.node_keys([item.nodeid for item in group], dep_hash)
            marker = pytest.mark.skip(reason=f"{SKIP_REASON_PREFIX} ({dep_hash[:12]})")
            for item in group:
                if keys[item.nodeid] in passed:
                    item.add_marker(marker)

    def nodeid_part(self, path: Path | str) -> str | None:
        """The node-id prefix pytest gives the file at `path` (relative to the
        rootdir, unresolved, as pytest computes it), or None outside the root."""
        text = os.fspath(path)
        prefix = self.root_prefix
        if (
            prefix
            and text.startswith(prefix)
            and "/." not in text
            and "//" not in text
            and not text.endswith("/")
        ):
            return text[len(prefix) :]  # what relpath gives for it, at a fraction of the cost
        rel = os.path.relpath(text, self.root_str)
        if rel == ".." or rel.startswith(("../", "..\\")) or os.path.isabs(rel):
            return None
        return rel.replace(os.sep, "/")

    def discover_test_files(self, session: pytest.Session) -> dict[str, str]:
        """The files pytest will collect: python_files under the arguments."""
        config = session.config
        is_test_file = any_of(config.getini("python_files"))
        is_norecurse = any_of(config.getini("norecursedirs"))
        invocation_dir = Path(config.invocation_params.dir)
        args = config.args or [str(invocation_dir)]
        found: dict[str, str] = {}

        def add(path: str) -> None:
            part = self.nodeid_part(path)
            if part is not None:  # outside the root: its tests run uncached
                found[part] = path

        for arg in args:
            path = os.path.normpath(invocation_dir / file_part(arg))
            if os.path.isfile(path):
                add(path)
                continue
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if not is_norecurse(d)]
                for name in filenames:
                    if is_test_file(name):
                        add(os.path.join(dirpath, name))
        return found

    # -- recording and publishing -----------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.workerinput is not None:
            return
        nodeid = report.nodeid
        if nodeid in self.cached_nodeids:
            return  # a served test, or the teardown after a cache skip
        if is_dryci_skip(report):
            self.cached_nodeids.add(nodeid)
        else:
            self.tracker.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.workerinput is not None:
            self.config.workeroutput[WORKER_INPUT_KEY] = self.served_files
            return
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.served_files:
            session.exitstatus = pytest.ExitCode.OK  # every test was served from the cache
        if not self.settings.publish:
            return
        publishable = self.tracker.publishable()
        by_hash: dict[str, dict[str, int]] = defaultdict(dict)
        for nodeid, seconds in publishable.items():
            dep_hash = self.file_hashes.get(file_part(nodeid))
            if dep_hash:
                by_hash[dep_hash][nodeid] = int(seconds * 1000)
        complete = self.complete_files(publishable) if self.may_record_whole_files() else {}
        if not by_hash and not complete:
            return
        cache = self.open_cache()
        if cache is None:
            return
        payload = {}
        for dep_hash, durations in by_hash.items():
            keys = _native.node_keys(list(durations), dep_hash)
            payload[_native.file_key(dep_hash)] = {keys[n]: ms for n, ms in durations.items()}
        total, failed, skipped = self.tracker.counts()
        cached = len(self.cached_nodeids)
        passed = sum(len(tests) for tests in payload.values())
        if payload:
            sent, warnings = cache.publish(
                payload, (total + cached, passed, failed, skipped, cached)
            )
            for warning in warnings:
                self.degrade(warning)
            self.published = sent if not warnings else 0
        for warning in cache.record_complete_files(complete):
            self.degrade(warning)

    def may_record_whole_files(self) -> bool:
        """Only a serial run sees what each file produced before anything was
        deselected, and only a run not narrowed to node ids collects whole files."""
        serial = self.workerinput is None and not self.config.pluginmanager.has_plugin("dsession")
        return (
            serial
            and self.config.getini("dryci_skip_collection")
            and not any("::" in arg for arg in self.config.args)
        )

    def complete_files(self, publishable: dict[str, float]) -> dict[str, str]:
        """file key -> JSON node ids, for every file all of whose tests passed
        (now or before, under the same hash) and of which nothing was deselected
        or dropped by any plugin."""
        complete = {}
        for part, nodeids in self.collected.items():
            dep_hash = self.file_hashes.get(part)
            if (
                not dep_hash
                or part in self.served_files
                or sorted(nodeids) != sorted(self.produced.get(part, ()))
                or not all(n in publishable or n in self.cached_nodeids for n in nodeids)
            ):
                continue
            complete[_native.file_key(dep_hash)] = json.dumps(self.produced[part])
        return complete

    # -- reporting --------------------------------------------------------------

    def saved_seconds(self) -> float:
        saved_ms = 0
        by_file: dict[str, list[str]] = defaultdict(list)
        for nodeid in self.cached_nodeids:
            by_file[file_part(nodeid)].append(nodeid)
        for part in self.served_files:
            # Every test that passed under a served file's hash is one of its tests.
            passed = self.passed_before.get(self.file_hashes.get(part, ""), {})
            saved_ms += sum(ms or 0 for ms in passed.values())
            by_file.pop(part, None)
        for part, nodeids in by_file.items():
            dep_hash = self.file_hashes.get(part)
            passed = self.passed_before.get(dep_hash, {}) if dep_hash else {}
            keys = _native.node_keys(nodeids, dep_hash) if dep_hash else {}
            saved_ms += sum(passed.get(keys.get(n, ""), 0) or 0 for n in nodeids)
        return saved_ms / 1000

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.workerinput is not None:
            return
        total, _, _ = self.tracker.counts()
        write = terminalreporter.write_line
        write(f"dryci: {total} tests ran")
        served = f", {len(self.served_files)} files not even collected" if self.served_files else ""
        write(
            f"dryci: {len(self.cached_nodeids)} tests served from the cache "
            f"(they took {self.saved_seconds():.2f}s when they last ran{served})"
        )
        if self.settings.publish:
            write(f"dryci: {self.published} passes published")
        else:
            write("dryci: nothing published (--dryci-no-publish)")
        if self.unhashed:
            sample = "; ".join(f"{p}: {why}" for p, why in sorted(self.unhashed.items())[:3])
            write(f"dryci: {len(self.unhashed)} test files could not be hashed and ran: {sample}")
        if self.graph_warnings:
            write(
                f"dryci: {len(self.graph_warnings)} dependency graph warnings "
                f"(`dryci graph -v` lists them), first: {self.graph_warnings[0]}"
            )
        for message in self.degradations[:MAX_DEGRADATION_LINES]:
            write(f"dryci: degraded: {message}", yellow=True)
        if len(self.degradations) > MAX_DEGRADATION_LINES:
            write(f"dryci: degraded: ... and {len(self.degradations) - MAX_DEGRADATION_LINES} more")
