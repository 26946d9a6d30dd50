"""Cached runs under pytest-xdist (issue 14): a run in which every test will
be served starts no worker; in a run in which some tests need running, the
workers import only the files that hold them and the controller reports the
served tests. Either way the outcomes, their counts and the junit report
are a serial run's, whatever the scheduling mode, -x, --lf, pytest-randomly's
seed or a worker that crashes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from conftest import summary

# Every worker that starts leaves a file named after it.
WORKER_MARKER = """
def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        open("worker-started-" + workerinput["workerid"], "w").close()
"""

# Put at the top of each test file: every import of it adds a line,
# "<process> <file>", to imports.log (the process is "controller" when it is
# no xdist worker).
IMPORT_SPY = """\
import os as _os, pathlib as _pathlib
with open(_pathlib.Path(__file__).parents[1] / "imports.log", "a") as _log:
    _log.write(_os.environ.get("PYTEST_XDIST_WORKER", "controller") + " "
               + _pathlib.Path(__file__).name + "\\n")
"""

FAILS = "def test_fails():\n    assert False\n"

CRASHES = (
    "import os\n\n"
    "def test_ok():\n    pass\n\n"
    "def test_crash():\n"
    "    if os.environ.get('CRASH'):\n"
    "        os._exit(1)  # the worker dies mid-test\n"
)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def workers_started(project: pytest.Pytester) -> list[str]:
    started = sorted(p.name for p in project.path.glob("worker-started-*"))
    for path in project.path.glob("worker-started-*"):
        path.unlink()
    return started


def imports(project: pytest.Pytester) -> list[tuple[str, str]]:
    """(process, test file) for each import of a spied test file since the
    last call, sorted."""
    log = project.path / "imports.log"
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    log.unlink()
    return sorted((process, name) for process, name in (line.split() for line in lines))


def junit_cases(project: pytest.Pytester, name: str) -> list[tuple[str, str, str, str]]:
    """(class name, test name, result, message) for each test case, sorted:
    a test reported twice shows twice."""
    cases = []
    for case in ET.parse(project.path / name).getroot().iter("testcase"):
        result, message = "passed", ""
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                result, message = child.tag, child.get("message", "")
        cases.append((case.get("classname", ""), case.get("name", ""), result, message))
    return sorted(cases)


def assert_same_run(serial: pytest.RunResult, distributed: pytest.RunResult) -> None:
    assert distributed.parseoutcomes() == serial.parseoutcomes()
    assert summary(distributed) == summary(serial)


def progress(result: pytest.RunResult) -> list[int]:
    """The percentages pytest's terminal printed, in order."""
    return [int(p) for p in re.findall(r"\[\s*(\d+)%\]", result.stdout.str())]


