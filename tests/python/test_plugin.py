"""`pytest --dryci` end to end, in subprocesses, on projects the tests write."""

from __future__ import annotations

import json

import pytest
from conftest import summary


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def test_first_run_publishes_second_run_skips_everything(project):
    first = run(project)
    first.assert_outcomes(passed=6)
    assert summary(first) == {"ran": 6, "cached": 0, "published": 6}
    second = run(project, "-rs")
    second.assert_outcomes(skipped=6)
    assert second.ret == 0
    assert summary(second) == {"ran": 0, "cached": 6, "published": 0}
    second.stdout.fnmatch_lines(["*dryci: passed before with identical inputs (*)*"])


@pytest.mark.parametrize(
    ("edited", "text", "rerun"),
    [
        # a module: exactly its dependents run again
        (
            "app/strings.py",
            "def shout(s):\n    return s.upper() + '!'  # v2\n",
            "test_strings.py::TestShout::test_shout",
        ),
        # a data file named by a rule: the tests that read it run again
        ("app/limits.json", '{"max": 3, "min": 0}\n', "test_data.py::test_max"),
    ],
)
def test_an_edit_reruns_exactly_the_dependents(project, edited, text, rerun):
    run(project).assert_outcomes(passed=6)
    (project.path / edited).write_text(text)
    result = run(project, "-v")
    result.assert_outcomes(passed=1, skipped=5)
    result.stdout.fnmatch_lines([f"*{rerun} PASSED*"])


def test_editing_conftest_reruns_the_tests_below_it(project):
    run(project).assert_outcomes(passed=6)
    (project.path / "tests/conftest.py").write_text("# changed\n")
    run(project).assert_outcomes(passed=6)


def test_a_failing_test_is_never_skipped(project):
    project.makepyfile(test_fails="def test_fails():\n    assert False\n")
    run(project).assert_outcomes(passed=6, failed=1)
    result = run(project)
    result.assert_outcomes(skipped=6, failed=1)
    assert result.ret == 1


def test_a_flaky_test_is_not_published(project):
    project.makepyfile(
        test_flaky=(
            "import pathlib\n"
            "def test_flaky():\n"
            "    marker = pathlib.Path(__file__).with_name('ran-once')\n"
            "    if not marker.exists():\n"
            "        marker.write_text('x')\n"
            "        assert False, 'first attempt fails'\n"
        )
    )
    first = run(project, "-p", "rerunfailures", "--reruns", "1")
    outcomes = first.parseoutcomes()
    assert (outcomes["passed"], outcomes["rerun"]) == (7, 1)
    assert summary(first)["published"] == 6
    second = run(project, "-p", "rerunfailures", "--reruns", "1")
    second.assert_outcomes(passed=1, skipped=6)


