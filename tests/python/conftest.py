"""Fixtures for the plugin's end-to-end tests: small real projects written
into pytester's folder and run with `pytest --dryci` in a subprocess, and
the real `dryci server` on a loopback port."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DRYCI_ENV = ("DRYCI_TOKEN", "DRYCI_SERVER", "DRYCI_SALT", "DRYCI_TIMEOUT")

PROJECT = {
    "app/__init__.py": "",
    "app/core.py": "def add(a, b):\n    return a + b\n",
    "app/strings.py": "def shout(s):\n    return s.upper() + '!'\n",
    "app/data.py": (
        "import json, pathlib\n"
        "def limits():\n"
        "    return json.loads((pathlib.Path(__file__).parent / 'limits.json').read_text())\n"
    ),
    "app/limits.json": '{"max": 3}\n',
    "tests/conftest.py": "",
    "tests/test_core.py": (
        "import pytest\nfrom app.core import add\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n"
        "@pytest.mark.parametrize('n', [1, 2, 3])\n"
        "def test_add_zero(n):\n    assert add(n, 0) == n\n"
    ),
    "tests/test_strings.py": (
        "from app.strings import shout\n\n"
        "class TestShout:\n"
        "    def test_shout(self):\n        assert shout('hi') == 'HI!'\n"
    ),
    "tests/test_data.py": (
        "from app.data import limits\n\ndef test_max():\n    assert limits()['max'] == 3\n"
    ),
    "repo_dagger.yaml": (
        "root_python_packages: [app, tests]\n"
        "path_rules:\n"
        "  '**/*.py':\n"
        "    visit_imported_python_modules: true\n"
        "    visit_grand_siblings: [conftest.py, __init__.py]\n"
        "  'app/data.py':\n"
        "    visit_siblings: limits.json\n"
    ),
}


# What a machine that only has a v1 server gets of PROJECT's passes: all but
# test_data's, which reads app/limits.json at run time. A pass recorded with
# observed inputs goes only to a server that keeps its requirement set
# (`dryci server`, v2): a v1 server could not have it checked.
FROM_V1_SERVER_ONLY = {"skipped": 5, "passed": 1}


@pytest.fixture(autouse=True)
def clean_dryci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DRYCI_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own, with schemathesis' pytest plugin (installed for
    test_openapi_conformance.py, which runs its CLI) kept out of the pytest
    runs it starts: loading it took 0.8 s of every run (1.8 s against 1.1 s
    for one trivial test), and these tests start about 140 of them. Set
    here, after pytester has cleared PYTEST_ADDOPTS for its runs."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:schemathesis")
    return pytester


def write_files(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    """Writes `files` (path relative to pytester's folder -> text), with their folders."""
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_files(pytester, PROJECT)
    return pytester


def summary(result: pytest.RunResult) -> dict[str, int]:
    """The dryci summary lines as numbers: ran, cached, published."""
    text = result.stdout.str()
    numbers = {}
    for key, pattern in {
        "ran": r"dryci: (\d+) tests ran",
        "cached": r"dryci: (\d+) tests served from the cache",
        "published": r"dryci: (\d+) passes published",
    }.items():
        match = re.search(pattern, text)
        numbers[key] = int(match.group(1)) if match else -1
    return numbers


@pytest.fixture
def server(tmp_path: Path):
    """The real `dryci server` on a temporary SQLite file and a loopback
    port, started from the installed package the way a team would; yields
    its URL, the initial admin token and a runner of `dryci admin`."""
    db = tmp_path / "server.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_dryci",
            "server",
            "--db",
            str(db),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    token = url = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := re.search(r"initial admin token.*: (dryci-\S+)", line):
            token = match.group(1)
        if match := re.search(r"listening on (http://\S+)", line):
            url = match.group(1)
            break
    assert token and url, "the server did not start"

    def admin(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_dryci", "admin", "--db", str(db), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    yield url, token, admin
    proc.terminate()
    proc.wait(timeout=30)
