"""What a test reads at run time joins its key, with no configuration: a
data file whose name is computed, a folder's listing, a module imported by
a computed name, an environment variable. Each in both directions: the
change makes the test run (and fail), an unrelated change leaves it served."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from conftest import summary, write_files

# No repo_dagger.yaml: nothing names the data files, the graph cannot see them.
PROJECT = {
    "pkg/__init__.py": "",
    "pkg/formats/__init__.py": "",
    "pkg/formats/csv.py": "SEPARATOR = ','\n",
    "pkg/formats/tsv.py": "SEPARATOR = '\\t'\n",
    "pkg/registry.py": (
        "from importlib import import_module\n"
        "def load(kind):\n"
        "    return import_module(__name__.rsplit('.', 1)[0] + '.formats.' + kind)\n"
    ),
    "tests/res/greeting.txt": "hello\n",
    "tests/templates/a.tpl": "",
    "tests/test_file.py": (
        "from pathlib import Path\n"
        "def test_reads_a_computed_name():\n"
        "    name = 'greet' + 'ing'\n"
        "    assert (Path(__file__).parent / 'res' / (name + '.txt')).read_text() == 'hello\\n'\n"
    ),
    "tests/test_listing.py": (
        "import os\n"
        "def test_counts_templates():\n"
        "    assert len(os.listdir(os.path.join(os.path.dirname(__file__), 'templates'))) == 1\n"
    ),
    "tests/test_module.py": (
        "from pkg.registry import load\n"
        "def test_csv_format():\n"
        "    assert load('csv').SEPARATOR == ','\n"
    ),
    "tests/test_env.py": (
        "import os\ndef test_mode():\n    assert os.getenv('APP_MODE', 'dev') == 'dev'\n"
    ),
    "tests/test_static.py": "def test_nothing_read():\n    assert True\n",
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_files(pytester, PROJECT)
    return pytester


def run(project: pytest.Pytester, *args: str, timeout: float | None = None) -> pytest.RunResult:
    return project.runpytest_subprocess(
        "--dryci", "-p", "no:cacheprovider", "-rA", *args, timeout=timeout
    )


def ran(result: pytest.RunResult) -> set[str]:
    """Node ids that ran (passed or failed) rather than being served."""
    lines = result.stdout.lines
    return {
        line.split(" ", 1)[1].split(" - ")[0]
        for line in lines
        if line.startswith(("PASSED ", "FAILED "))
    }


def edit(project: pytest.Pytester, path: str, text: str) -> None:
    (project.path / path).write_text(text)


@pytest.mark.parametrize(
    ("change", "test"),
    [
        # a data file whose name is computed at run time
        (lambda p: edit(p, "tests/res/greeting.txt", "bye\n"), "tests/test_file.py::"),
        # a file added to a folder the test lists
        (lambda p: edit(p, "tests/templates/b.tpl", ""), "tests/test_listing.py::"),
        # a module loaded by a computed name
        (
            lambda p: edit(p, "pkg/formats/csv.py", "SEPARATOR = ';'\n"),
            "tests/test_module.py::",
        ),
    ],
    ids=["file", "listing", "module"],
)
def test_a_changed_input_runs_its_test_and_only_it(project, change, test):
    run(project).assert_outcomes(passed=5)
    assert summary(run(project))["cached"] == 5
    change(project)
    result = run(project)
    result.assert_outcomes(failed=1, skipped=4)
    assert {n.split("::")[0] + "::" for n in ran(result)} == {test}


def test_a_changed_environment_variable_runs_its_test(project, monkeypatch):
    monkeypatch.setenv("APP_MODE", "dev")
    run(project).assert_outcomes(passed=5)
    monkeypatch.setenv("APP_MODE", "prod")
    result = run(project)
    result.assert_outcomes(failed=1, skipped=4)
    assert ran(result) == {"tests/test_env.py::test_mode"}
    monkeypatch.setenv("APP_MODE", "dev")
    run(project).assert_outcomes(skipped=5)  # the value it passed with


def test_an_unrelated_change_leaves_every_test_served(project, monkeypatch):
    run(project).assert_outcomes(passed=5)
    edit(project, "pkg/formats/tsv.py", "SEPARATOR = '|'\n")  # never loaded
    edit(project, "tests/res/other.txt", "not read\n")  # res/ is never listed
    monkeypatch.setenv("SOME_UNREAD_VARIABLE", "1")
    run(project).assert_outcomes(skipped=5)


def test_files_the_run_writes_and_tmp_path_are_not_inputs(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_writes=(
            "from pathlib import Path\n"
            "def test_writes_then_reads(tmp_path):\n"
            "    out = Path(__file__).parent / 'out.txt'\n"
            "    out.write_text('x')\n"
            "    assert out.read_text() == 'x'\n"
            "    (tmp_path / 'scratch').write_text('y')\n"
            "    assert (tmp_path / 'scratch').read_text() == 'y'\n"
            "    assert len(list(tmp_path.iterdir())) == 1\n"
        )
    )
    run(pytester).assert_outcomes(passed=1)
    # out.txt was written by the run: not an input, so it is served although it differs now.
    (pytester.path / "out.txt").write_text("changed")
    run(pytester).assert_outcomes(skipped=1)


def test_a_file_read_while_collecting_counts_for_every_test_of_the_file(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        test_cases=(
            "import json, pathlib\n"
            "import pytest\n"
            "CASES = json.loads((pathlib.Path(__file__).parent / 'cases.json').read_text())\n"
            "@pytest.mark.parametrize('case', range(2))\n"
            "def test_case(case):\n"
            "    assert CASES[case] == case\n"
        ),
        test_other="def test_other():\n    assert True\n",
    )
    (pytester.path / "cases.json").write_text("[0, 1]")
    run(pytester).assert_outcomes(passed=3)
    (pytester.path / "cases.json").write_text("[0, 2]")
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert ran(result) == {"test_cases.py::test_case[0]", "test_cases.py::test_case[1]"}


# A session fixture that reads settings.ini next to it.
SESSION_SETTINGS_CONFTEST = (
    "import pathlib, pytest\n"
    "@pytest.fixture(scope='session')\n"
    "def settings():\n"
    "    return (pathlib.Path(__file__).parent / 'settings.ini').read_text()\n"
)


def turn_settings_off(pytester: pytest.Pytester) -> pytest.RunResult:
    """Runs the project's 3 tests with settings.ini "on" (in file order: the
    first test that asks sets the fixture up), checks that a second run
    serves all 3, and returns the run after settings.ini turned "off"."""
    (pytester.path / "settings.ini").write_text("on")
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=3)
    assert summary(run(pytester))["cached"] == 3
    (pytester.path / "settings.ini").write_text("off")
    return run(pytester)


def test_a_session_fixtures_read_counts_for_every_test_using_it(pytester: pytest.Pytester):
    pytester.makeconftest(SESSION_SETTINGS_CONFTEST)
    pytester.makepyfile(
        test_a="def test_a(settings):\n    assert settings == 'on'\n",
        test_b="def test_b(settings):\n    assert settings == 'on'\n",
        test_c="def test_c():\n    assert True\n",
    )
    result = turn_settings_off(pytester)
    result.assert_outcomes(failed=2, skipped=1)
    assert ran(result) == {"test_a.py::test_a", "test_b.py::test_b"}


def test_a_function_fixtures_read_counts_for_its_own_test_only(pytester: pytest.Pytester):
    # Set up inside each test's window: the test that set it up with "a" read
    # a.txt, the one with "b" read b.txt.
    pytester.makeconftest(
        "import pathlib, pytest\n"
        "@pytest.fixture(params=['a', 'b'])\n"
        "def level(request):\n"
        "    return (pathlib.Path(__file__).parent / (request.param + '.txt')).read_text()\n"
    )
    pytester.makepyfile(test_level="def test_level(level):\n    assert level == 'on'\n")
    for name in ("a", "b"):
        (pytester.path / f"{name}.txt").write_text("on")
    run(pytester).assert_outcomes(passed=2)
    (pytester.path / "a.txt").write_text("off")
    result = run(pytester)
    result.assert_outcomes(failed=1, skipped=1)
    assert ran(result) == {"test_level.py::test_level[a]"}


def test_a_fixture_requested_at_run_time_counts_for_the_test(pytester: pytest.Pytester):
    # `request.getfixturevalue` sets up a fixture no signature names; a later
    # test reuses it as set up for the first.
    pytester.makeconftest(SESSION_SETTINGS_CONFTEST)
    pytester.makepyfile(
        test_dynamic=(
            "def test_first(request):\n"
            "    assert request.getfixturevalue('settings') == 'on'\n"
            "def test_second(request):\n"
            "    assert request.getfixturevalue('settings') == 'on'\n"
            "def test_other():\n"
            "    assert True\n"
        )
    )
    result = turn_settings_off(pytester)
    result.assert_outcomes(failed=2, skipped=1)
    assert ran(result) == {"test_dynamic.py::test_first", "test_dynamic.py::test_second"}


def test_each_parameter_of_a_wide_fixture_adds_its_own_reads(pytester: pytest.Pytester):
    # The tests of one function share their parent and fixture closure; the
    # session fixture is set up again for its second parameter, after the
    # first parameter's tests got their inputs, and reads another file.
    pytester.makeconftest(
        "import pathlib, pytest\n"
        "@pytest.fixture(scope='session', params=['a', 'b'])\n"
        "def level(request):\n"
        "    return (pathlib.Path(__file__).parent / (request.param + '.txt')).read_text()\n"
    )
    pytester.makepyfile(
        test_level=(
            "import pytest\n"
            "@pytest.mark.parametrize('x', [1, 2])\n"
            "def test_level(level, x):\n"
            "    assert level == 'on'\n"
        )
    )
    for name in ("a", "b"):
        (pytester.path / f"{name}.txt").write_text("on")
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=4)
    (pytester.path / "b.txt").write_text("off")
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(failed=2, skipped=2)
    assert ran(result) == {"test_level.py::test_level[b-1]", "test_level.py::test_level[b-2]"}


def test_a_module_fixtures_read_counts_for_the_tests_using_it_only(pytester: pytest.Pytester):
    # Tests of one module with different fixtures inherit different reads.
    pytester.makepyfile(
        test_mixed=(
            "import pathlib, pytest\n"
            "@pytest.fixture(scope='module')\n"
            "def limit():\n"
            "    return int((pathlib.Path(__file__).parent / 'limit.txt').read_text())\n"
            "def test_uses(limit):\n    assert limit == 3\n"
            "@pytest.mark.parametrize('x', [1, 2])\n"
            "def test_uses_too(limit, x):\n    assert limit > x\n"
            "def test_does_not():\n    assert True\n"
        )
    )
    (pytester.path / "limit.txt").write_text("3")
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=4)
    (pytester.path / "limit.txt").write_text("2")
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    assert ran(result) == {
        "test_mixed.py::test_uses",
        "test_mixed.py::test_uses_too[1]",
        "test_mixed.py::test_uses_too[2]",
    }


def test_xdist_workers_observe_and_the_controller_publishes(project):
    run(project, "-n", "2").assert_outcomes(passed=5)
    run(project, "-n", "2").assert_outcomes(skipped=5)
    edit(project, "tests/res/greeting.txt", "bye\n")
    result = run(project, "-n", "2")
    result.assert_outcomes(failed=1, skipped=4)
    assert ran(result) == {"tests/test_file.py::test_reads_a_computed_name"}


def test_observation_off_keeps_static_keys(project):
    (project.path / "pytest.ini").write_text("[pytest]\ndryci_observe = false\n")
    run(project).assert_outcomes(passed=5)
    edit(project, "tests/res/greeting.txt", "bye\n")
    # Without observation the graph cannot see the data file: served, as before.
    run(project).assert_outcomes(skipped=5)


def test_pytests_own_variables_are_not_inputs(project, monkeypatch):
    run(project).assert_outcomes(passed=5)
    monkeypatch.setenv("PYTEST_ADDOPTS", "-q")  # pytest reads it; no test does
    monkeypatch.setenv("PY_COLORS", "0")
    run(project).assert_outcomes(skipped=5)


def test_an_ignored_path_is_not_an_input(project):
    (project.path / "pytest.ini").write_text("[pytest]\ndryci_observe_ignore = tests/res\n")
    run(project).assert_outcomes(passed=5)
    edit(project, "tests/res/greeting.txt", "bye\n")
    run(project).assert_outcomes(skipped=5)


def test_observation_that_cannot_start_degrades_to_static_keys(project):
    # An audit hook that refuses any later one (CPython then installs none, silently).
    (project.path / "conftest.py").write_text(
        "import sys\n"
        "def refuse(event, args):\n"
        "    if event == 'sys.addaudithook':\n"
        "        raise RuntimeError('audit hooks are locked')\n"
        "sys.addaudithook(refuse)\n"
    )
    result = run(project)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*dryci: degraded: cannot observe*not installed*"])
    assert summary(result)["published"] == 5
    run(project).assert_outcomes(skipped=5)


def test_a_corrupt_requirement_set_is_ignored_and_its_tests_run(project):
    import sqlite3

    run(project).assert_outcomes(passed=5)
    store = sqlite3.connect(project.path / ".dryci/results-v2.sqlite")
    with store:
        store.execute("UPDATE requirement_sets SET body = x'00ff'")
    store.close()
    result = run(project, "--dryci-explain")
    # Under function-level keys (the default) every test's record has a set:
    # all run.
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*dryci: degraded:*requirement sets could not be read*"])
    result.stdout.fnmatch_lines(
        ["dryci: ran tests/test_env.py::test_mode: its record of observed inputs could not be read"]
    )


SUBPROCESS_AND_NETWORK = {
    "tool.sh": "#!/bin/sh\necho 1\n",
    "test_tools.py": (
        "import os, socket, subprocess\n"
        "def test_runs_a_tool():\n"
        "    tool = os.path.join(os.path.dirname(__file__), 'tool.sh')\n"
        "    assert subprocess.run([tool], capture_output=True, text=True).stdout == '1\\n'\n"
        "def test_connects():\n"
        "    with socket.socket() as s:\n"
        "        s.settimeout(0.2)\n"
        "        try:\n"
        "            s.connect(('127.0.0.1', 9))\n"
        "        except OSError:\n"
        "            pass\n"
        "def test_neither():\n"
        "    assert True\n"
    ),
}


def write_tools(pytester: pytest.Pytester) -> None:
    for name, text in SUBPROCESS_AND_NETWORK.items():
        (pytester.path / name).write_text(text)
    (pytester.path / "tool.sh").chmod(0o755)


def test_a_subprocess_executable_is_an_input_and_both_are_reported(pytester: pytest.Pytester):
    write_tools(pytester)
    result = run(pytester)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["dryci: 1 tests started subprocesses, 1 connected to the network*"]
    )
    run(pytester).assert_outcomes(skipped=3)  # by default both may be served
    (pytester.path / "tool.sh").write_text("#!/bin/sh\necho 2\n")
    result = run(pytester)
    result.assert_outcomes(failed=1, skipped=2)
    assert ran(result) == {"test_tools.py::test_runs_a_tool"}


def test_a_policy_keeps_subprocess_and_network_tests_running(pytester: pytest.Pytester):
    write_tools(pytester)
    (pytester.path / "pytest.ini").write_text(
        "[pytest]\ndryci_serve_subprocess = false\ndryci_serve_network = false\n"
    )
    run(pytester).assert_outcomes(passed=3)
    result = run(pytester)
    result.assert_outcomes(passed=2, skipped=1)
    assert ran(result) == {"test_tools.py::test_runs_a_tool", "test_tools.py::test_connects"}


SUBINTERPRETERS = next(
    (name for name in ("_interpreters", "_xxsubinterpreters") if importlib.util.find_spec(name)),
    None,
)


@pytest.mark.skipif(SUBINTERPRETERS is None, reason="no subinterpreters in this Python")
def test_a_subinterpreter_does_not_hang_the_run_and_counts_as_a_subprocess(
    pytester: pytest.Pytester,
):
    # The audit hook runs in every interpreter; the observer lives in one.
    # Calling it from a subinterpreter deadlocked the test: its reads are
    # unseen, so its start is reported and the subprocess policy applies.
    pytester.makepyfile(
        test_sub=(
            f"import {SUBINTERPRETERS} as interpreters\n"
            "def test_reads_in_a_subinterpreter():\n"
            "    interp = interpreters.create()\n"
            "    interpreters.run_string(interp, 'open(\"data.txt\").read()')\n"
            "    interpreters.destroy(interp)\n"
            "def test_other():\n"
            "    assert True\n"
        )
    )
    (pytester.path / "data.txt").write_text("1\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\ndryci_serve_subprocess = false\n")
    result = run(pytester, "--dryci-observed", "observed.json", timeout=120)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["dryci: 1 tests started subprocesses*"])
    report = (pytester.path / "observed.json").read_text()
    assert "(subinterpreter)" in report
    result = run(pytester, timeout=120)
    result.assert_outcomes(passed=1, skipped=1)
    assert ran(result) == {"test_sub.py::test_reads_in_a_subinterpreter"}


def test_the_hermeticity_report_names_what_the_graph_misses(project):
    import json

    result = run(project, "--dryci-observed", "observed.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["dryci: 4 test files read inputs outside their static graph*"])
    report = json.loads((project.path / "observed.json").read_text())
    rows = {row["test_file"]: row for row in report["test_files"]}
    assert set(rows) == {
        "tests/test_file.py",
        "tests/test_listing.py",
        "tests/test_module.py",
        "tests/test_env.py",
    }
    assert rows["tests/test_file.py"]["files"] == ["tests/res/greeting.txt"]
    assert rows["tests/test_file.py"]["path_rule"] == {
        "tests/test_file.py": {"visit": ["tests/res/greeting.txt"]}
    }
    assert rows["tests/test_listing.py"]["listings"] == ["tests/templates"]
    assert rows["tests/test_module.py"]["modules"] == ["pkg/formats/csv.py"]
    assert rows["tests/test_env.py"]["environment"] == ["APP_MODE"]
    assert rows["tests/test_env.py"]["path_rule"] is None


def test_an_input_the_graph_holds_is_not_reported(project):
    import json

    # The suggested rule, applied: the data file is now a static dependency.
    (project.path / "repo_dagger.yaml").write_text(
        "path_rules:\n"
        "  '**/*.py':\n"
        "    visit_imported_python_modules: true\n"
        "  'tests/test_file.py':\n"
        "    visit: tests/res/greeting.txt\n"
    )
    run(project, "--dryci-observed", "observed.json").assert_outcomes(passed=5)
    report = json.loads((project.path / "observed.json").read_text())
    assert "tests/test_file.py" not in {row["test_file"] for row in report["test_files"]}


def test_a_conftest_read_counts_for_the_tests_below_it(pytester: pytest.Pytester):
    sub = pytester.path / "sub"
    sub.mkdir()
    (sub / "conftest.py").write_text(
        "import pathlib\nLIMIT = int((pathlib.Path(__file__).parent / 'limit.txt').read_text())\n"
    )
    (sub / "limit.txt").write_text("3")
    (sub / "test_below.py").write_text(
        "from conftest import LIMIT\ndef test_limit():\n    assert LIMIT == 3\n"
    )
    pytester.makepyfile(test_above="def test_above():\n    assert True\n")
    run(pytester).assert_outcomes(passed=2)
    (sub / "limit.txt").write_text("4")
    result = run(pytester)
    result.assert_outcomes(failed=1, skipped=1)
    assert ran(result) == {"sub/test_below.py::test_limit"}


def test_explain_says_why_each_test_ran(project):
    run(project).assert_outcomes(passed=5)
    edit(project, "tests/res/greeting.txt", "bye\n")
    edit(project, "tests/test_static.py", "def test_nothing_read():\n    assert 1\n")
    result = run(project, "--dryci-explain")
    result.assert_outcomes(passed=1, failed=1, skipped=3)
    result.stdout.fnmatch_lines_random(
        [
            "dryci: ran tests/test_file.py::test_reads_a_computed_name: "
            "an observed input changed: file tests/res/greeting.txt",
            # function-level keys (the default) name the function
            "dryci: ran tests/test_static.py::test_nothing_read: a function it ran or "
            "could reach changed: tests/test_static.py::test_nothing_read",
        ]
    )
    # file-level keys name the file
    run(project, "--dryci-precision=file").assert_outcomes(passed=4, failed=1)
    edit(project, "tests/test_static.py", "def test_nothing_read():\n    assert 2\n")
    result = run(project, "--dryci-precision=file", "--dryci-explain")
    result.stdout.fnmatch_lines(
        [
            "dryci: ran tests/test_static.py::test_nothing_read: changed since its tests "
            "last passed here: tests/test_static.py",
        ]
    )


def test_explain_names_a_changed_dependency_an_option_and_a_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    pytester.makepyfile(
        helper="def value():\n    return 1\n",
        test_one=(
            "from helper import value\n"
            "def test_value():\n    assert value() == 1\n"
            "def test_fails():\n    assert False\n"
        ),
    )
    run(pytester).assert_outcomes(passed=1, failed=1)
    result = run(pytester, "--dryci-explain")
    result.stdout.fnmatch_lines(
        [
            "dryci: ran test_one.py::test_fails: its test file's key is unchanged since its "
            "tests last passed here: a new test, or one that did not pass last time"
        ]
    )
    (pytester.path / "helper.py").write_text("def value():\n    return 1  # same\n")
    result = run(pytester, "--dryci-explain")
    result.stdout.fnmatch_lines(
        ["dryci: ran test_one.py::test_value: changed since its tests last passed here: helper.py"]
    )
    result = run(pytester, "--dryci-explain", "-W", "error")
    result.stdout.fnmatch_lines(
        ["dryci: ran test_one.py::test_value: an outcome-relevant pytest option changed"]
    )
    monkeypatch.setenv("DRYCI_SALT", "release-2")
    result = run(pytester, "--dryci-explain", "-W", "error")
    result.stdout.fnmatch_lines(["dryci: ran test_one.py::test_value: DRYCI_SALT changed"])


def dryci(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The `dryci` command line, run in the project."""
    return project.run(sys.executable, "-m", "pytest_dryci", *args)


