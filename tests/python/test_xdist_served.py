"""Under pytest-xdist, a run in which every test will be served starts no
worker: the controller serves them all, as a serial run would."""

from __future__ import annotations

import pytest
from conftest import summary

# Every worker that starts leaves a file named after it.
WORKER_MARKER = """
def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        open("worker-started-" + workerinput["workerid"], "w").close()
"""


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", *args)


def workers_started(project: pytest.Pytester) -> list[str]:
    started = sorted(p.name for p in project.path.glob("worker-started-*"))
    for path in project.path.glob("worker-started-*"):
        path.unlink()
    return started


@pytest.fixture
def marked(project: pytest.Pytester) -> pytest.Pytester:
    (project.path / "conftest.py").write_text(WORKER_MARKER)
    return project


@pytest.mark.parametrize("workers", ["2", "auto"])
def test_all_served_starts_no_worker(marked, workers):
    run(marked, "-n", workers).assert_outcomes(passed=6)
    assert workers_started(marked)  # the first run distributes
    result = run(marked, "-n", workers, "--junitxml=report.xml")
    result.assert_outcomes(skipped=6)
    assert result.ret == 0
    assert workers_started(marked) == []
    assert summary(result) == {"ran": 0, "cached": 6, "published": 0}
    junit = (marked.path / "report.xml").read_text()
    assert junit.count("<testcase ") == 6


def test_partly_served_still_distributes(marked):
    run(marked, "-n", "2").assert_outcomes(passed=6)
    workers_started(marked)
    (marked.path / "app/strings.py").write_text("def shout(s):\n    return s.upper() + '!'  # v2\n")
    result = run(marked, "-n", "2")
    result.assert_outcomes(passed=1, skipped=5)
    assert len(workers_started(marked)) == 2
