"""Deciding what to skip: one native call hashes the test files and asks the
cache which of their tests passed under those hashes; one more matches the
collected tests against the answers. Under pytest-xdist the controller
decides and each worker receives the answers (`to_worker`/`from_worker_input`).

Dependency hashes and cache keys stay in the native module; here are node
ids, short hashes for skip reasons and durations."""

from __future__ import annotations

import pytest

from pytest_dryci import _native
from pytest_dryci.environment import environment_fingerprint
from pytest_dryci.errors import DryciError
from pytest_dryci.options import options_fingerprint
from pytest_dryci.settings import Degradations, Settings


class Decisions:
    def __init__(self, native: _native.Session | None) -> None:
        # None when the native session could not be made: every test runs.
        self.native = native
        # node-id part -> the first characters of its dependency hash
        self.short_hashes: dict[str, str] = {}
        # node-id part -> why it has no hash (its tests run)
        self.unhashed: dict[str, str] = {}
        # node-id part -> every node id, for files all of whose tests passed
        # (or were skipped or failed as expected)
        self.complete: dict[str, list[str]] = {}
        # node id -> ("skipped" or "xfailed", reason), of those tests, and of
        # the tests served from records under a selection (`selection`)
        self.complete_results: dict[str, tuple[str, str]] = {}
        # node-id part -> (every node id, the matchers -k and -m read), of the
        # files whose recorded collection was read with its matchers
        self.recorded: dict[str, tuple[list[str], str]] = {}
        # node-id part -> durations (ms) of the tests that passed under its hash, added
        # up, for each file some of whose tests passed under its hash
        self.passed_ms: dict[str, int] = {}
        # node id -> duration (ms) of each test found to have passed before
        self.durations: dict[str, int | None] = {}
        self.graph_warnings: list[str] = []

    @classmethod
    def for_controller(
        cls,
        config: pytest.Config,
        settings: Settings,
        degradations: Degradations,
        function_level: list[str] | None = None,
    ) -> Decisions:
        """`function_level`: under function-level keys, the repository files
        keyed by their whole content (imported before the hook); None under
        file-level keys."""
        # Passes recorded with observed inputs must never meet a run without
        # them, nor function-level records a run that keys whole files.
        observing = "on" if settings.observe else "off"
        # `explain` reads this layout back to name the part that changed
        # (USER_SALT in src/session/history.rs).
        salt = f"{settings.salt}\noptions:{options_fingerprint(config)}\nobserve:{observing}"
        if function_level is not None:
            salt += "\nprecision:function\n" + "\n".join(function_level)
        python_env = (
            environment_fingerprint(str(settings.root / ".dryci"))
            if settings.hash_environment
            else None
        )
        try:
            native = _native.Session(
                str(settings.root),
                config=settings.config_path,
                salt=salt,
                python_env=python_env,
                server_url=settings.server,
                token=settings.token,
                timeout=settings.timeout,
                query=settings.skip,
                function_level=function_level,
            )
        except DryciError as err:
            degradations.add(str(err))
            native = None
        return cls(native)

    def decide(
        self, files: dict[str, str], degradations: Degradations, matchers: bool = False
    ) -> None:
        """Hashes `files` (node-id part -> path) and asks the cache about
        them; with `matchers`, reads their recorded collections' matchers."""
        if not files:
            return
        if self.native is None:
            self.unhashed.update((part, "no DryCI session") for part in files)
            return
        try:
            decision = self.native.decide(list(files.items()), matchers=matchers)
        except DryciError as err:
            degradations.add(f"cannot compute dependency hashes, every test runs: {err}")
            self.unhashed.update((part, "no dependency graph") for part in files)
            return
        self.graph_warnings.extend(decision.graph_warnings)
        for warning in decision.cache_warnings:
            degradations.add(warning)
        for part, file in decision.files.items():
            if file.short_hash is None:
                self.unhashed[part] = file.problem or "no hash"
                continue
            self.short_hashes[part] = file.short_hash
            if file.passed_tests:
                self.passed_ms[part] = file.passed_ms
            if file.complete is not None:
                self.complete[part] = file.complete
                self.complete_results.update(file.complete_results)
            if file.recorded is not None and file.matchers is not None:
                self.recorded[part] = (file.recorded, file.matchers)

    def passed(self, node_ids: list[str]) -> dict[str, tuple[int | None, str, str]]:
        """Of `node_ids`, those with a result to serve under their file's
        current hash: node id -> (duration in ms, "passed", "skipped" or
        "xfailed", the reason of a skip or an expected failure)."""
        if self.native is None or not node_ids:
            return {}
        found = self.native.passed(node_ids)
        self.durations.update((nodeid, result[0]) for nodeid, result in found.items())
        return found

    def to_worker(self) -> dict:
        """What an xdist worker needs, in types execnet can send."""
        return {
            "session": self.native.export() if self.native is not None else b"",
            "short_hashes": self.short_hashes,
            "passed_ms": self.passed_ms,
        }

    @classmethod
    def from_worker_input(cls, sent: dict, degradations: Degradations) -> Decisions:
        native = None
        if sent.get("session"):
            try:
                native = _native.Session.restore(sent["session"])
            except DryciError as err:
                degradations.add(f"{err}; this worker runs every test")
                return cls(None)
        decisions = cls(native)
        decisions.short_hashes = sent.get("short_hashes", {})
        decisions.passed_ms = sent.get("passed_ms", {})
        return decisions