def test_dryci_explain_and_observed_report_the_last_run(project):
    run(project).assert_outcomes(passed=5)
    (project.path / "tests/res/greeting.txt").write_text("bonjour\n")
    run(project).assert_outcomes(failed=1, skipped=4)

    explained = dryci(project, "explain")
    assert explained.ret == 0, explained.stderr.str()
    explained.stdout.fnmatch_lines(
        [
            "*the last run (*) ran 1 tests and served 4",
            "ran tests/test_file.py::test_reads_a_computed_name: an observed input changed: "
            "file tests/res/greeting.txt",
        ]
    )
    as_json = json.loads(dryci(project, "explain", "--json", "test_env").stdout.str())
    assert as_json["ran"] == [] and as_json["served"] == 4

    observed = dryci(project, "observed", "--json")
    assert observed.ret == 0, observed.stderr.str()
    rows = {row["test_file"]: row for row in json.loads(observed.stdout.str())["test_files"]}
    assert rows["tests/test_file.py"]["files"] == ["tests/res/greeting.txt"]
    human = dryci(project, "observed")
    human.stdout.fnmatch_lines(["tests/test_file.py", "  file tests/res/greeting.txt"])


def test_dryci_explain_without_a_run_says_what_to_do(project):
    result = dryci(project, "explain")
    assert result.ret == 2
    result.stderr.fnmatch_lines(
        ["error: no .dryci/last-run.json in *", "hint: run `pytest --dryci`*"]
    )


