"""Selecting from records without collecting (issue 12): under -k, -m and
node-id arguments, a file whose collection was recorded under its current
key is not imported; its tests are selected from the record with pytest's
own matching, the selected ones served, the others deselected. Every case
is pinned against the same run without elision (`-o
dryci_skip_collection=false`) and against plain pytest: the same tests selected, the same counts,
and the files that were answered from records never imported."""

from __future__ import annotations

import json
import re

import pytest

# Put at the top of each test file: every import of it adds its name to imports.log.
IMPORT_SPY = """\
import pathlib as _pathlib
with open(_pathlib.Path(__file__).parent / "imports.log", "a") as _log:
    _log.write(_pathlib.Path(__file__).name + "\\n")
"""

FILES = {
    "test_marks.py": IMPORT_SPY
    + """
import pytest

pytestmark = pytest.mark.area(name="core")

@pytest.mark.slow
def test_slow(): pass

def test_plain(): pass

@pytest.mark.level(n=1)
def test_level_one(): pass

@pytest.mark.level(n=2, tag="deep")
def test_level_two(): pass

class TestGroup:
    @pytest.mark.parametrize("v", [1, 2], ids=["alpha", "beta"])
    def test_param(self, v): pass

    @pytest.mark.slow
    def test_in_class(self): pass

def test_attribute(): pass
test_attribute.nightly = True

@pytest.mark.opaque(obj=object())
def test_opaque(): pass
""",
    "test_other.py": IMPORT_SPY
    + """
import pytest

def test_alpha(): pass

@pytest.mark.stress
def test_stress(): pass
""",
    "test_stress_only.py": IMPORT_SPY
    + """
import pytest

pytestmark = pytest.mark.stress

def test_load(): pass

def test_soak(): pass
""",
    "pytest.ini": (
        "[pytest]\nmarkers =\n    slow\n    level\n    area\n    stress\n    opaque\n"
        "addopts = -p no:cacheprovider -p no:randomly\n"
    ),
}

ALL_FILES = ["test_marks.py", "test_other.py", "test_stress_only.py"]

# A conftest that adds a marker to some tests at collection: a record
# cannot know it, so -m must collect.
MARKING_CONFTEST = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if "plain" in item.name or "alpha" in item.name:
            item.add_marker(pytest.mark.slow)
"""

# A -v line: "<node id> PASSED ...", or "[gw0] [ 50%] PASSED <node id>" under xdist.
OUTCOME = re.compile(
    r"^(?:\[gw\d+\] \[\s*\d+%\] (?P<xdist>[A-Z]+) (?P<xid>\S+)"
    r"|(?P<id>\S+::\S+) (?P<outcome>[A-Z]+))"
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for path, text in FILES.items():
        pytester.path.joinpath(path).write_text(text)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-v", *args)


def without_elision(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The same run with every file collected (an `-o` of DryCI's own ini
    values leaves the keys as they are)."""
    return run(project, "-o", "dryci_skip_collection=false", "--dryci-no-publish", *args)