@pytest.fixture
def spied(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The project, each of its test files recording its imports, and each
    xdist worker its start."""
    # When this suite runs under xdist, a serial run would inherit the worker's name.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    (project.path / "conftest.py").write_text(WORKER_MARKER)
    for path in (project.path / "tests").glob("test_*.py"):
        path.write_text(IMPORT_SPY + path.read_text())
    return project


def edit_strings(project: pytest.Pytester) -> None:
    """After it, tests/test_strings.py runs again and the rest is served."""
    (project.path / "app/strings.py").write_text(
        "def shout(s):\n    return s.upper() + '!'  # v2\n"
    )


TEST_FILES = {"test_core.py", "test_data.py", "test_strings.py"}


@pytest.mark.parametrize("workers", ["2", "auto"])
def test_all_served_starts_no_worker_and_imports_no_test_file(spied, workers):
    run(spied, "-n", workers).assert_outcomes(passed=6)
    assert workers_started(spied)  # the first run distributes
    imports(spied)
    result = run(spied, "-n", workers, "--junitxml=report.xml")
    result.assert_outcomes(skipped=6)
    assert result.ret == 0
    assert workers_started(spied) == []
    assert imports(spied) == []
    assert summary(result) == {"ran": 0, "cached": 6, "published": 0}
    assert len(junit_cases(spied, "report.xml")) == 6


@pytest.mark.parametrize("workers", ["2", "auto"])
def test_nothing_served_runs_as_a_serial_run(spied, workers):
    serial = run(spied, "--dryci-no-publish", "--junitxml=serial.xml")
    serial.assert_outcomes(passed=6)
    imports(spied)
    distributed = run(spied, "-n", workers, "--junitxml=distributed.xml")
    assert distributed.parseoutcomes()["passed"] == 6
    assert summary(distributed) == {"ran": 6, "cached": 0, "published": 6}
    assert junit_cases(spied, "distributed.xml") == junit_cases(spied, "serial.xml")
    started = workers_started(spied)
    # Every worker collects every file.
    assert {(f"worker-started-{p}", n) for p, n in imports(spied)} == {
        (w, n) for w in started for n in TEST_FILES
    }


@pytest.mark.parametrize(
    "dist",
    [
        ["-n", "2"],
        ["-n", "auto"],
        ["-n", "2", "--dist", "loadscope"],
        ["-n", "2", "--dist", "loadfile"],
        ["-n", "2", "--dist", "worksteal"],
        ["-n", "2", "--dist", "no"],
    ],
)
def test_partly_served_workers_import_only_the_files_that_run(spied, dist):
    run(spied).assert_outcomes(passed=6)
    edit_strings(spied)
    imports(spied)
    workers_started(spied)
    serial = run(spied, "--dryci-no-publish", "--junitxml=serial.xml")
    serial.assert_outcomes(passed=1, skipped=5)
    assert imports(spied) == [("controller", "test_strings.py")]
    distributed = run(spied, "--dryci-no-publish", "--junitxml=distributed.xml", *dist)
    assert_same_run(serial, distributed)
    assert junit_cases(spied, "distributed.xml") == junit_cases(spied, "serial.xml")
    started = workers_started(spied)
    assert len(started) >= 2
    assert imports(spied) == sorted(
        (w.removeprefix("worker-started-"), "test_strings.py") for w in started
    )
    # Served tests count in pytest's progress, as in a serial run.
    assert progress(distributed)[-1] == 100
    assert max(progress(distributed)) == 100


def test_pytest_randomly_seeds_serve_the_same_tests(spied):
    run(spied).assert_outcomes(passed=6)
    edit_strings(spied)
    serial = run(spied, "--dryci-no-publish", "-p", "no:randomly", "--junitxml=serial.xml")
    serial.assert_outcomes(passed=1, skipped=5)
    expected = junit_cases(spied, "serial.xml")
    for seed in ("1", "2"):
        args = ("-p", "randomly", f"--randomly-seed={seed}", "--junitxml=seeded.xml")
        distributed = run(spied, "--dryci-no-publish", "-n", "2", *args)
        assert_same_run(serial, distributed)
        assert junit_cases(spied, "seeded.xml") == expected


def test_stopping_at_the_first_failure_as_a_serial_run(project):
    """-x (--maxfail=1): the run stops after the one test that runs, before
    the controller reports the served tests, as a serial run stops before
    it does."""
    (project.path / "tests/test_fails.py").write_text(FAILS)
    run(project).assert_outcomes(passed=6, failed=1)
    serial = run(project, "-x", "--dryci-no-publish", "--junitxml=serial.xml")
    serial.assert_outcomes(failed=1)
    distributed = run(project, "-x", "--dryci-no-publish", "-n", "2", "--junitxml=dist.xml")
    assert_same_run(serial, distributed)
    assert junit_cases(project, "dist.xml") == junit_cases(project, "serial.xml")


def test_last_failed_runs_the_failure_as_a_serial_run(project):
    (project.path / "tests/test_fails.py").write_text("def test_ok():\n    pass\n\n" + FAILS)

    # With the cache provider: it remembers the failure.
    project.runpytest_subprocess("--dryci").assert_outcomes(passed=7, failed=1)
    edit_strings(project)
    serial = project.runpytest_subprocess(
        "--dryci", "--dryci-no-publish", "--lf", "--junitxml=serial.xml"
    )
    serial.assert_outcomes(failed=1)  # pytest drops test_ok while collecting
    distributed = project.runpytest_subprocess(
        "--dryci", "--dryci-no-publish", "--lf", "-n", "2", "--junitxml=dist.xml"
    )
    assert_same_run(serial, distributed)
    assert junit_cases(project, "dist.xml") == junit_cases(project, "serial.xml")


def test_a_worker_crash_is_a_failure_that_runs_again(project, monkeypatch):
    run(project).assert_outcomes(passed=6)
    (project.path / "tests/test_crash.py").write_text(CRASHES)
    monkeypatch.setenv("CRASH", "1")
    crashed = run(project, "-n", "2", "--junitxml=report.xml")
    crashed.assert_outcomes(failed=1, passed=1, skipped=6)
    assert crashed.ret == pytest.ExitCode.TESTS_FAILED
    crashed.stdout.fnmatch_lines(["*crashed while running*tests/test_crash.py::test_crash*"])
    assert summary(crashed) == {"ran": 2, "cached": 6, "published": 1}
    cases = junit_cases(project, "report.xml")
    assert len({(c[0], c[1]) for c in cases}) == len(cases) == 8
    # The crashed test was not published as passed: it runs again.
    monkeypatch.delenv("CRASH")
    again = run(project, "-n", "2")
    again.assert_outcomes(passed=1, skipped=7)
    assert summary(again) == {"ran": 1, "cached": 7, "published": 1}
