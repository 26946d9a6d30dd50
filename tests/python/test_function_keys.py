"""Function-level keys (`--dryci-precision=function`) on a package whose
`__init__` imports every module, so that every test's static closure is the
whole package: each edit below makes a test fail, and that test must run;
an edit of one function's body runs only the tests that ran it, and an edit
of a function no test runs runs nothing."""

from __future__ import annotations

import sys

import pytest
from test_observed_inputs import edit, ran

PROJECT = {
    "lib/__init__.py": (
        "from . import core, memo, cached, registry, shapes, util, deco, gen, names, work, scoped\n"
    ),
    "lib/core.py": (
        "def double(x):\n    return helper(x) * 2\n\n"
        "def helper(x):\n    return deep(x)\n\n"
        "def deep(x):\n    return x\n\n"
        "def untouched():\n    return 'nobody runs me'\n\n"
        "def triple(x):\n"
        '    """\n    >>> triple(2)\n    6\n    """\n'
        "    return 3 * x\n"
    ),
    "lib/memo.py": (
        "_CACHE = {}\n\n"
        "def lookup(key):\n"
        "    if key not in _CACHE:\n"
        "        _CACHE[key] = compute(key)\n"
        "    return _CACHE[key]\n\n"
        "def compute(key):\n    return key * 10\n"
    ),
    "lib/cached.py": (
        "import functools\n\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def table():\n    return build()\n\n"
        "def build():\n    return {'apple': 3}\n\n"
        "def price(name):\n    return table()[name]\n"
    ),
    "lib/registry.py": (
        "class Registry:\n"
        "    _cache = {}\n\n"
        "    @classmethod\n"
        "    def get(cls, key):\n"
        "        if key not in cls._cache:\n"
        "            cls._cache[key] = cls.make(key)\n"
        "        return cls._cache[key]\n\n"
        "    @classmethod\n"
        "    def make(cls, key):\n        return key + 1\n"
    ),
    "lib/util.py": (
        "def count_sides():\n    return 4\n\ndef load_settings():\n    return {'level': 1}\n"
    ),
    "lib/shapes.py": (
        "from .util import count_sides\n\nSIDES = count_sides()\n\n"
        "class Square:\n    corners = 4\n\n"
        "class Box:\n"
        "    def __init__(self, side):\n        self.side = side\n\n"
        "    @property\n"
        "    def area(self):\n        return self.side * self.side\n\n"
        "def count(n):\n    for i in range(n):\n        yield i\n\n"
        "async def fetch():\n    return 'data'\n"
    ),
    "lib/deco.py": (
        "def traced(function):\n"
        "    def wrapper(*args, **kwargs):\n"
        "        return function(*args, **kwargs)\n"
        "    return wrapper\n\n"
        "@traced\n"
        "def greet(name='world'):\n    return 'hello ' + name\n"
    ),
    "lib/gen.py": (
        "def make_init(fields):\n"
        "    lines = ['def __init__(self, ' + ', '.join(fields) + '):']\n"
        "    lines += ['    self.%s = %s' % (f, f) for f in fields]\n"
        "    namespace = {}\n"
        "    exec('\\n'.join(lines), namespace)\n"
        "    return namespace['__init__']\n\n"
        "class Point:\n    __init__ = make_init(['x', 'y'])\n"
    ),
    "lib/names.py": (
        "class Cat:\n    def name(self):\n        return 'cat'\n\n"
        "class Dog:\n    def name(self):\n        return 'dog'\n"
    ),
    "lib/work.py": "def work(out):\n    out.append(42)\n",
    "lib/scoped.py": (
        "def module_value():\n    return 'module'\n\ndef class_value():\n    return 'class'\n"
    ),
    # The second test of each scope uses a fixture value set up for the first.
    "tests/test_scoped.py": (
        "import pytest\nfrom lib.scoped import module_value, class_value\n\n"
        "@pytest.fixture(scope='module')\n"
        "def per_module():\n    return module_value()\n\n"
        "def test_module_first(per_module):\n    assert per_module == 'module'\n\n"
        "def test_module_second(per_module):\n    assert per_module == 'module'\n\n"
        "class TestScoped:\n"
        "    @pytest.fixture(scope='class')\n"
        "    def per_class(self):\n        return class_value()\n\n"
        "    def test_class_first(self, per_class):\n        assert per_class == 'class'\n\n"
        "    def test_class_second(self, per_class):\n        assert per_class == 'class'\n"
    ),
    "tests/conftest.py": (
        "import pytest\nfrom lib.util import load_settings\n\n"
        "@pytest.fixture(scope='session')\n"
        "def settings():\n    return load_settings()\n"
    ),
    "tests/test_a_first.py": (
        "from lib.memo import lookup\nfrom lib.cached import price\n"
        "from lib.registry import Registry\n\n"
        "def test_fills_the_caches():\n"
        "    assert lookup(1) == 10\n"
        "    assert price('apple') == 3\n"
        "    assert Registry.get(1) == 2\n"
    ),
    "tests/test_b_later.py": (
        "from lib.memo import lookup\nfrom lib.cached import price\n"
        "from lib.registry import Registry\n\n"
        "def test_memo_hit():\n    assert lookup(1) == 10\n\n"
        "def test_lru_hit():\n    assert price('apple') == 3\n\n"
        "def test_class_cache_hit():\n    assert Registry.get(1) == 2\n\n"
        "def test_lru_direct_hit():\n"
        "    from lib.cached import table\n"
        "    assert table()['apple'] == 3\n"
    ),
    "tests/test_core.py": (
        "import threading\nimport lib\nfrom lib import core\n\n"
        "def test_double():\n    assert core.double(2) == 4\n\n"
        "def test_monkeypatched(monkeypatch):\n"
        "    monkeypatch.setattr(core, 'deep', lambda x: 5)\n"
        "    assert core.helper(1) == 5\n\n"
        "def test_thread():\n"
        "    out = []\n"
        "    thread = threading.Thread(target=lib.work.work, args=(out,))\n"
        "    thread.start()\n    thread.join()\n"
        "    assert out == [42]\n"
    ),
    "tests/test_misc.py": (
        "from lib.shapes import SIDES, Square\nfrom lib.deco import greet\n"
        "from lib.gen import Point\nfrom lib.names import Cat, Dog\n\n"
        "def test_sides():\n    assert SIDES == 4\n\n"
        "def test_corners():\n    assert Square.corners == 4\n\n"
        "def test_greet():\n    assert greet() == 'hello world'\n\n"
        "def test_point():\n    assert Point(1, 2).y == 2\n\n"
        "def test_cat():\n    assert Cat().name() == 'cat'\n\n"
        "def test_dog():\n    assert Dog().name() == 'dog'\n\n"
        "def test_settings(settings):\n    assert settings['level'] == 1\n\n"
        "def test_property():\n"
        "    from lib.shapes import Box\n    assert Box(2).area == 4\n\n"
        "def test_generator():\n"
        "    from lib.shapes import count\n    assert list(count(3)) == [0, 1, 2]\n\n"
        "def test_coroutine():\n"
        "    import asyncio\n    from lib.shapes import fetch\n"
        "    assert asyncio.run(fetch()) == 'data'\n"
    ),
}
ALL_TESTS = 23  # with the doctest of lib/core.py


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write(pytester, PROJECT)
    pytester.makeini("[pytest]\naddopts = --doctest-modules\ntestpaths = tests lib\n")
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In file order (no pytest-randomly): test_a_first fills the caches that
    # test_b_later only looks up.
    return project.runpytest_subprocess(
        "--dryci",
        "--dryci-precision=function",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-rA",
        *args,
    )


