"""`pytest --dryci` against the real `dryci server` (SQLite), started from the
installed package the way a team would, on a loopback port."""

from __future__ import annotations

import pytest
from conftest import summary


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def forget_local(project: pytest.Pytester) -> None:
    for path in (project.path / ".dryci").glob("results-v2.sqlite*"):
        path.unlink()


def test_ci_publishes_and_a_developer_skips(project, server, monkeypatch):
    url, token, _ = server
    monkeypatch.setenv("DRYCI_SERVER", url)
    monkeypatch.setenv("DRYCI_TOKEN", token)
    run(project).assert_outcomes(passed=6)
    forget_local(project)  # another machine: only the server knows
    result = run(project)
    result.assert_outcomes(skipped=6)
    assert summary(result)["cached"] == 6
    assert "degraded" not in result.stdout.str()


def test_a_record_of_observed_inputs_is_checked_on_another_machine(project, server, monkeypatch):
    """test_data reads app/limits.json at run time: the server keeps that
    record sealed, and a machine that only has the server checks it."""
    url, token, _ = server
    monkeypatch.setenv("DRYCI_SERVER", url)
    monkeypatch.setenv("DRYCI_TOKEN", token)
    (project.path / "tests/test_env.py").write_text(
        "import os\n\ndef test_mode():\n    assert os.environ.get('APP_MODE', 'dev') == 'dev'\n"
    )
    run(project).assert_outcomes(passed=7)
    forget_local(project)
    run(project).assert_outcomes(skipped=7)  # every record held

    forget_local(project)
    monkeypatch.setenv("APP_MODE", "prod")
    result = run(project)
    result.assert_outcomes(skipped=6, failed=1)
    result.stdout.fnmatch_lines(["*test_env.py::test_mode*"])
    monkeypatch.delenv("APP_MODE")

    forget_local(project)
    (project.path / "app/limits.json").write_text('{"max": 4}\n')
    result = run(project)
    result.assert_outcomes(skipped=6, failed=1)
    result.stdout.fnmatch_lines(["*test_data.py::test_max*"])


def test_a_read_only_token_can_skip_but_not_poison(project, server, monkeypatch):
    url, _, admin = server
    admin("create-user", "main-ci", "--tenant", "team")
    admin("create-user", "fork-ci", "--tenant", "team")
    main = admin("create-token", "main-ci").strip().splitlines()[-1]
    fork = admin("create-token", "fork-ci", "--scope", "read-only").strip().splitlines()[-1]
    assert fork.startswith("dryci-")
    monkeypatch.setenv("DRYCI_SERVER", url)
    # A pull request from a fork edits a module and cannot publish its passes.
    (project.path / "app/core.py").write_text("def add(a, b):\n    return a + b  # fork\n")
    monkeypatch.setenv("DRYCI_TOKEN", fork)
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*degraded*403*"])
    assert result.ret == 0
    forget_local(project)
    monkeypatch.setenv("DRYCI_TOKEN", main)
    run(project).assert_outcomes(passed=6)  # nothing of the fork's run was stored
    forget_local(project)
    monkeypatch.setenv("DRYCI_TOKEN", fork)
    run(project).assert_outcomes(skipped=6)  # but the fork reads the team's results


def test_tenants_do_not_see_each_other(project, server, monkeypatch):
    url, admin_token, admin = server
    admin("create-user", "other")
    other = admin("create-token", "other").strip().splitlines()[-1]
    monkeypatch.setenv("DRYCI_SERVER", url)
    monkeypatch.setenv("DRYCI_TOKEN", admin_token)
    run(project).assert_outcomes(passed=6)
    forget_local(project)
    monkeypatch.setenv("DRYCI_TOKEN", other)
    run(project).assert_outcomes(passed=6)