def plain(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-v", *args)


def imports(project: pytest.Pytester) -> list[str]:
    """The spied test files imported since the last call, sorted."""
    log = project.path / "imports.log"
    if not log.exists():
        return []
    names = sorted(log.read_text().split())
    log.unlink()
    return names


def reported(result: pytest.RunResult) -> dict[str, str]:
    """node id -> outcome word, from -v output (serial or xdist)."""
    found = {}
    for line in result.outlines:
        match = OUTCOME.match(line)
        if match:
            node_id = match.group("xid") or match.group("id")
            found[node_id] = match.group("xdist") or match.group("outcome")
    return found


def collected_line(result: pytest.RunResult) -> str:
    for line in result.outlines:
        if line.startswith(("collected ", "collecting ... collected ")):
            return line.replace("collecting ... ", "")
    return ""


def from_records(result: pytest.RunResult) -> int:
    """The summary's count of tests deselected from records (item 4)."""
    match = re.search(r"dryci: (\d+) tests deselected from records", result.stdout.str())
    return int(match.group(1)) if match else 0


def recorded(project: pytest.Pytester) -> None:
    """The first run: every file collected whole and recorded."""
    run(project).assert_outcomes(passed=13)
    assert imports(project) == ALL_FILES


def assert_same_selection(
    elided: pytest.RunResult, collected: pytest.RunResult, baseline: pytest.RunResult
) -> None:
    assert elided.ret == collected.ret == baseline.ret
    # The -v lines hold every test that ran (or would have): pytest's own count.
    assert len(reported(baseline)) == baseline.parseoutcomes().get("passed", 0)
    assert reported(elided) == reported(collected)
    assert set(reported(elided)) == set(reported(baseline))
    assert elided.parseoutcomes() == collected.parseoutcomes()
    deselected = baseline.parseoutcomes().get("deselected", 0)
    assert elided.parseoutcomes().get("deselected", 0) == deselected
    assert collected_line(elided) == collected_line(collected) == collected_line(baseline)


@pytest.mark.parametrize(
    "selection",
    [
        ["-m", "slow"],
        ["-m", "not slow and not stress"],
        ["-m", "level(n=2)"],
        ["-m", 'level(tag="deep") or (stress and not area)'],
        ["-m", "area(name='core') and not level(n=1)"],
        ["-m", "opaque"],
        ["-k", "TestGroup"],
        ["-k", "alpha or soak"],
        ["-k", "not plain and not Group and not other"],
        ["-k", "nightly"],
        ["-k", "test_stress_only.py"],
        ["-k", "Group", "-m", "slow"],
    ],
    ids=lambda args: " ".join(args),
)
def test_a_selection_from_records_is_pytests_selection(project, selection):
    recorded(project)
    elided = run(project, *selection)
    assert imports(project) == [], "every file is answered from its record"
    served = elided.parseoutcomes().get("skipped", 0)
    assert from_records(elided) == elided.parseoutcomes().get("deselected", 0)
    assert f"dryci: {served} tests served from the cache" in elided.stdout.str()
    collected = without_elision(project, *selection)
    assert imports(project) == ALL_FILES
    assert_same_selection(elided, collected, plain(project, *selection))


def test_a_marker_argument_the_record_could_not_keep_collects_its_file(project):
    recorded(project)
    selection = ("-m", "opaque(obj=1) or slow")
    elided = run(project, *selection)
    # object() was not recorded: only test_marks.py needs collecting.
    assert imports(project) == ["test_marks.py"]
    assert from_records(elided) == 4  # test_other.py's and test_stress_only.py's
    collected = without_elision(project, *selection)
    imports(project)
    assert_same_selection(elided, collected, plain(project, *selection))


def test_records_written_under_m_serve_the_next_run_under_it(project):
    """A suite whose addopts deselect its stress tests: the first run
    records every file, with what it deselected; the next imports none."""
    selection = ("-m", "not stress")
    first = run(project, *selection)
    first.assert_outcomes(passed=10, deselected=3)
    assert imports(project) == ALL_FILES
    second = run(project, *selection)
    second.assert_outcomes(skipped=10, deselected=3)
    assert imports(project) == []
    assert from_records(second) == 3
    # Without -m the stress tests never ran: their files are collected.
    everything = run(project)
    everything.assert_outcomes(passed=3, skipped=10)
    assert imports(project) == ["test_other.py", "test_stress_only.py"]


def test_a_conftest_that_marks_items_at_collection_forces_collection(project):
    project.makeconftest(MARKING_CONFTEST)
    run(project).assert_outcomes(passed=13)
    imports(project)
    selection = ("-m", "slow")
    result = run(project, *selection)
    assert imports(project) == ALL_FILES
    result.stdout.fnmatch_lines(
        ["dryci: -k, -m and node ids need collection here: pytest_collection_modifyitems in *"]
    )
    collected = without_elision(project, *selection)
    imports(project)
    baseline = plain(project, *selection)
    assert_same_selection(result, collected, baseline)
    assert "test_marks.py::test_plain" in reported(baseline)


def test_a_conftest_loaded_only_during_collection_forces_collection(project):
    """A conftest in a folder pytest reaches only while collecting, added
    after the records were made: its text is read before deciding."""
    recorded(project)
    later = project.path / "later"
    later.mkdir()
    (later / "conftest.py").write_text(MARKING_CONFTEST)
    (later / "test_later.py").write_text("def test_later(): pass\n")
    selection = ("-m", "slow")
    result = run(project, *selection)
    assert imports(project) == ALL_FILES
    result.stdout.fnmatch_lines(
        ["dryci: -k, -m and node ids need collection here: *later/conftest.py"]
    )
    baseline = plain(project, *selection)
    assert set(reported(result)) == set(reported(baseline))
    assert "test_other.py::test_alpha" in reported(baseline)
    assert result.parseoutcomes()["deselected"] == baseline.parseoutcomes()["deselected"]


@pytest.mark.parametrize(
    "arguments",
    [
        ["test_marks.py::TestGroup"],
        ["test_marks.py::TestGroup::test_param[beta]", "test_other.py::test_alpha"],
        ["test_marks.py::TestGroup::test_param", "-k", "alpha"],
        ["test_marks.py::TestGroup", "test_marks.py", "-m", "not slow"],
        ["test_marks.py::test_missing"],
    ],
    ids=lambda args: " ".join(args),
)
def test_node_id_arguments_select_from_records(project, arguments):
    recorded(project)
    elided = run(project, *arguments)
    if elided.ret == pytest.ExitCode.USAGE_ERROR:
        elided.stderr.fnmatch_lines(["ERROR: not found: *test_marks.py::test_missing"])
    else:
        assert imports(project) == []
    collected = without_elision(project, *arguments)
    imports(project)
    assert_same_selection(elided, collected, plain(project, *arguments))


def test_xdist_selects_from_records_like_a_serial_run(project):
    recorded(project)
    selection = ("-m", "not slow", "test_marks.py::TestGroup", "test_other.py")
    serial = run(project, *selection)
    distributed = run(project, "-n", "2", *selection)
    # Everything is answered from records: no worker starts, as in a serial run.
    assert imports(project) == []
    assert reported(distributed) == reported(serial)
    assert distributed.parseoutcomes() == serial.parseoutcomes() == {"skipped": 4, "deselected": 1}
    # test_other.py changed: the workers collect it, test_marks.py is still
    # answered from its record (its node id rewritten to the file on each worker).
    project.path.joinpath("test_other.py").write_text(
        FILES["test_other.py"] + "\ndef test_new(): pass\n"
    )
    distributed = run(project, "-n", "2", "--dryci-no-publish", *selection)
    assert imports(project) == ["test_other.py", "test_other.py"]
    serial = run(project, "--dryci-no-publish", *selection)
    assert imports(project) == ["test_other.py"]
    assert reported(distributed) == reported(serial)
    assert from_records(distributed) == from_records(serial) == 1
    # pytest-xdist's controller shows no count of what its workers deselected.
    assert distributed.parseoutcomes() == {"passed": 3, "skipped": 2}
    assert serial.parseoutcomes() == {"passed": 3, "skipped": 2, "deselected": 1}


HYPOTHESIS_FILE = (
    IMPORT_SPY
    + """
from hypothesis import given, strategies as st

@given(st.integers())
def test_property(n):
    assert n == n

def test_example():
    pass
"""
)


@pytest.mark.parametrize("selection", [["-m", "hypothesis"], ["-m", "not hypothesis"]])
def test_hypothesis_marks_are_in_the_record(pytester, selection):
    """Hypothesis's plugin marks its tests `hypothesis` at collection: the
    record has that marker, so `-m hypothesis` still elides the file."""
    pytest.importorskip("hypothesis")
    pytester.path.joinpath("test_props.py").write_text(HYPOTHESIS_FILE)
    run(pytester).assert_outcomes(passed=2)
    assert imports(pytester) == ["test_props.py"]
    elided = run(pytester, *selection)
    assert imports(pytester) == [], elided.stdout.str()
    baseline = plain(pytester, *selection)
    assert set(reported(elided)) == set(reported(baseline))
    assert elided.parseoutcomes().get("deselected") == baseline.parseoutcomes().get("deselected")


# -- reading a record for -m alone (in-process) -----------------------------------------


def _record(names: list[str], marks: list, items: list, **dumps) -> str:
    record = {"v": 1, "names": names, "marks": marks, "items": items}
    return json.dumps(record, **({"separators": (",", ":")} | dumps))


# Names that hold the keys' text, marker arguments named like the keys, an
# argument the record could not keep, the same markers in two orders.
TRICKY = _record(
    ['a,"marks":[', 'b"],"items":[[[0],[1]]]', 'test_x[,"items":[]'],
    [
        ["slow", {}],
        ["level", {"n": 1, "items": "[[", "marks": True}],
        ["level", {"n": 2.0}],
        ["opaque", {"obj": {"?": "object"}}],
        ["stress", {}],
    ],
    [
        [[0, 1], []],
        [[0], [0]],
        [[1, 2], [1, 0]],
        [[2], [0, 1]],
        [[0], [2, 4]],
        [[1], [3]],
        [[2], [4]],
    ],
)


@pytest.mark.parametrize(
    "expression",
    [
        "stress",
        "not stress",
        "slow and not stress",
        "level(n=1)",
        "level(n=2) or slow",
        "level(items='[[')",
        "level(marks=True) and slow",
        "opaque",
        "opaque(obj=1)",
        "not opaque(obj=1) or stress",
    ],
)
def test_marks_read_alone_answer_as_the_whole_record(expression: str):
    from _pytest.mark.expression import Expression
    from pytest_dryci import selection

    api = selection._pytest_api()
    assert api is not None
    compiled = Expression.compile(expression)
    assert selection._read_marks_only(TRICKY, 7) is not None  # the fast reading applies

    def answers(text: str, names: bool, shared: dict) -> list | str:
        decoded = selection._Decoded(api, text, 7, shared, names)
        try:
            if names:
                return [decoded.mark_match(i, compiled) for i in range(7)]
            return decoded.mark_keeps(compiled)
        except selection.CannotAnswer:
            return "cannot answer"

    whole = answers(TRICKY, True, {})
    assert answers(TRICKY, False, {}) == whole
    # A record in another layout (spaces) is decoded whole, to the same answers.
    spaced = _record(*(json.loads(TRICKY)[key] for key in ("names", "marks", "items")), indent=1)
    assert selection._read_marks_only(spaced, 7) is None
    assert answers(spaced, False, {}) == whole
    # Answers shared across files by what the markers are: a second file
    # with the same markers at other indexes answers the same.
    shared: dict = {}
    answers(TRICKY, False, shared)
    record = json.loads(TRICKY)
    moved = _record(
        record["names"],
        record["marks"][::-1],
        [[kw, [4 - i for i in marks]] for kw, marks in record["items"]],
    )
    assert answers(moved, False, shared) == whole
    assert answers(moved, False, {}) == whole


def test_records_as_written_are_read_marks_alone(pytester: pytest.Pytester):
    from pytest_dryci import selection

    pytester.makeini("[pytest]\nmarkers = level\n")
    items = pytester.getitems(
        "import pytest\n@pytest.mark.level(n=1)\ndef test_a(): pass\ndef test_b(): pass\n"
    )
    text = selection.encode_matchers(items)
    assert selection._read_marks_only(text, 2) == ('[["level",{"n":1}]]', ["0", ""])