def recorded(project: pytest.Pytester) -> None:
    """A first run records every test; a second serves them all."""
    first = run(project)
    first.assert_outcomes(passed=ALL_TESTS)
    again = run(project)
    again.assert_outcomes(skipped=ALL_TESTS)


def replace(project: pytest.Pytester, path: str, old: str, new: str) -> None:
    text = (project.path / path).read_text()
    assert old in text, (path, old)
    edit(project, path, text.replace(old, new))


# (file, text, replacement, the test the edit breaks)
BREAKING_EDITS = [
    ("lib/core.py", "return x\n", "return x + 1\n", "tests/test_core.py::test_double"),
    # the callee of a callee of a monkeypatched function's caller
    (
        "lib/core.py",
        "return deep(x)",
        "return deep(x) + 1",
        "tests/test_core.py::test_monkeypatched",
    ),
    # memoised by an earlier test in another file
    ("lib/memo.py", "return key * 10", "return key * 11", "tests/test_b_later.py::test_memo_hit"),
    ("lib/cached.py", "{'apple': 3}", "{'apple': 4}", "tests/test_b_later.py::test_lru_hit"),
    # an lru_cache'd function called directly, filled by an earlier test
    (
        "lib/cached.py",
        "{'apple': 3}",
        "{'apple': 4}",
        "tests/test_b_later.py::test_lru_direct_hit",
    ),
    (
        "lib/registry.py",
        "return key + 1",
        "return key + 2",
        "tests/test_b_later.py::test_class_cache_hit",
    ),
    # a session-scoped fixture
    ("lib/util.py", "{'level': 1}", "{'level': 2}", "tests/test_misc.py::test_settings"),
    # module- and class-scoped fixtures, for a test that did not set them up
    ("lib/scoped.py", "'module'", "'mod'", "tests/test_scoped.py::test_module_second"),
    (
        "lib/scoped.py",
        "'class'",
        "'cls'",
        "tests/test_scoped.py::TestScoped::test_class_second",
    ),
    # import-time code and a class attribute
    ("lib/util.py", "return 4\n", "return 5\n", "tests/test_misc.py::test_sides"),
    ("lib/shapes.py", "corners = 4", "corners = 5", "tests/test_misc.py::test_corners"),
    # a decorator and a default value
    (
        "lib/deco.py",
        "return function(*args, **kwargs)",
        "return function(*args, **kwargs) + '!'",
        "tests/test_misc.py::test_greet",
    ),
    ("lib/deco.py", "name='world'", "name='you'", "tests/test_misc.py::test_greet"),
    # code generated with exec by a repository function at import
    (
        "lib/gen.py",
        "self.%s = %s' % (f, f)",
        "self.%s = -%s' % (f, f)",
        "tests/test_misc.py::test_point",
    ),
    # a property, a generator, a coroutine
    (
        "lib/shapes.py",
        "self.side * self.side",
        "self.side + 5",
        "tests/test_misc.py::test_property",
    ),
    ("lib/shapes.py", "yield i", "yield i + 1", "tests/test_misc.py::test_generator"),
    ("lib/shapes.py", "return 'data'", "return 'dat'", "tests/test_misc.py::test_coroutine"),
    # a method with the same name in two classes
    ("lib/names.py", "return 'dog'", "return 'wolf'", "tests/test_misc.py::test_dog"),
    # a thread started by a test
    ("lib/work.py", "out.append(42)", "out.append(43)", "tests/test_core.py::test_thread"),
    # a docstring under --doctest-modules
    ("lib/core.py", "    6\n", "    7\n", "lib/core.py::lib.core.triple"),
]


