"""Skips and expected failures are results: served again under the same
key with their own reasons, so a file that holds them need not be collected.
Failures, errors and an xpass always run."""

from __future__ import annotations

import pytest
from conftest import summary

TESTS = (
    "import sys, pytest\n"
    "def test_passes():\n    assert True\n"
    "@pytest.mark.skip(reason='not on this shop')\n"
    "def test_marked_skip():\n    pass\n"
    "@pytest.mark.skipif(sys.version_info < (3,), reason='needs python 3')\n"
    "def test_skipif_false():\n    assert True\n"
    "@pytest.mark.skipif(True, reason='always skipped')\n"
    "def test_skipif_true():\n    pass\n"
    "def test_skips_in_body():\n    pytest.skip('decided at run time')\n"
    "@pytest.fixture\n"
    "def needs_service():\n    pytest.skip('no service')\n"
    "def test_fixture_skip(needs_service):\n    pass\n"
    "@pytest.mark.xfail(reason='known bug 12')\n"
    "def test_xfails():\n    assert False\n"
)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def test_skips_and_xfails_are_served_with_their_reasons_without_collection(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(test_outcomes=TESTS)
    first = run(pytester, "-rsx")
    first.assert_outcomes(passed=2, skipped=4, xfailed=1)
    assert summary(first)["published"] == 7
    second = run(pytester, "-rsx")
    second.assert_outcomes(skipped=6, xfailed=1)
    assert summary(second)["cached"] == 7
    assert "1 files not even collected" in second.stdout.str()
    second.stdout.fnmatch_lines_random(
        [
            "SKIPPED [[]1] *: not on this shop",
            "SKIPPED [[]1] *: always skipped",
            "SKIPPED [[]1] *: decided at run time",
            "SKIPPED [[]1] *: no service",
            "XFAIL *test_outcomes.py::test_xfails - known bug 12",
        ]
    )


def test_collected_files_serve_them_too(pytester: pytest.Pytester):
    pytester.makepyfile(test_outcomes=TESTS)
    run(pytester).assert_outcomes(passed=2, skipped=4, xfailed=1)
    # Collected, the served results are applied as markers; answered from
    # the file's record (issue 12), they are reported as the same results.
    for skip_collection in ("false", "true"):
        args = ("-k", "skip or xfail", "-rsx", "-o", f"dryci_skip_collection={skip_collection}")
        result = run(pytester, *args)
        elided = "1 files not even collected" in result.stdout.str()
        assert elided == (skip_collection == "true")
        result.assert_outcomes(skipped=5, xfailed=1, deselected=1)
        result.stdout.fnmatch_lines_random(
            ["SKIPPED [[]1] *: not on this shop", "XFAIL *known bug 12*"]
        )
        assert summary(result)["ran"] == 0


def test_an_xpass_and_a_failure_always_run(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_x=(
            "import pytest\n"
            "@pytest.mark.xfail(reason='flaky fix')\n"
            "def test_xpass():\n    assert True\n"
            "def test_fails():\n    assert False\n"
        )
    )
    run(pytester).assert_outcomes(xpassed=1, failed=1)
    run(pytester).assert_outcomes(xpassed=1, failed=1)


def test_an_edit_runs_a_served_skip_again(pytester: pytest.Pytester):
    pytester.makepyfile(test_outcomes=TESTS)
    run(pytester).assert_outcomes(passed=2, skipped=4, xfailed=1)
    (pytester.path / "test_outcomes.py").write_text(
        TESTS.replace("pytest.skip('decided at run time')", "assert False")
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, skipped=3, xfailed=1, failed=1)


def test_xdist_serves_them_like_a_serial_run(pytester: pytest.Pytester):
    pytester.makepyfile(test_outcomes=TESTS)
    run(pytester, "-n", "2").assert_outcomes(passed=2, skipped=4, xfailed=1)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(skipped=6, xfailed=1)
    assert summary(result)["cached"] == 7
