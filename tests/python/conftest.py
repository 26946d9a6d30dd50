"""Fixtures for the plugin's end-to-end tests: small real projects written
into pytester's folder and run with `pytest --dryci` in a subprocess."""

from __future__ import annotations

import re

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
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for path, text in PROJECT.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
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