# The frame evaluator on CPython 3.11 ("auto"), the profile function elsewhere
# and on request: both must see every hazard.
FRAME_EVALUATOR = sys.version_info[:2] == (3, 11)
HOOKS = ["auto", "profile"]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize(("path", "old", "new", "broken"), BREAKING_EDITS)
def test_an_edit_that_breaks_a_test_makes_it_run(
    project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    hook: str,
    path: str,
    old: str,
    new: str,
    broken: str,
) -> None:
    monkeypatch.setenv("DRYCI_FUNCTION_HOOK", hook)
    recorded(project)
    replace(project, path, old, new)
    result = run(project)
    assert broken in ran(result), result.stdout.str()
    assert f"FAILED {broken}" in result.stdout.str()


def test_an_edit_of_one_method_runs_only_the_tests_that_ran_it(
    project: pytest.Pytester,
) -> None:
    recorded(project)
    replace(project, "lib/names.py", "return 'dog'", "return 'do' + 'g'")
    result = run(project)
    assert ran(result) == {"tests/test_misc.py::test_dog"}
    result.assert_outcomes(passed=1, skipped=ALL_TESTS - 1)


def test_an_edit_of_a_function_no_test_runs_runs_nothing(project: pytest.Pytester) -> None:
    recorded(project)
    replace(project, "lib/core.py", "'nobody runs me'", "'still nobody'")
    result = run(project)
    assert ran(result) == set()
    result.assert_outcomes(skipped=ALL_TESTS)


def test_file_precision_runs_every_test_after_the_same_edit(project: pytest.Pytester) -> None:
    file_level = ("--dryci", "--dryci-precision=file", "-p", "no:cacheprovider")
    recorded_file = project.runpytest_subprocess(*file_level)
    recorded_file.assert_outcomes(passed=ALL_TESTS)
    replace(project, "lib/core.py", "'nobody runs me'", "'still nobody'")
    result = project.runpytest_subprocess(*file_level)
    result.assert_outcomes(passed=ALL_TESTS)


