"""Fail-open: whatever the server does, every test runs and the exit code is the tests' own."""

from __future__ import annotations

import json
import time

import pytest
from conftest import FROM_V1_SERVER_ONLY, summary
from fake_server import FakeCache


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    # The fake server speaks API v1, which keeps no requirement sets: under
    # function-level keys (the default) every pass has one, and none would
    # be published to it.
    return project.runpytest_subprocess(
        "--dryci", "--dryci-precision=file", "-p", "no:cacheprovider", *args
    )


@pytest.fixture
def server_env(monkeypatch):
    def use(url: str, token: str | None = "dryci-" + "a" * 26, timeout: str = "1") -> None:
        monkeypatch.setenv("DRYCI_SERVER", url)
        monkeypatch.setenv("DRYCI_TIMEOUT", timeout)
        if token:
            monkeypatch.setenv("DRYCI_TOKEN", token)

    return use


def test_v1_server_round_trip_with_one_query_and_one_publish(project, server_env):
    with FakeCache() as fake:
        server_env(fake.url)
        first = run(project)
        first.assert_outcomes(passed=6)
        queries = [p for p in fake.paths() if "query" in p]
        publishes = [p for p in fake.paths() if "publish" in p]
        # One v2 attempt (404: a v1 server), then one v1 query and one publish.
        assert queries == ["/api/v2/query-passed", "/api/v1/query-passed"]
        assert publishes == ["/api/v1/publish"]  # v1 was learnt from the query
        # The local layer is cleared: only the server can answer now.
        for path in (project.path / ".dryci").glob("results-v2.sqlite*"):
            path.unlink()
        run(project).assert_outcomes(**FROM_V1_SERVER_ONLY)


def test_the_server_never_sees_paths_or_test_names(project, server_env):
    with FakeCache() as fake:
        server_env(fake.url)
        run(project).assert_outcomes(passed=6)
        for _, _, body in fake.requests:
            text = body.decode()
            for name in ("test_add", "TestShout", "test_core", "tests/", "app"):
                assert name not in text, text
        publish = json.loads(fake.requests[-1][2])
        for file_hash, ids in publish["passed_node_ids_per_test_file"].items():
            assert len(file_hash) == 64 and all(len(i) == 32 for i in ids)


@pytest.mark.parametrize("mode", ["unauthorized", "error", "garbage"])
def test_a_misbehaving_server_degrades_to_running_the_tests(project, server_env, mode):
    with FakeCache(mode) as fake:
        server_env(fake.url)
        # The local layer must not hide the server's failure.
        result = run(project)
        result.assert_outcomes(passed=6)
        assert result.ret == 0
        result.stdout.fnmatch_lines(["*dryci: degraded:*"])
        assert fake.requests, "the server was asked"


def test_a_hanging_server_costs_at_most_the_timeout_per_call(project, server_env):
    started = time.monotonic()
    run(project, "--dryci-no-publish").assert_outcomes(passed=6)
    baseline = time.monotonic() - started
    with FakeCache("hang") as fake:
        server_env(fake.url, timeout="1")
        started = time.monotonic()
        result = run(project, "--dryci-no-skip")
        elapsed = time.monotonic() - started
        result.assert_outcomes(passed=6)
        result.stdout.fnmatch_lines(["*degraded*no answer within*"])
        # Only the publish waits (no query with --dryci-no-skip): one timeout, not
        # one per test file. The margin absorbs a loaded machine's noise.
        assert elapsed < baseline + 1 + 4, (elapsed, baseline)


def test_a_server_that_is_down_degrades(project, server_env):
    server_env("http://127.0.0.1:9")  # discard port: nothing listens
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*dryci: degraded:*127.0.0.1:9*"])
    # The local layer still works.
    run(project).assert_outcomes(skipped=6)


def test_missing_token_is_one_warning(project, server_env):
    with FakeCache() as fake:
        server_env(fake.url, token=None)
        result = run(project)
        result.assert_outcomes(passed=6)
        result.stdout.fnmatch_lines(["*DRYCI_TOKEN is not set*"])
        assert fake.requests == []


def test_bad_timeout_value_is_a_warning(project, monkeypatch):
    monkeypatch.setenv("DRYCI_TIMEOUT", "soon")
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*DRYCI_TIMEOUT='soon'*"])
    assert summary(result)["published"] == 6


def test_xdist_queries_and_publishes_once_from_the_controller(project, server_env):
    with FakeCache() as fake:
        server_env(fake.url)
        run(project, "-n", "2").assert_outcomes(passed=6)
        assert [p for p in fake.paths() if p.startswith("/api/v1/")] == [
            "/api/v1/query-passed",
            "/api/v1/publish",
        ]
        for path in (project.path / ".dryci").glob("results-v2.sqlite*"):
            path.unlink()
        run(project, "-n", "2").assert_outcomes(**FROM_V1_SERVER_ONLY)
        assert [p for p in fake.paths() if p.startswith("/api/v1/")][2:] == ["/api/v1/query-passed"]
