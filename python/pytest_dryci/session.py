"""The DryCI session: hash the test files, ask the cache which tests passed
under those hashes, skip them, and publish this run's passes at the end.

Serial runs hash exactly the collected files. Under pytest-xdist the
controller discovers the test files, builds the graph and queries the cache
once, before the workers start; workers only apply its decisions, and the
controller, which sees every report, publishes once. Every cache failure
degrades to running the tests (unless --dryci-strict).
"""

from __future__ import annotations

import fnmatch
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_dryci import _native
from pytest_dryci.environment import environment_fingerprint
from pytest_dryci.errors import DryciError
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
        # nodeid file part -> dependency hash; dependency hash -> {node key: duration ms}
        self.file_hashes: dict[str, str] = {}
        self.passed_before: dict[str, dict[str, int | None]] = {}
        self.unhashed: dict[str, str] = {}
        self.cache: _native.ResultCache | None = None
        self.store_root: Path = self.settings.root
        self.tracker = OutcomeTracker()
        self.cached_nodeids: set[str] = set()
        self.published = 0
        self.decided = False

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
            self.decided = True
        elif session.config.pluginmanager.has_plugin("dsession"):
            # xdist controller: workers collect; decide for every test file now.
            self.decide(self.discover_test_files(session))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[WORKER_INPUT_KEY] = {
            "file_hashes": self.file_hashes,
            "passed_before": self.passed_before,
        }

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not self.decided:
            files = {}
            for item in items:
                files.setdefault(file_part(item.nodeid), Path(item.path))
            self.decide(files)
        self.apply(items)

    def decide(self, files: dict[str, Path]) -> None:
        """Hashes `files` (nodeid file part -> path) and asks the cache about them."""
        self.decided = True
        if not files:
            return
        settings = self.settings
        try:
            report = _native.compute_hashes(
                str(settings.root),
                [str(path) for path in files.values()],
                config=settings.config_path,
                salt=settings.salt,
                python_env=environment_fingerprint() if settings.hash_environment else None,
            )
        except DryciError as err:
            self.degrade(f"cannot compute dependency hashes, every test runs: {err}")
            return
        self.store_root = Path(report.root)
        for part, path in files.items():
            dep_hash = report.hashes.get(str(path))
            if dep_hash:
                self.file_hashes[part] = dep_hash
            else:
                self.unhashed[part] = report.problems.get(str(path), "no hash")
        if not settings.skip:
            return
        cache = self.open_cache()
        if cache is None:
            return
        unique = sorted(set(self.file_hashes.values()))
        answers, warnings = cache.query([_native.file_key(h) for h in unique])
        for warning in warnings:
            self.degrade(warning)
        self.passed_before = {h: answer for h, answer in zip(unique, answers) if answer}

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
            if not passed:
                continue
            keys = _native.node_keys([item.nodeid for item in group], dep_hash)
            marker = pytest.mark.skip(reason=f"{SKIP_REASON_PREFIX} ({dep_hash[:12]})")
            for item in group:
                if keys[item.nodeid] in passed:
                    item.add_marker(marker)

    def discover_test_files(self, session: pytest.Session) -> dict[str, Path]:
        """The files pytest would collect (python_files under the arguments), for xdist."""
        config = session.config
        patterns = config.getini("python_files")
        norecurse = config.getini("norecursedirs")
        invocation_dir = Path(config.invocation_params.dir)
        args = config.args or [str(invocation_dir)]
        found: dict[str, Path] = {}

        def add(path: Path) -> None:
            try:
                rel = path.resolve().relative_to(Path(config.rootpath).resolve())
            except ValueError:
                return  # outside the root: its tests run uncached
            found[rel.as_posix()] = path

        for arg in args:
            path = (invocation_dir / file_part(arg)).resolve()
            if path.is_file():
                add(path)
                continue
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not any(fnmatch.fnmatch(d, pattern) for pattern in norecurse)
                ]
                for name in filenames:
                    if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                        add(Path(dirpath) / name)
        return found

    # -- recording and publishing -----------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.workerinput is not None:
            return
        if is_dryci_skip(report):
            self.cached_nodeids.add(report.nodeid)
        elif report.nodeid not in self.cached_nodeids:  # its teardown after the skip
            self.tracker.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.workerinput is not None or not self.settings.publish:
            return
        by_hash: dict[str, dict[str, int]] = defaultdict(dict)
        for nodeid, seconds in self.tracker.publishable().items():
            dep_hash = self.file_hashes.get(file_part(nodeid))
            if dep_hash:
                by_hash[dep_hash][nodeid] = int(seconds * 1000)
        if not by_hash:
            return
        payload = {}
        for dep_hash, durations in by_hash.items():
            keys = _native.node_keys(list(durations), dep_hash)
            payload[_native.file_key(dep_hash)] = {keys[n]: ms for n, ms in durations.items()}
        cache = self.open_cache()
        if cache is None:
            return
        total, failed, skipped = self.tracker.counts()
        cached = len(self.cached_nodeids)
        passed = sum(len(tests) for tests in payload.values())
        sent, warnings = cache.publish(payload, (total + cached, passed, failed, skipped, cached))
        for warning in warnings:
            self.degrade(warning)
        self.published = sent if not warnings else 0

    # -- reporting --------------------------------------------------------------

    def saved_seconds(self) -> float:
        saved_ms = 0
        by_file: dict[str, list[str]] = defaultdict(list)
        for nodeid in self.cached_nodeids:
            by_file[file_part(nodeid)].append(nodeid)
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
        write(
            f"dryci: {len(self.cached_nodeids)} tests served from the cache "
            f"(they took {self.saved_seconds():.2f}s when they last ran)"
        )
        if self.settings.publish:
            write(f"dryci: {self.published} passes published")
        else:
            write("dryci: nothing published (--dryci-no-publish)")
        if self.unhashed:
            sample = "; ".join(f"{p}: {why}" for p, why in sorted(self.unhashed.items())[:3])
            write(f"dryci: {len(self.unhashed)} test files could not be hashed and ran: {sample}")
        for message in self.degradations[:MAX_DEGRADATION_LINES]:
            write(f"dryci: degraded: {message}", yellow=True)
        if len(self.degradations) > MAX_DEGRADATION_LINES:
            write(f"dryci: degraded: ... and {len(self.degradations) - MAX_DEGRADATION_LINES} more")