def test_under_xdist_workers_record_and_the_controller_merges_their_calls(
    project: pytest.Pytester,
) -> None:
    # Without the doctest: an xdist controller does not collect, so it never
    # hashes a module it did not foresee as a test file.
    xdist = ("-n", "2", "-o", "addopts=")
    run(project, *xdist).assert_outcomes(passed=ALL_TESTS - 1)
    assert ran(run(project, *xdist)) == set()
    replace(project, "lib/names.py", "return 'dog'", "return 'do' + 'g'")
    assert ran(run(project, *xdist)) == {"tests/test_misc.py::test_dog"}
    # Whichever worker filled the cache, the test that only looks it up runs.
    replace(project, "lib/memo.py", "return key * 10", "return key * 11")
    result = run(project, *xdist)
    assert "FAILED tests/test_b_later.py::test_memo_hit" in result.stdout.str()
    assert "FAILED tests/test_a_first.py::test_fills_the_caches" in result.stdout.str()


SMALL = {
    "app/__init__.py": "from . import ops\n",
    "app/ops.py": "def inc(x):\n    return x + 1\n\ndef dec(x):\n    return x - 1\n",
    "tests/test_ops.py": (
        "import unittest\nimport pytest\nfrom app.ops import inc, dec\n\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_inc(x):\n    assert inc(x) == x + 1\n\n"
        "class TestDec(unittest.TestCase):\n"
        "    def test_dec(self):\n        self.assertEqual(dec(2), 1)\n"
    ),
}


def test_parametrised_and_unittest_tests_under_a_keyword_selection(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SMALL)
    run(pytester).assert_outcomes(passed=3)
    replace(pytester, "app/ops.py", "return x - 1", "return x - 2")
    # Selected from the records, without importing the test file: the
    # parametrised tests ran nothing that changed.
    selected = run(pytester, "-k", "inc")
    selected.assert_outcomes(skipped=2, deselected=1)
    broken = run(pytester)
    assert ran(broken) == {"tests/test_ops.py::TestDec::test_dec"}
    assert "FAILED tests/test_ops.py::TestDec::test_dec" in broken.stdout.str()
    replace(pytester, "app/ops.py", "return x + 1", "return x + 3")
    broken = run(pytester, "-k", "inc")
    broken.assert_outcomes(failed=2, deselected=1)


def test_a_test_that_starts_a_subprocess_depends_on_all_of_its_closure(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SMALL)
    (pytester.path / "tests/test_spawn.py").write_text(
        # The child's code is in the closure (reads by the child itself are
        # not seen); none of it runs in the test's own process.
        "import subprocess, sys\nimport app.ops\n\n"
        "def test_child():\n"
        "    code = 'from app.ops import dec; assert dec(2) == 1'\n"
        "    subprocess.run([sys.executable, '-c', code], check=True)\n"
    )
    run(pytester).assert_outcomes(passed=4)
    replace(pytester, "app/ops.py", "return x - 1", "return x - 2")
    result = run(pytester)
    assert "FAILED tests/test_spawn.py::test_child" in result.stdout.str()


def test_what_a_conftest_hook_ran_counts_for_every_test(pytester: pytest.Pytester) -> None:
    write(pytester, SMALL)
    (pytester.path / "app/settings.py").write_text(
        "LEVEL = 0\n\ndef configure():\n    global LEVEL\n    LEVEL = 1\n"
    )
    (pytester.path / "conftest.py").write_text(
        "import app.settings\n\ndef pytest_configure(config):\n    app.settings.configure()\n"
    )
    (pytester.path / "tests/test_level.py").write_text(
        "import app.settings\n\ndef test_level():\n    assert app.settings.LEVEL == 1\n"
    )
    run(pytester).assert_outcomes(passed=4)
    replace(pytester, "app/settings.py", "LEVEL = 1", "LEVEL = 2")
    result = run(pytester)
    assert "FAILED tests/test_level.py::test_level" in result.stdout.str()


def test_what_a_module_imported_by_name_ran_at_import_counts_for_each_test_loading_it(
    pytester: pytest.Pytester,
) -> None:
    loads = (
        "import importlib\nfrom app.registry import REGISTRY\n\n"
        "def test_loads():\n"
        "    importlib.import_module('app.plugins.' + 'csv')  # no static edge\n"
        "    assert REGISTRY['csv'] == 'Csv'\n"
    )
    write(
        pytester,
        {
            **SMALL,
            "app/registry.py": (
                "REGISTRY = {}\n\n"
                "def register(name):\n"
                "    def decorate(cls):\n"
                "        REGISTRY[name] = cls.__name__\n"
                "        return cls\n"
                "    return decorate\n"
            ),
            "app/plugins/__init__.py": "",
            "app/plugins/csv.py": (
                "from app.registry import register\n\n@register('csv')\nclass Csv:\n    pass\n"
            ),
            "tests/test_a_loads.py": loads,
            "tests/test_b_loads.py": loads,
        },
    )
    run(pytester).assert_outcomes(passed=5)
    replace(pytester, "app/registry.py", "= cls.__name__", "= cls.__name__.lower()")
    result = run(pytester)
    # The second test found the module imported already: nothing ran at its import.
    assert "FAILED tests/test_b_loads.py::test_loads" in result.stdout.str()


