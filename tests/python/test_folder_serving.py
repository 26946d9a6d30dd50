"""Serving whole folders (`folders`): a cached run does not walk a folder
all of whose collectable files it serves, and wherever something below a
folder needs pytest's walk (a conftest.py, a doctest file, a file that
is not served, another collector, a link, an argument) the folder is walked
and the outcomes are pytest's own."""

from __future__ import annotations

import re

import pytest
from conftest import summary, write_files

# Names the folders pytest walked (each gives a collect report), at the end of the run.
RECORDER = (
    "WALKED = []\n"
    "def pytest_collectreport(report):\n"
    "    if report.nodeid.startswith('tests') and '.' not in report.nodeid.rsplit('/')[-1]:\n"
    "        WALKED.append(report.nodeid)\n"
    "def pytest_terminal_summary(terminalreporter):\n"
    "    terminalreporter.write_line('WALKED: ' + ','.join(sorted(WALKED)))\n"
)

LAYOUT = {
    "pytest.ini": "[pytest]\nnorecursedirs = build .*\n",
    "tests/conftest.py": RECORDER,
    "tests/unit/test_a.py": "def test_one():\n    pass\n\ndef test_two():\n    pass\n",
    "tests/unit/deep/test_b.py": "def test_b():\n    pass\n",
    "tests/unit/deep/data.json": "{}\n",
    # norecursedirs: pytest never enters it, nor may a served folder.
    "tests/unit/build/test_never.py": "def test_never():\n    assert False\n",
    "tests/other/test_c.py": "def test_c():\n    pass\n",
}


@pytest.fixture
def layout(pytester: pytest.Pytester) -> pytest.Pytester:
    write_files(pytester, LAYOUT)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def walked(result: pytest.RunResult) -> set[str]:
    match = re.search(r"^WALKED: (.*)$", result.stdout.str(), re.MULTILINE)
    assert match, result.stdout.str()
    return set(filter(None, match.group(1).split(",")))


def test_a_cached_run_walks_no_folder_whose_files_it_all_serves(layout):
    first = run(layout)
    first.assert_outcomes(passed=4)
    assert walked(first) == {"tests", "tests/unit", "tests/unit/deep", "tests/other"}
    second = run(layout)
    second.assert_outcomes(skipped=4)
    assert summary(second)["cached"] == 4
    assert walked(second) == {"tests"}


@pytest.mark.parametrize(
    ("option", "served"),
    [
        ("--ignore=tests/unit/deep/test_b.py", 3),
        ("--ignore-glob=*/other/*", 3),
        ("--ignore=tests/unit", 1),
    ],
)
def test_ignored_files_inside_a_served_folder_are_not_served(layout, option, served):
    run(layout).assert_outcomes(passed=4)
    result = run(layout, option)
    result.assert_outcomes(skipped=served)
    assert summary(result)["cached"] == served


@pytest.mark.parametrize(
    "setting",
    [
        "collect_ignore = ['unit/deep/test_b.py']",
        "collect_ignore = ['unit/deep']",
        "collect_ignore_glob = ['*/deep/test_*.py']",
    ],
)
def test_collect_ignore_of_a_conftest_above_holds_inside_a_served_folder(layout, setting):
    layout.path.joinpath("tests/conftest.py").write_text(RECORDER + setting + "\n")
    run(layout).assert_outcomes(passed=3)
    result = run(layout)
    result.assert_outcomes(skipped=3)
    assert walked(result) == {"tests"}


@pytest.mark.parametrize(
    ("path", "text", "walked_folders", "outcomes"),
    [
        # a conftest.py below: walked, so that its hooks still run
        (
            "tests/other/conftest.py",
            "def pytest_terminal_summary(terminalreporter):\n"
            "    terminalreporter.write_line('OTHER CONFTEST LOADED')\n",
            {"tests", "tests/other"},
            {"skipped": 4},
        ),
        # a file pytest's doctest plugin collects (and DryCI serves once collected)
        (
            "tests/unit/deep/test_notes.txt",
            ">>> 1 + 1\n2\n",
            {"tests", "tests/unit", "tests/unit/deep"},
            {"skipped": 5},
        ),
        # a test file with a test that fails is never served: it runs
        (
            "tests/unit/deep/test_fails.py",
            "def test_fails():\n    assert False\n",
            {"tests", "tests/unit", "tests/unit/deep"},
            {"skipped": 4, "failed": 1},
        ),
    ],
)
def test_a_folder_with_something_pytest_must_see_is_walked(
    layout, path, text, walked_folders, outcomes
):
    target = layout.path / path
    target.write_text(text)
    run(layout)
    result = run(layout)
    result.assert_outcomes(**outcomes)
    assert walked(result) == walked_folders
    if path.endswith("conftest.py"):
        result.stdout.fnmatch_lines(["OTHER CONFTEST LOADED"])


def test_a_plugin_that_collects_files_its_own_way_keeps_every_folder_walked(layout):
    layout.path.joinpath("tests/conftest.py").write_text(
        RECORDER + "import pytest\n"
        "class CheckItem(pytest.Item):\n"
        "    def runtest(self):\n"
        "        assert self.path.read_text() == 'ok\\n'\n"
        "def pytest_collect_file(file_path, parent):\n"
        "    if file_path.suffix == '.check':\n"
        "        return CheckItem.from_parent(parent, name=file_path.name, path=file_path)\n"
    )
    layout.path.joinpath("tests/unit/deep/c.check").write_text("ok\n")
    run(layout).assert_outcomes(passed=5)
    layout.path.joinpath("tests/unit/deep/c.check").write_text("broken\n")
    result = run(layout)
    result.assert_outcomes(skipped=4, failed=1)
    assert "tests/unit/deep" in walked(result)


def test_a_linked_folder_is_walked_as_pytest_walks_it(layout):
    outside = layout.path / "build" / "shared"  # norecursedirs: reached through the link only
    outside.mkdir(parents=True)
    (outside / "test_shared.py").write_text("def test_shared():\n    pass\n")
    (layout.path / "tests/unit/linked").symlink_to(outside)
    first = run(layout)
    first.assert_outcomes(passed=5)
    result = run(layout)
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) + outcomes.get("passed", 0) == 5
    assert outcomes.get("failed", 0) == 0
    assert "tests/unit" in walked(result)


def test_a_file_named_on_the_command_line_keeps_its_folders_walked(layout):
    run(layout).assert_outcomes(passed=4)
    result = run(layout, "tests", "tests/unit/deep/test_b.py")
    result.assert_outcomes(skipped=4)
    assert {"tests/unit", "tests/unit/deep"} <= walked(result)
    assert "tests/other" not in walked(result)


def test_under_xdist_workers_serve_folders_with_the_same_outcomes(layout):
    run(layout).assert_outcomes(passed=4)
    layout.path.joinpath("tests/other/test_c.py").write_text(
        "def test_c():\n    pass\n\ndef test_d():\n    pass\n"
    )
    result = run(layout, "-n", "2")
    result.assert_outcomes(skipped=3, passed=2)