def test_a_finished_run_leaves_no_observer_alive(project):
    # An audit hook cannot be removed: a callback it kept would keep the
    # observer, and the session's fixtures it holds, alive for the rest of
    # the process (each in-process run's, and through the interpreter's
    # shutdown, whose collections walk it all again). (Assertion rewriting
    # is off: pytest's import hook, kept by the modules it loaded, keeps
    # the first run's configuration and plugins alive.)
    script = project.path / "run_twice.py"
    script.write_text(
        "import gc, pytest\n"
        "from pytest_dryci.observe import Observer\n"
        "started = []\n"
        "start = Observer.start\n"
        "Observer.start = lambda self: (start(self), started.append(1))[0]\n"
        "for _ in range(2):\n"
        "    code = pytest.main(['--dryci', '-q', '-p', 'no:cacheprovider', '--assert=plain'])\n"
        "    assert code == 0, code\n"
        "gc.collect()\n"
        "alive = sum(isinstance(o, Observer) for o in gc.get_objects())\n"
        "print('observers started:', len(started), 'alive:', alive)\n"
    )
    result = project.runpython(script)
    assert result.ret == 0, result.stderr.str()
    result.stdout.no_fnmatch_line("*dryci: degraded*")
    result.stdout.fnmatch_lines(["observers started: 2 alive: 0"])