def test_without_observation_the_keys_stay_file_level_with_one_degraded_line(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SMALL)
    first = run(pytester, "-o", "dryci_observe=false")
    first.assert_outcomes(passed=3)
    degraded = [line for line in first.outlines if line.startswith("dryci: degraded:")]
    assert len(degraded) == 1 and "function-level keys need observation" in degraded[0]
    replace(pytester, "app/ops.py", "return x - 1", "return x - 1  # edited")
    # File-level keys: the edit of one function runs every test of the file again.
    run(pytester, "-o", "dryci_observe=false").assert_outcomes(passed=3)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_test_that_sets_its_own_profile_function_is_recorded_when_the_hook_survives_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    monkeypatch.setenv("DRYCI_FUNCTION_HOOK", hook)
    write(pytester, SMALL)
    (pytester.path / "tests/test_profiled.py").write_text(
        "import sys\nfrom app.ops import dec\n\n"
        "def test_profiled():\n"
        "    sys.setprofile(lambda *args: None)\n"
        "    try:\n        assert dec(2) == 1\n"
        "    finally:\n        sys.setprofile(None)\n"
    )
    run(pytester).assert_outcomes(passed=4)
    again = run(pytester)
    # The frame evaluator does not see it; a replaced profile function
    # leaves the test unrecorded: it runs every time, never served blind.
    if hook == "auto" and FRAME_EVALUATOR:
        again.assert_outcomes(skipped=4)
    else:
        again.assert_outcomes(passed=1, skipped=3)
        assert "tests/test_profiled.py::test_profiled" in ran(again)


def test_an_unknown_function_hook_degrades_to_file_level_keys_with_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRYCI_FUNCTION_HOOK", "sampling")
    write(pytester, SMALL)
    first = run(pytester)
    first.assert_outcomes(passed=3)
    degraded = [line for line in first.outlines if line.startswith("dryci: degraded:")]
    assert len(degraded) == 1 and "DRYCI_FUNCTION_HOOK='sampling'" in degraded[0], degraded
    replace(pytester, "app/ops.py", "return x - 1", "return x - 1  # edited")
    run(pytester).assert_outcomes(passed=3)


def test_recursion_deeper_than_the_c_stack_allows_runs_and_is_not_recorded(
    pytester: pytest.Pytester,
) -> None:
    # 3.11 runs Python recursion in no C stack; under the frame evaluator
    # each call recurses in C, so the deep calls are handed back to CPython
    # (unnoted) instead of overflowing the stack.
    write(pytester, SMALL)
    (pytester.path / "app/deep.py").write_text(
        "def down(n):\n    return 0 if n == 0 else 1 + down(n - 1)\n"
    )
    (pytester.path / "tests/test_deep.py").write_text(
        "import sys\nfrom app.deep import down\n\n"
        "def test_deep():\n"
        "    limit = sys.getrecursionlimit()\n"
        "    sys.setrecursionlimit(100_000)\n"
        "    try:\n        assert down(60_000) == 60_000\n"
        "    finally:\n        sys.setrecursionlimit(limit)\n"
    )
    run(pytester).assert_outcomes(passed=4)
    again = run(pytester)
    if FRAME_EVALUATOR:
        again.assert_outcomes(passed=1, skipped=3)
        assert ran(again) == {"tests/test_deep.py::test_deep"}
    else:
        again.assert_outcomes(skipped=4)


def test_observation_off_keeps_the_default_keys_file_level_without_a_degraded_line(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SMALL)
    args = ("--dryci", "-p", "no:cacheprovider", "-o", "dryci_observe=false")
    first = pytester.runpytest_subprocess(*args)
    first.assert_outcomes(passed=3)
    assert not [line for line in first.outlines if line.startswith("dryci: degraded:")]
    replace(pytester, "app/ops.py", "return x - 1", "return x - 1  # edited")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=3)