def test_an_xpass_is_never_published_a_skip_and_an_xfail_are(project):
    project.makepyfile(
        test_marks=(
            "import pytest\n"
            "@pytest.mark.skip(reason='no')\ndef test_skip(): pass\n"
            "@pytest.mark.xfail\ndef test_xfail(): assert False\n"
            "@pytest.mark.xfail\ndef test_xpass(): pass\n"
            "def test_ok(): pass\n"
        )
    )
    # The six of the project, test_ok, and the skip and the xfail with their reasons.
    assert summary(run(project))["published"] == 9
    result = run(project, "-rs")
    result.assert_outcomes(skipped=8, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(["*no*"])
    assert summary(result)["ran"] == 1  # the xpass


def test_no_publish_queries_but_stores_nothing(project):
    first = run(project, "--dryci-no-publish")
    first.assert_outcomes(passed=6)
    first.stdout.fnmatch_lines(["*nothing published*"])
    run(project).assert_outcomes(passed=6)


def test_no_skip_runs_everything_and_still_publishes(project):
    run(project).assert_outcomes(passed=6)
    run(project, "--dryci-no-skip").assert_outcomes(passed=6)
    run(project).assert_outcomes(skipped=6)


def test_plugin_is_inert_without_dryci(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    assert "dryci:" not in result.stdout.str()
    assert not (project.path / ".dryci").exists()


def test_ini_option_turns_it_on(project):
    project.makeini("[pytest]\ndryci = true\n")
    project.runpytest_subprocess().assert_outcomes(passed=6)
    project.runpytest_subprocess().assert_outcomes(skipped=6)


def test_salt_and_environment_are_part_of_the_key(project, monkeypatch):
    run(project).assert_outcomes(passed=6)
    monkeypatch.setenv("DRYCI_SALT", "bust")
    run(project).assert_outcomes(passed=6)
    run(project).assert_outcomes(skipped=6)
    run(project, "--dryci-no-env-hash").assert_outcomes(passed=6)


def install_fake_distribution(project, name: str, version: str, age: float) -> None:
    """A distribution in `site/` (on sys.path through the pythonpath ini
    option), its files dated `age` seconds ago."""
    import os
    import time

    info = project.path / "site" / f"{name}-1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    metadata = info / "METADATA"
    metadata.write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    when = time.time() - age
    for path in (metadata, info):
        os.utime(path, (when, when))


def test_the_environment_fingerprint_is_remembered_until_a_distribution_changes(project):
    project.makeini("[pytest]\npythonpath = site\n")
    install_fake_distribution(project, "fakedist", "1.0", age=300)
    run(project).assert_outcomes(passed=6)
    remembered = project.path / ".dryci" / "environment-v1.json"
    assert remembered.exists()
    run(project).assert_outcomes(skipped=6)
    # An upgrade rewriting the metadata in place, same size, same folder name.
    install_fake_distribution(project, "fakedist", "2.0", age=200)
    run(project).assert_outcomes(passed=6)
    run(project).assert_outcomes(skipped=6)
    # A new distribution.
    install_fake_distribution(project, "otherdist", "1.0", age=200)
    run(project).assert_outcomes(passed=6)
    run(project).assert_outcomes(skipped=6)
    # The remembered fingerprint is what the run uses: falsify it and nothing matches.
    entries = json.loads(remembered.read_text())
    remembered.write_text(json.dumps(dict.fromkeys(entries, "0" * 64)))
    run(project).assert_outcomes(passed=6)
    # A corrupt record is ignored and rewritten.
    remembered.write_text("{not json")
    run(project).assert_outcomes(skipped=6)
    assert json.loads(remembered.read_text())


def test_selection_options_and_test_styles(project):
    project.makepyfile(
        test_styles=(
            "import unittest\nimport pytest\n"
            "class TestCase(unittest.TestCase):\n"
            "    def test_unit(self):\n        self.assertEqual(1, 1)\n"
            "@pytest.mark.slow\ndef test_marked(): pass\n"
            "def test_named(): pass\n"
        )
    )
    run(project, "-k", "named").assert_outcomes(passed=1)
    run(project, "-m", "slow").assert_outcomes(passed=1)
    run(project, "test_styles.py::TestCase::test_unit").assert_outcomes(passed=1)
    result = run(project, "test_styles.py")
    result.assert_outcomes(skipped=3)
    run(project).assert_outcomes(passed=6, skipped=3)


def test_last_failed_still_runs_the_failure(project):
    project.makepyfile(test_fails="def test_fails():\n    assert False\n")
    project.runpytest_subprocess("--dryci").assert_outcomes(passed=6, failed=1)
    result = project.runpytest_subprocess("--dryci", "--lf")
    result.assert_outcomes(failed=1)


def test_doctest_modules_are_cached_by_their_source_module(project):
    (project.path / "app/doc.py").write_text('def f():\n    """\n    >>> 1 + 1\n    2\n    """\n')
    first = run(project, "--doctest-modules", "app")
    first.assert_outcomes(passed=1)
    run(project, "--doctest-modules", "app").assert_outcomes(skipped=1)
    (project.path / "app/doc.py").write_text('def f():\n    """\n    >>> 2 + 2\n    4\n    """\n')
    run(project, "--doctest-modules", "app").assert_outcomes(passed=1)


def test_tests_outside_the_configured_inputs_are_cached_too(project):
    (project.path / "checks").mkdir()
    (project.path / "checks/check_app.py").write_text("def test_check(): pass\n")
    args = ("-o", "python_files=check_*.py test_*.py", "checks")
    run(project, *args).assert_outcomes(passed=1)
    run(project, *args).assert_outcomes(skipped=1)


def test_running_from_a_subfolder_gives_the_same_hashes(project):
    run(project).assert_outcomes(passed=6)
    result = project.runpytest_subprocess(
        "--dryci", "-p", "no:cacheprovider", "--rootdir", str(project.path), "tests/test_core.py"
    )
    result.assert_outcomes(skipped=4)


def test_xdist_decides_once_in_the_controller_like_a_serial_run(project):
    serial = run(project, "-p", "no:randomly")
    serial.assert_outcomes(passed=6)
    (project.path / "app/core.py").write_text("def add(a, b):\n    return b + a\n")
    result = run(project, "-n", "2", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=4, skipped=2)
    assert summary(result) == {"ran": 4, "cached": 2, "published": 4}
    run(project, "-n", "2").assert_outcomes(skipped=6)


def test_invalid_configuration_degrades_to_running_everything(project):
    (project.path / "repo_dagger.yaml").write_text("path_rules:\n  '**/*.py':\n    vist: true\n")
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*dryci: degraded:*repo_dagger.yaml:3*unknown field*vist*"])
    assert result.ret == 0


def test_strict_mode_turns_a_failure_into_an_error(project):
    (project.path / "repo_dagger.yaml").write_text("path_rules:\n  '**/*.py':\n    vist: true\n")
    result = run(project, "--dryci-strict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: dryci (strict):*repo_dagger.yaml:3*unknown field*vist*"])


def test_a_config_error_hints_at_the_plugins_own_setting(project):
    result = run(project, "--dryci-strict", "--dryci-config", "missing.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*cannot read*missing.yaml*", "hint: check the path given with --dryci-config*"]
    )


