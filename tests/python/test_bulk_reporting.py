"""Served tests reported in bulk (`bulk_reporting`, issue 12) show and count
exactly what the per-test path shows: the same terminal text (letters,
file names, progress and where lines wrap, -rA lines with reasons, the
summary counts), the same junit XML, under xdist's controller too. The
per-test path is forced by a plugin implementing pytest_runtest_logreport,
which the bulk path does not know; a probe says which path a run took."""

from __future__ import annotations

import re

import pytest
from conftest import write_files

# Several files, of lengths that wrap the progress at any width, with
# results served as they were: skips with their own reasons, xfails; the
# last name holds characters two columns wide.
FILES = {
    f"tests/test_{number:02d}_{'x' * (number * 3) if number < 12 else '漢字漢字'}.py": (
        "import pytest\n"
        + "".join(f"def test_{t}():\n    pass\n" for t in range(number * 7 % 23 + 1))
        + (
            "@pytest.mark.skip(reason='not here')\ndef test_skipped():\n    pass\n"
            if number % 3 == 0
            else ""
        )
        + (
            "@pytest.mark.xfail(reason='bug 12')\ndef test_xfails():\n    assert False\n"
            if number % 4 == 1
            else ""
        )
        + (
            "@pytest.mark.parametrize('n', ['a::b', 'c'])\n"
            "class TestGroup:\n    def test_in(self, n):\n        pass\n"
            if number == 5
            else ""
        )
    )
    for number in range(13)
}

PLUGINS = {
    # The per-test path: a logreport listener the bulk path does not know.
    "forceslow.py": "def pytest_runtest_logreport(report):\n    pass\n",
    # Which path the run took (the same plugins listen at the end of the loop).
    "bulkprobe.py": (
        "import pytest\n"
        "@pytest.hookimpl(trylast=True)\n"
        "def pytest_sessionfinish(session):\n"
        "    from pytest_dryci.bulk_reporting import BulkReporter\n"
        "    bulk = BulkReporter.of(session.config) is not None\n"
        "    with open('probe.txt', 'w') as probe:\n"
        "        probe.write('bulk' if bulk else 'per-test')\n"
    ),
}

SECONDS = re.compile(r"\d+\.\d+s\b")


@pytest.fixture
def served(pytester: pytest.Pytester) -> pytest.Pytester:
    """The project, run once so that every test is served whole next time."""
    write_files(pytester, {**FILES, **PLUGINS})
    first_run(pytester)
    return pytester


def first_run(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*BASE)
    result.assert_outcomes(passed=147, skipped=5, xfailed=3)


# File-level keys: under function-level ones, a repository plugin imported
# before the hook (`-p forceslow`, in one run of two) changes the keys.
BASE = ("--dryci", "--dryci-precision=file", "-p", "no:randomly", "-p", "bulkprobe")
SERVED = 155


def run(project: pytest.Pytester, *args: str, per_test: bool = False) -> tuple[str, str]:
    """(output with durations blanked, the path taken)."""
    extra = ("-p", "forceslow") if per_test else ()
    result = project.runpytest_subprocess(*BASE, *args, *extra)
    assert result.ret == 0, result.stdout.str()
    text = SECONDS.sub("Ns", result.stdout.str())
    return text, (project.path / "probe.txt").read_text()


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("-rA",),
        ("-q",),
        ("-q", "-rA", "-o", "console_output_style=count"),
        ("-o", "console_output_style=classic"),
        ("-qq",),
        ("--color=yes", "-rsx"),
        ("-q", "--color=yes", "-o", "console_output_style=count"),
    ],
    ids=["default", "rA", "q", "q-count-rA", "classic", "qq", "color", "q-color-count"],
)
@pytest.mark.parametrize("columns", ["80", "41"])  # pytest takes less than 40 as 80
def test_bulk_output_is_the_per_test_output(
    served: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], columns: str
):
    monkeypatch.setenv("COLUMNS", columns)
    # `-o console_output_style=...` only changes the display: still served.
    bulk, path = run(served, *args)
    assert path == "bulk"
    assert f"dryci: {SERVED} tests served from the cache" in bulk
    assert "13 files not even collected" in bulk
    per_test, path = run(served, *args, per_test=True)
    assert path == "per-test"
    assert bulk == per_test
    if "-rA" in args:
        assert "SKIPPED [1] tests/test_00_.py:1: not here" in bulk
        assert "XFAIL at setup of tests/test_01_xxx.py::test_xfails - bug 12" in bulk


def test_verbose_runs_take_the_per_test_path(served: pytest.Pytester):
    verbose, path = run(served, "-v", "-rA")
    assert path == "per-test"
    assert "tests/test_00_.py::test_skipped SKIPPED (not here)" in verbose
    assert verbose == run(served, "-v", "-rA", per_test=True)[0]


def test_junit_xml_is_the_same(served: pytest.Pytester):
    stamps = re.compile(r'(time|timestamp|hostname)="[^"]*"')
    written = {}
    for per_test in (False, True):
        _, path = run(served, "--junitxml=junit.xml", per_test=per_test)
        assert path == ("per-test" if per_test else "bulk")
        written[per_test] = stamps.sub("", (served.path / "junit.xml").read_text())
    assert written[False] == written[True]
    assert written[False].count("<skipped") == SERVED


def test_a_status_plugin_takes_the_per_test_path(served: pytest.Pytester):
    # A pytest_report_teststatus implementation may answer per test: no bulk.
    (served.path / "statusplugin.py").write_text(
        "def pytest_report_teststatus(report, config):\n"
        "    if report.nodeid.endswith('test_0'):\n"
        "        return 'skipped', 'S', 'SKIP0'\n"
    )
    text, path = run(served, "-p", "statusplugin")
    assert path == "per-test"
    assert "S" in re.findall(r"tests/test_01_xxx\.py (\S+)", text)[0]


def test_under_xdist_the_controller_reports_in_bulk(served: pytest.Pytester):
    # One file edited: the workers run it (passes only, so its letters come
    # in one order; -rA would list them as they finish), the controller
    # serves the other files.
    edited = served.path / "tests/test_02_xxxxxx.py"
    edited.write_text(edited.read_text() + "def test_new():\n    pass\n")
    outputs = {}
    for per_test in (False, True):
        text, path = run(served, "-n", "2", "-rsx", "--dryci-no-publish", per_test=per_test)
        assert path == ("per-test" if per_test else "bulk")
        assert f"dryci: {SERVED - 15} tests served from the cache" in text
        outputs[per_test] = text
    assert outputs[False] == outputs[True]