def test_unwritable_local_store_degrades(project):
    (project.path / ".dryci").write_text("a file where the store's folder should be\n")
    result = run(project)
    result.assert_outcomes(passed=6)
    assert "dryci: degraded:" in result.stdout.str()
    assert result.ret == 0


def test_corrupt_local_store_starts_afresh(project):
    run(project).assert_outcomes(passed=6)
    (project.path / ".dryci/results-v2.sqlite").write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (project.path / f".dryci/results-v2.sqlite{suffix}").unlink(missing_ok=True)
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*degraded*corrupt*started afresh*"])
    run(project).assert_outcomes(skipped=6)


def test_two_processes_at_once_share_the_store(project):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pytest", "--dryci", "-p", "no:cacheprovider", "-q"]
    procs = [
        subprocess.Popen([*cmd, f"tests/test_{n}.py"], cwd=project.path)
        for n in ("core", "strings")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    run(project).assert_outcomes(passed=1, skipped=5)


IMPORT_SPY = (
    "import pathlib\n"
    "pathlib.Path(__file__).with_name('imported').write_text('yes')\n"
    "import pytest\n"
    "@pytest.mark.parametrize('n', [1, 2])\n"
    "def test_spy(n): pass\n"
    "class TestGroup:\n"
    "    def test_in_class(self): pass\n"
)


def test_a_file_whose_every_test_passed_is_not_even_imported(project):
    project.makepyfile(test_spy=IMPORT_SPY)
    spy = project.path / "imported"
    run(project).assert_outcomes(passed=9)
    spy.unlink()
    result = run(project, "-v", "-rs")
    result.assert_outcomes(skipped=9)
    assert not spy.exists(), "a complete cached file must not be imported"
    # Each test is reported with its node id, in the order the file produced
    # them, which pytest-randomly shuffles: look for each line on its own.
    for line in (
        "*test_spy.py::test_spy[[]1[]] SKIPPED*",
        "*test_spy.py::test_spy[[]2[]] SKIPPED*",
        "*test_spy.py::TestGroup::test_in_class SKIPPED*",
        "*files not even collected*",
    ):
        result.stdout.fnmatch_lines([line])
    # Selecting by name is answered from the file's record (issue 12): still not imported.
    run(project, "-k", "spy").assert_outcomes(skipped=3, deselected=6)
    assert not spy.exists()


def test_a_node_id_run_does_not_record_a_partial_file_as_complete(project):
    project.makepyfile(test_spy=IMPORT_SPY)
    run(project, "test_spy.py::TestGroup::test_in_class").assert_outcomes(passed=1)
    result = run(project, "test_spy.py")
    result.assert_outcomes(passed=2, skipped=1)


def test_a_plugin_dropping_items_prevents_a_complete_record(project, monkeypatch):
    project.makepyfile(test_spy=IMPORT_SPY)
    project.makeconftest(
        "import os\n"
        "def pytest_collection_modifyitems(items):\n"
        "    if os.environ.get('ONLY_ONE'):\n"
        "        del items[1:]\n"
    )
    spy = project.path / "imported"
    monkeypatch.setenv("ONLY_ONE", "1")
    run(project, "-p", "no:randomly", "test_spy.py").assert_outcomes(passed=1)
    monkeypatch.delenv("ONLY_ONE")
    spy.unlink()
    result = run(project, "test_spy.py")
    assert spy.exists(), "the file was collected, not served from a partial record"
    result.assert_outcomes(passed=2, skipped=1)


def test_skip_collection_can_be_turned_off(project):
    project.makepyfile(test_spy=IMPORT_SPY)
    project.makeini("[pytest]\ndryci_skip_collection = false\n")
    run(project).assert_outcomes(passed=9)
    (project.path / "imported").unlink()
    run(project).assert_outcomes(skipped=9)
    assert (project.path / "imported").exists()


def test_a_file_with_a_failure_is_collected_again(project):
    project.makepyfile(
        test_mixed=IMPORT_SPY + "def test_bad():\n    assert False\n",
    )
    spy = project.path / "imported"
    run(project).assert_outcomes(passed=9, failed=1)
    spy.unlink()
    run(project).assert_outcomes(skipped=9, failed=1)
    assert spy.exists()


def test_options_that_may_change_outcomes_are_part_of_the_key(project):
    run(project).assert_outcomes(passed=6)
    run(project, "-q", "-n", "2", "-p", "no:randomly", "--tb=line").assert_outcomes(skipped=6)
    run(project, "-v", "-rA", "--durations=3").assert_outcomes(skipped=6)
    display = ("-o", "console_output_style=count", "-o", "log_cli=true")
    run(project, *display).assert_outcomes(skipped=6)
    run(project, "-o", "xfail_strict=true").assert_outcomes(passed=6)
    # the live log's level lowers the root logger's: what `caplog` sees
    run(project, "--log-cli-level=DEBUG").assert_outcomes(passed=6)
    run(project, "-W", "error::DeprecationWarning").assert_outcomes(passed=6)
    run(project, "-W", "error::DeprecationWarning").assert_outcomes(skipped=6)


def test_junit_report_lists_cached_tests(project):
    run(project).assert_outcomes(passed=6)
    run(project, "--junitxml=report.xml").assert_outcomes(skipped=6)
    xml = (project.path / "report.xml").read_text()
    assert xml.count("<testcase") == 6
    assert "dryci: passed before with identical inputs" in xml
    # Served tests get no teardown report: junitxml must still close and count each one.
    assert 'tests="6"' in xml
    assert 'skipped="6"' in xml
    assert xml.count("<skipped") == 6
    for name in ("test_add", "test_add_zero[1]", "test_shout", "test_max"):
        assert f'name="{name}"' in xml


def test_served_tests_show_in_every_terminal_report(project):
    run(project).assert_outcomes(passed=6)
    # Default verbosity: each file's path with a letter per test, then the progress.
    default = run(project, "-p", "no:randomly", "-rs")
    default.assert_outcomes(skipped=6)
    default.stdout.fnmatch_lines(
        [
            "tests/test_core.py ssss*",
            "tests/test_data.py s*",
            "tests/test_strings.py s*[[]100%[]]",
            "*short test summary info*",
            "SKIPPED [[]4[]] tests/test_core.py*dryci: passed before with identical inputs*",
            "*6 skipped in*",
        ]
    )
    quiet = run(project, "-q")
    quiet.stdout.fnmatch_lines(["ssssss*[[]100%[]]", "*6 skipped in*"])
    assert quiet.ret == 0


def test_a_plugin_watching_logstart_and_logfinish_sees_every_served_test(project):
    """Served tests skip logstart/logfinish only where every implementation
    is known to do nothing for them; any other plugin gets every call."""
    project.makeconftest(
        "seen = []\n"
        "def pytest_runtest_logstart(nodeid, location):\n"
        "    seen.append('start ' + nodeid)\n"
        "def pytest_runtest_logfinish(nodeid, location):\n"
        "    seen.append('finish ' + nodeid)\n"
        "def pytest_terminal_summary(terminalreporter):\n"
        "    terminalreporter.write_line(f'watched {len(seen)} calls')\n"
    )
    run(project).assert_outcomes(passed=6)
    result = run(project, "-q")
    result.assert_outcomes(skipped=6)
    assert summary(result)["cached"] == 6
    result.stdout.fnmatch_lines(["watched 12 calls"])


def test_garbage_left_by_the_tests_that_ran_is_still_finalised(project):
    """Serving files freezes the objects alive after the run loop (so the
    collector stops walking the served reports); what the tests left as
    garbage must be collected first, so that its __del__ runs and pytest
    reports what it raised."""
    run(project).assert_outcomes(passed=6)
    project.makepyfile(
        test_boom=(
            "import gc\n"
            "import pytest\n"
            "class Boom:\n"
            "    def __init__(self):\n"
            "        self.me = self\n"
            "    def __del__(self):\n"
            "        raise RuntimeError('boom in __del__')\n"
            "KEEP = []\n"
            "@pytest.fixture(scope='session')\n"
            "def boom():\n"
            "    KEEP.append(Boom())\n"
            "    for _ in range(3):\n"
            "        gc.collect()  # old now: only a full collection finds it\n"
            "    yield\n"
            "    KEEP.clear()  # garbage from the end of the run loop on\n"
            "def test_boom(boom):\n"
            "    pass\n"
        )
    )
    result = run(project, "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=6)
    assert "boom in __del__" in result.stdout.str() + result.stderr.str()


def test_garbage_left_before_dryci_decides_is_still_finalised(project):
    """While DryCI decides and pytest collects, pytest's own objects are
    hidden from the collector (`freeze_startup_objects`); garbage among them,
    made by a conftest at import, is still collected in a fully served run."""
    (project.path / "tests/conftest.py").write_text(
        "import gc, pathlib\n"
        "class Cycle:\n"
        "    def __init__(self):\n"
        "        self.me = self\n"
        "    def __del__(self):\n"
        "        pathlib.Path(__file__).with_name('finalised').write_text('yes')\n"
        "KEEP = [Cycle()]\n"
        "for _ in range(3):\n"
        "    gc.collect()  # old now: only a full collection finds it\n"
        "KEEP.clear()\n"
    )
    run(project).assert_outcomes(passed=6)
    marker = project.path / "tests/finalised"
    marker.unlink()
    run(project).assert_outcomes(skipped=6)
    assert marker.read_text() == "yes"


def test_graph_warnings_are_summarised(project):
    (project.path / "repo_dagger.yaml").write_text(
        (project.path / "repo_dagger.yaml").read_text() + "global_deps: [missing.lock]\n"
    )
    result = run(project)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*dependency graph warnings*missing.lock does not exist*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_served_files_respect_ignore_and_last_failed(project, workers):
    run(project).assert_outcomes(passed=6)
    run(project, *workers, "--ignore=tests/test_core.py").assert_outcomes(skipped=2)
    result = run(project, *workers, "-p", "cacheprovider", "--lf")
    assert result.parseoutcomes().get("passed", 0) == 0
