"""Suite shapes for the plugin benchmark (issue 12): does a fully cached `pytest --dryci`
stay cheap on suites unlike the standard generated one, and beat pytest-testmon's no-change
rerun on each?

Run through plugin_bench.py, which owns the generator, the venv and the runner:

    python3 bench/plugin_bench.py --shapes all --runs 5

The issue names three shapes from real suites where a cached run was slow, and the plain
suite as the control:

a  deselect  pyproject's `addopts` carry `-m 'not stress'`; every test file holds a
             parametrised stress test, deselected on every run. The real case deselected
             31,000 items; it gave no selected count, so we assume a suite of the size of
             case b (about 5,300 selected), i.e. DESELECTED_SHARE = 85% of the collected
             items, and halve the suite with that share kept (475 test files: about
             2,700 selected and 15,000 deselected; 950 files give the real 31,000, whose
             plain run alone takes 15 s here).
b  skips     most test files hold one skipped test (a skip or skipif marker, pytest.skip in
             the body or in a fixture, pytest.importorskip) and a few an xfail one. The real
             case: 281 skipped and 17 xfailed of 5,300; our files are smaller (about 6
             tests), so "most files hold one" gives a larger share of skipped tests.
c  heavy     tests/conftest.py imports hypothesis (installed in the bench venv, its pytest
             plugin left on, as in the real case), and a few tests are always skipped.
d  plain     the standard suite of plugin_bench.py (observed tests included).

Each shape is the standard suite (plugin_bench.generate_layout) with its test files and
configuration rewritten, generated in bench/work/shapes/NAME, so each keeps its own DryCI
store and testmon data between rounds. Per shape, rounds run interleaved: plain pytest,
DryCI's first run (store removed), its fully cached run, testmon's first run (data removed),
testmon's no-change rerun, and the physical limits of a cached run (the interpreter
importing pytest, `pytest --version`, pytest collecting nothing in an empty folder and with
the shape's configuration and conftest). The first runs, which the goal does not judge and
which cost as much as three plain runs, are made in the first --first-runs rounds only; the
cached and no-change runs reuse what the last first run left.

Goal (issue 12), per shape: the fully cached run's median wall time is at most 8% of plain
pytest's and below testmon's no-change rerun. CPU time (user+sys of the child) and the
per-round ratios are given beside it, because the machine is shared.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import re
import shutil
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import plugin_bench as pb
from benchlib import (
    RESULTS,
    RSS_METHOD,
    WORK,
    command_line,
    describe_machine,
    load_1m,
    machine_facts,
    md_table,
    measure_child,
    write_subsection,
)

SHAPES_DIR = WORK / "shapes"
EMPTY_DIR = WORK / "empty"  # pytest collecting nothing: the floor of any pytest run
SUBSECTION_TITLE = "### Suite shapes (issue 12): -m deselection, skips and xfails, a heavy conftest"
GOAL_SHARE = 0.08  # the fully cached run, as a share of plain pytest (issue 12)

# a: the share of collected items that `-m 'not stress'` deselects (see the module doc).
DESELECTED_SHARE = 0.85
# b: the share of test files holding one skipped test, and one xfail test.
SKIP_FILE_SHARE = 0.55
XFAIL_FILE_SHARE = 0.033  # 17 xfailed for 281 skipped in the real case, about 6%
# c: the share of test files holding one always-skipped test ("a few").
ALWAYS_SKIPPED_SHARE = 0.01

# -------------------------------------------------------------------------------------------
# The shapes


@dataclass
class Expected:
    """What a plain run of a shape reports, and what a cached run must serve."""

    passed: int
    skipped: int = 0
    xfailed: int = 0
    deselected: int = 0
    test_files: int = 0

    @property
    def results(self) -> int:
        """Tests that have a result to serve: every selected one."""
        return self.passed + self.skipped + self.xfailed

    def counts(self) -> dict[str, int]:
        """pytest's closing line, as plugin_bench.parse_counts reads it."""
        every = {
            "passed": self.passed,
            "skipped": self.skipped,
            "xfailed": self.xfailed,
            "deselected": self.deselected,
        }
        return {k: v for k, v in every.items() if v}


@dataclass(frozen=True)
class Shape:
    key: str  # the letter
    name: str
    text: str  # one line for the report
    test_files: int  # before --shape-scale
    hypothesis_plugin: bool  # whether hypothesis's pytest plugin stays on
    rewrite: Callable[[pb.Layout, random.Random], Expected]
    testmon_flags: tuple[str, ...] = ()  # added to testmon's runs


# testmon turns its selection off when -m is given ("selection automatically deactivated
# because -m was used"): its no-change rerun runs every selected test again. Its
# --testmon-forceselect keeps selecting, so the deselect shape measures that, the best
# testmon offers there.
TESTMON_UNDER_M = ("--testmon-forceselect",)


def module_name(layout: pb.Layout, path: str) -> str:
    """A package module the test file imports (bound to the name mNNNN)."""
    return f"m{layout.test_imports[path][0]:04d}"


def append_test(source: str, code: str) -> str:
    return source + "\n\n" + textwrap.dedent(code).strip("\n") + "\n"


def rewrite_deselect(layout: pb.Layout, rng: random.Random) -> Expected:
    """a: a stress test in every file, deselected by `-m 'not stress'` in addopts. Its size
    varies per file around the mean that makes DESELECTED_SHARE of the items stress ones."""
    per_file = layout.total_tests / len(layout.test_items)
    mean = round(per_file * DESELECTED_SHARE / (1 - DESELECTED_SHARE))
    deselected = 0
    for number, path in enumerate(sorted(layout.test_items)):
        count = rng.randint(mean // 2, mean + mean // 2)
        mod = module_name(layout, path)
        layout.files[path] = append_test(
            layout.files[path],
            f"""
            @pytest.mark.stress
            @pytest.mark.parametrize("n", range({count}))
            def test_stress_{number:04d}(n):
                assert {mod}.compute(n, 200000) >= 0
            """,
        )
        deselected += count
    layout.files["pyproject.toml"] = pb.PYPROJECT + (
        "addopts = \"-m 'not stress'\"\n"
        'markers = ["stress: long-running tests, deselected unless asked for"]\n'
    )
    return Expected(passed=layout.total_tests, deselected=deselected)


# b: the ways real suites skip a test, and expect one to fail.
SKIPS = (
    '@pytest.mark.skip(reason="not supported yet")\ndef test_skipped_{n}():\n    assert False',
    '@pytest.mark.skipif(sys.version_info < (4, 0), reason="needs Python 4")\n'
    "def test_skipped_{n}():\n    assert False",
    'def test_skipped_{n}():\n    pytest.skip("needs network access")',
    'def test_skipped_{n}():\n    pytest.importorskip("bench_missing_module")',
    "def test_skipped_{n}(gpu):\n    assert gpu",
)
XFAILS = (
    '@pytest.mark.xfail(reason="known bug", strict=True)\n'
    "def test_xfail_{n}():\n    assert {mod}.base(1) == -1",
    'def test_xfail_{n}():\n    pytest.xfail("not implemented yet")',
)
GPU_FIXTURE = """

@pytest.fixture
def gpu():
    pytest.skip("no GPU on this machine")
"""


def rewrite_skips(layout: pb.Layout, rng: random.Random) -> Expected:
    """b: one skipped test in most files, an xfail one in a few, each of a kind drawn from
    SKIPS and XFAILS."""
    skipped = xfailed = 0
    for number, path in enumerate(sorted(layout.test_items)):
        source = layout.files[path].replace('"""\n\n', '"""\n\nimport sys\n', 1)
        mod = module_name(layout, path)
        if rng.random() < SKIP_FILE_SHARE:
            source = append_test(source, rng.choice(SKIPS).format(n=f"{number:04d}"))
            skipped += 1
        if rng.random() < XFAIL_FILE_SHARE:
            source = append_test(source, rng.choice(XFAILS).format(n=f"{number:04d}", mod=mod))
            xfailed += 1
        layout.files[path] = source
    layout.files["tests/conftest.py"] += GPU_FIXTURE
    return Expected(passed=layout.total_tests, skipped=skipped, xfailed=xfailed)


HEAVY_CONFTEST_HEAD = '''"""Shared fixtures of the generated suite; hypothesis's settings for it."""

import hypothesis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "bench", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=20
)
settings.load_profile("bench")
SMALL_INTS = st.integers(min_value=0, max_value=96)
assert hypothesis.__version__
'''


def rewrite_heavy(layout: pb.Layout, rng: random.Random) -> Expected:
    """c: a conftest importing hypothesis, and an always-skipped test in a few files."""
    conftest = layout.files["tests/conftest.py"]
    _, rest = conftest.split("import pytest\n", 1)
    layout.files["tests/conftest.py"] = HEAVY_CONFTEST_HEAD + rest
    skipped = 0
    for number, path in enumerate(sorted(layout.test_items)):
        if rng.random() < ALWAYS_SKIPPED_SHARE:
            layout.files[path] = append_test(
                layout.files[path],
                f"""
                @pytest.mark.skip(reason="flaky on CI")
                def test_always_skipped_{number:04d}():
                    assert False
                """,
            )
            skipped += 1
    return Expected(passed=layout.total_tests, skipped=skipped)


def rewrite_nothing(layout: pb.Layout, rng: random.Random) -> Expected:
    """d: the standard suite as it is."""
    return Expected(passed=layout.total_tests)


SHAPES = {
    shape.name: shape
    for shape in (
        Shape(
            "a",
            "deselect",
            "`addopts = -m 'not stress'`, a parametrised stress test in every file",
            475,
            False,
            rewrite_deselect,
            TESTMON_UNDER_M,
        ),
        Shape(
            "b",
            "skips",
            "one skipped test in most files, an xfail one in a few",
            2000,
            False,
            rewrite_skips,
        ),
        Shape(
            "c",
            "heavy",
            "a conftest importing hypothesis (its plugin on), a few always-skipped tests",
            2000,
            True,
            rewrite_heavy,
        ),
        Shape("d", "plain", "the standard suite", 2000, False, rewrite_nothing),
    )
}


def build_shape(shape: Shape, scale: float, modules: int, seed: int) -> tuple[Path, Expected]:
    """Generates the shape's suite (files rewritten only when changed, so bytecode stays
    warm) and says what its runs must report."""
    files = max(1, round(shape.test_files * scale))
    layout = pb.generate_layout(modules, files, seed, observed_share=0.2)
    expected = shape.rewrite(layout, random.Random(f"{seed}/{shape.name}"))
    expected.test_files = len(layout.test_items)
    suite = SHAPES_DIR / shape.name
    pb.write_layout(layout, suite)
    return suite, expected


# -------------------------------------------------------------------------------------------
# Running

SCENARIOS = ("plain", "first", "cached", "tm-first", "tm-rerun")
FIRST_RUNS = ("first", "tm-first")
LIMITS = ("limit-import", "limit-version", "limit-empty", "limit-conftest")
SCENARIO_TEXT = {
    "plain": "plain pytest",
    "first": "pytest --dryci, first run (empty store)",
    "cached": "pytest --dryci, fully cached",
    "tm-first": "pytest --testmon, first run",
    "tm-rerun": "pytest --testmon, no-change rerun",
    "limit-import": "limit: `python -c 'import pytest'`",
    "limit-version": "limit: `pytest --version`",
    "limit-empty": "limit: `pytest --co` in an empty folder",
    "limit-conftest": "limit: `pytest --co tests/conftest.py` (this configuration and conftest)",
}


def limit_argv(scenario: str, plain: list[str]) -> tuple[list[str], Path | None]:
    """The command of a physical-limit run and its folder (None: the shape's suite). Each
    is a floor that no cached run can go below: the interpreter importing pytest; pytest
    loading its plugins; pytest configured and collecting nothing; and that with the
    shape's own configuration and conftest (hypothesis for shape c) loaded."""
    pytest_bin = str(pb.VENV / "bin" / "pytest")
    if scenario == "limit-import":
        return [str(pb.venv_python()), "-c", "import pytest"], EMPTY_DIR
    if scenario == "limit-version":
        return [pytest_bin, "--version"], EMPTY_DIR
    if scenario == "limit-empty":
        return [pytest_bin, *plain, "--co"], EMPTY_DIR
    return [pytest_bin, *plain, "--co", "tests/conftest.py"], None


def prepare_empty_dir() -> None:
    """A folder with an empty pytest.ini, so that pytest takes it as its root and does not
    find the project's configuration above it."""
    EMPTY_DIR.mkdir(parents=True, exist_ok=True)
    (EMPTY_DIR / "pytest.ini").write_text("[pytest]\n")


def check(scenario: str, run: pb.Run, expected: Expected) -> None:
    """Stops the benchmark when a run did not do what its scenario means: every selected
    test run (plain, first runs), every one served without importing any test file
    (cached), none run again (testmon's rerun)."""
    counts = run.counts
    if counts is None:
        pb.fail(scenario, run, "no pytest summary line found")
        return
    if "dryci: degraded" in run.output:
        pb.fail(scenario, run, "DryCI degraded; the figures would not measure the real path")
    shown = {k: v for k, v in counts.items() if k != "warnings"}
    if scenario in ("plain", "first", "tm-first") and (
        run.returncode != 0 or shown != expected.counts()
    ):
        pb.fail(scenario, run, f"expected {expected.counts()}")
    if scenario == "cached":
        served = pb.dryci_line(run.output, r"dryci: (\d+) tests served from the cache")
        ran = pb.dryci_line(run.output, r"dryci: (\d+) tests ran")
        files = pb.dryci_line(run.output, r"(\d+) files not even collected")
        deselected = pb.dryci_line(run.output, r"dryci: (\d+) tests deselected from records") or 0
        want = (expected.results, 0, expected.test_files, expected.deselected)
        if run.returncode != 0 or (served, ran, files, deselected) != want:
            pb.fail(
                scenario,
                run,
                f"expected {want[0]} tests served, none run, {want[2]} files not collected "
                f"and {want[3]} deselected from records; got {(served, ran, files, deselected)}",
            )
    if scenario == "tm-rerun" and (run.returncode not in (0, 5) or counts.get("passed", 0)):
        pb.fail(scenario, run, "expected testmon to run no test on a no-change rerun")


def check_limit(scenario: str, run: pb.Run) -> None:
    """A limit run must have loaded what it claims: no error, no test."""
    if scenario in ("limit-import", "limit-version"):
        ok = run.returncode == 0
    else:
        ok = run.returncode == 5 and "no tests" in run.output  # pytest's "no tests collected"
    if not ok:
        pb.fail(scenario, run, "expected a clean run that collects nothing")


def run_one(scenario: str, suite: Path, args: dict[str, list[str]]) -> pb.Run:
    """One timed run of `scenario` in `suite`, after the clean-up it needs."""
    if scenario in LIMITS:
        argv, cwd = limit_argv(scenario, args["plain"])
        child = measure_child(argv, cwd=cwd or suite, env=pb.child_env(), capture_stdout=True)
        return pb.Run(**vars(child), counts=pb.parse_counts(child.output))
    if scenario == "first":
        shutil.rmtree(suite / ".dryci", ignore_errors=True)
    elif scenario == "tm-first":
        pb.reset_testmon(suite)
    return pb.run_pytest(args[scenario], cwd=suite)


def run_shape(
    suite: Path,
    expected: Expected,
    args: dict[str, list[str]],
    rounds: int,
    first_rounds: int,
    max_load: float,
) -> dict[str, list[pb.Run]]:
    """Every scenario and limit of one shape, `rounds` times, interleaved round by round,
    so that the ratios compare runs made minutes apart at most."""
    results: dict[str, list[pb.Run]] = {s: [] for s in (*SCENARIOS, *LIMITS)}
    for r in range(rounds):
        print(f"  round {r + 1}/{rounds}", flush=True)
        pb.wait_for_quiet(max_load)
        for scenario in (*SCENARIOS, *LIMITS):
            if scenario in FIRST_RUNS and r >= first_rounds:
                continue
            run = run_one(scenario, suite, args)
            if scenario in LIMITS:
                check_limit(scenario, run)
            else:
                check(scenario, run, expected)
            results[scenario].append(run)
            print(
                f"    {scenario:<14} {run.wall_s:7.2f} s  cpu {run.cpu_s:6.2f} s  "
                f"load {run.load_1m:5.2f}  rss {run.max_rss_kib / 1024:5.0f} MiB  {run.counts}",
                flush=True,
            )
    return results


# -------------------------------------------------------------------------------------------
# Figures


def per_round_ratios(numerators: list[pb.Run], denominators: list[pb.Run]) -> list[float]:
    """numerator / denominator of the same round, wall time."""
    return [n.wall_s / d.wall_s for n, d in zip(numerators, denominators)]


def shape_figures(results: dict[str, list[pb.Run]]) -> dict[str, Any]:
    """Medians per scenario, and the goal's figures: cached over plain and over testmon's
    rerun, by medians and round by round."""
    stats = {s: pb.summarize(runs) for s, runs in results.items() if runs}
    plain, cached, rerun = stats["plain"], stats["cached"], stats["tm-rerun"]
    share = cached["median_s"] / plain["median_s"]
    cpu_share = cached["cpu_median_s"] / plain["cpu_median_s"]
    rounds_share = per_round_ratios(results["cached"], results["plain"])
    rounds_vs_testmon = per_round_ratios(results["cached"], results["tm-rerun"])
    return {
        "stats": stats,
        "cached_share": share,
        "cached_cpu_share": cpu_share,
        "cached_share_per_round": [round(x, 4) for x in rounds_share],
        "cached_vs_testmon_per_round": [round(x, 3) for x in rounds_vs_testmon],
        "meets_share": share <= GOAL_SHARE,
        "meets_testmon": cached["median_s"] < rerun["median_s"],
    }


TABLE_HEADER = ("run", "median", "min", "max", "vs plain", "CPU", "CPU vs plain", "RSS", "n")


def shape_table(figures: dict[str, Any]) -> str:
    stats = figures["stats"]
    base, base_cpu = stats["plain"]["median_s"], stats["plain"]["cpu_median_s"]
    rows = []
    for scenario in (*SCENARIOS, *LIMITS):
        st = stats[scenario]
        rows.append(
            [
                SCENARIO_TEXT[scenario],
                f"{st['median_s']:.2f} s",
                f"{st['min_s']:.2f} s",
                f"{st['max_s']:.2f} s",
                f"{st['median_s'] / base * 100:.1f}%",
                f"{st['cpu_median_s']:.2f} s",
                f"{st['cpu_median_s'] / base_cpu * 100:.1f}%",
                f"{st['maxrss_median_mib']:.0f} MiB",
                str(len(st["walls_s"])),
            ]
        )
    return md_table(TABLE_HEADER, rows, "lrrrrrrrr")


def outcome_line(name: str, figures: dict[str, Any]) -> str:
    """The closing lines pytest printed, per scenario (the last run's)."""
    parts = []
    for scenario in SCENARIOS:
        counts = figures["stats"][scenario]["counts"] or {}
        shown = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "warnings")
        parts.append(f"{scenario}: {shown or 'no tests ran'}")
    return f"Outcomes ({name}): " + "; ".join(parts) + "."


def verdict_rows(shapes: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Per shape: the goal's two comparisons, and how far the cached run is above the
    floor of pytest with the shape's configuration and conftest."""
    rows = []
    for name, fig in shapes.items():
        st = fig["stats"]
        cached, rerun, floor = st["cached"], st["tm-rerun"], st["limit-conftest"]
        above = cached["median_s"] - floor["median_s"]
        per_round = fig["cached_share_per_round"]
        vs_tm = fig["cached_vs_testmon_per_round"]
        met = fig["meets_share"] and fig["meets_testmon"]
        rows.append(
            [
                f"{SHAPES[name].key} {name}",
                f"{fig['cached_share'] * 100:.1f}% (CPU {fig['cached_cpu_share'] * 100:.1f}%; "
                f"rounds {min(per_round) * 100:.1f}-{max(per_round) * 100:.1f}%)",
                f"{cached['median_s']:.2f} s vs {rerun['median_s']:.2f} s "
                f"(CPU {cached['cpu_median_s']:.2f} vs {rerun['cpu_median_s']:.2f} s; "
                f"rounds {min(vs_tm):.2f}-{max(vs_tm):.2f}x)",
                f"{above:.2f} s ({above / st['plain']['median_s'] * 100:.1f}% of plain)",
                "met" if met else "NOT met",
            ]
        )
    return rows


def profile_rows(shapes: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The phase-stamped cached runs, one column per shape."""
    names = [n for n, fig in shapes.items() if fig.get("profile")]
    phases = list(shapes[names[0]]["profile"]["phases"]) if names else []
    rows = [
        [phase, *(f"{shapes[n]['profile']['phases'][phase]:.2f} s" for n in names)]
        for phase in phases
    ]
    rows.append(
        [
            "wall (phase-stamped runs)",
            *(f"{shapes[n]['profile']['wall_median']:.2f} s" for n in names),
        ]
    )
    return ["cached run, phase", *names], rows


FLOOR_NOTE = (
    "The floor of a cached run is the last limit row: pytest with the shape's configuration "
    'and conftest, collecting nothing; "cached above the floor" is what DryCI adds to it '
    "(deciding, reporting each served test, walking the test folders)."
)


def deselect_note(shapes: dict[str, dict[str, Any]]) -> list[str]:
    """What the deselect shape assumes, at the size this run made it, and how testmon ran."""
    fig = shapes.get("deselect")
    if fig is None:
        return []
    exp = fig["expected"]
    return [
        f"The deselect shape deselects {DESELECTED_SHARE:.0%} of the collected items, as we "
        f"assume the real suite did (31,000 deselected; it gave no selected count, so we took "
        f"case b's 5,300); this run deselects {exp['deselected']:,}. testmon runs there with "
        '`--testmon-forceselect`: with `--testmon` alone it says "selection automatically '
        'deactivated because -m was used" and its no-change rerun runs every selected test '
        "again."
    ]


def dryci_call_rows(shapes: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """DryCI's own calls in the phase-stamped cached runs (median ms), one column per
    shape; none for results whose phase plugin did not time them (before `python ...`
    entries existed, its Session.decide was never called through the wrapper)."""
    names = [
        n
        for n, fig in shapes.items()
        if any(k.startswith("python ") for k in fig.get("profile", {}).get("dryci_hooks", {}))
    ]
    if not names:
        return [], []

    def call(key: str) -> str:
        return re.sub(r" \(\d+ calls\)$", "", key)

    totals: dict[str, dict[str, float]] = {}
    for n in names:
        for key, seconds in shapes[n]["profile"]["dryci_hooks"].items():
            totals.setdefault(call(key), {})[n] = seconds
    ordered = sorted(totals, key=lambda k: -max(totals[k].values()))
    rows = [
        [f"`{k}`", *(f"{totals[k].get(n, 0.0) * 1000:.0f} ms" for n in names)]
        for k in ordered
        if max(totals[k].values()) >= 0.001
    ]
    return ["DryCI call (cached run)", *names], rows


def markdown(result: dict[str, Any]) -> str:
    m, b = result["machine"], result["build"]
    shapes = result["shapes"]
    lines = [
        SUBSECTION_TITLE,
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {describe_machine(m)}, Python {m['python']}; {m['date']}; 1-minute load "
        f"{result['load_start']:.1f} at the start, {result['load_end']:.1f} at the end (2 "
        "cores, shared with whatever else runs: wall times are noisy, CPU time "
        f"steadier). DryCI {b['source']} {b['commit'][:10]} built in release mode; pytest "
        f"{result['versions'].get('pytest')}, pytest-testmon "
        f"{result['versions'].get('pytest-testmon')}, hypothesis "
        f"{result['versions'].get('hypothesis')}.",
        "",
        f"{result['rounds']} rounds per shape, every run of a round interleaved (plain, DryCI, "
        "testmon, the limits), the first runs of DryCI and testmon in the first "
        f"{result['first_rounds']} only (the column n counts runs). Every run's counts are "
        "checked; the fully cached run must serve every selected test, run none and import "
        "no test file. Each shape is the standard generated suite "
        f"({result['modules']} modules) with:",
        "",
    ]
    for name, fig in shapes.items():
        shape, exp = SHAPES[name], fig["expected"]
        lines.append(
            f"- {shape.key} `{name}`: {shape.text}; {exp['test_files']:,} test files, "
            + ", ".join(f"{v:,} {k}" for k, v in Expected(**exp).counts().items())
            + " in a plain run."
        )
    lines += ["", *deselect_note(shapes), "", FLOOR_NOTE, ""]
    for name, fig in shapes.items():
        lines += [
            f"Shape {SHAPES[name].key}, `{name}`:",
            "",
            shape_table(fig),
            "",
            outcome_line(name, fig),
            "",
        ]
    lines += [
        f"Goal (issue 12): the fully cached run takes at most {GOAL_SHARE:.0%} of plain "
        "pytest and less time than testmon's no-change rerun (wall-time medians; the ranges "
        "are the same ratios round by round):",
        "",
        md_table(
            [
                "shape",
                "cached / plain",
                "cached vs testmon rerun",
                "cached above the floor",
                "goal",
            ],
            verdict_rows(shapes),
            "lllll",
        ),
    ]
    header, rows = profile_rows(shapes)
    if rows:
        lines += [
            "",
            "Where a fully cached run's time goes (bench/phase_plugin.py, median of "
            f"{result['profile_runs']} phase-stamped runs per shape; profiles in "
            "bench/work/profile/shape-NAME.prof):",
            "",
            md_table(header, rows, "l" + "r" * (len(header) - 1)),
        ]
    header, rows = dryci_call_rows(shapes)
    if rows:
        lines += ["", md_table(header, rows, "l" + "r" * (len(header) - 1))]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------


def parse_shapes(text: str) -> list[str]:
    """`all`, or names or letters separated by commas, in the issue's order."""
    wanted = {w.strip() for w in text.split(",") if w.strip()}
    if "all" in wanted:
        return list(SHAPES)
    by_key = {s.key: n for n, s in SHAPES.items()}
    names = {by_key.get(w, w) for w in wanted}
    unknown = sorted(names - set(SHAPES))
    if unknown:
        raise SystemExit(f"--shapes: unknown {unknown}; choose from all, {', '.join(SHAPES)}")
    return [n for n in SHAPES if n in names]


def run_shapes(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The --shapes run of plugin_bench.py: every chosen shape, its figures and verdict,
    bench/results/plugin-shapes.json and our subsection of BENCHMARKS.md."""
    names = parse_shapes(args.shapes)
    command = command_line("bench/plugin_bench.py", argv)
    build = pb.ensure_venv(args.reinstall, args.from_worktree)
    plugins = pb.pytest11_plugins()
    versions = pb.package_versions(["pytest", "pytest-testmon", "hypothesis", "dryci"])
    print(f"DryCI {build['source']} {build['commit'][:10]}; {versions}", flush=True)
    prepare_empty_dir()
    load_start = load_1m()
    started = time.perf_counter()
    shapes: dict[str, dict[str, Any]] = {}
    for name in names:
        shape = SHAPES[name]
        suite, expected = build_shape(shape, args.shape_scale, args.modules, args.seed)
        print(f"shape {shape.key} {name}: {suite}, {expected}", flush=True)
        scen_args = pb.scenario_args(plugins, hypothesis=shape.hypothesis_plugin, precision=None)
        for scenario in ("tm-first", "tm-rerun"):
            scen_args[scenario] += shape.testmon_flags
        print("  warm-up run (bytecode caches)", flush=True)
        check("plain", pb.run_pytest(scen_args["plain"], cwd=suite), expected)
        results = run_shape(suite, expected, scen_args, args.runs, args.first_runs, args.max_load)
        figures = shape_figures(results)
        figures["expected"] = asdict(expected)
        figures["args"] = {s: scen_args[s] for s in SCENARIOS}
        if args.profile_runs:
            print("  profiling the fully cached run", flush=True)
            figures["profile"] = pb.profile_cached(
                scen_args["cached"],
                args.profile_runs,
                expected.results,
                functools.partial(check, "cached", expected=expected),
                suite=suite,
                profile_name=f"shape-{name}",
            )
        shapes[name] = figures
        print(shape_table(figures), flush=True)
    result: dict[str, Any] = {
        "command": command,
        "label": args.label,
        "machine": machine_facts(pb.venv_python()),
        "peak_memory_method": RSS_METHOD,
        "build": build,
        "versions": versions,
        "rounds": args.runs,
        "first_rounds": min(args.first_runs, args.runs),
        "profile_runs": args.profile_runs,
        "modules": args.modules,
        "seed": args.seed,
        "scale": args.shape_scale,
        "load_start": load_start,
        "load_end": load_1m(),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "shapes": shapes,
    }
    text = markdown(result)
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result, indent=2, default=str) + "\n"
    (RESULTS / "plugin-shapes.json").write_text(payload)
    if args.label:
        (RESULTS / f"plugin-shapes-{args.label}.json").write_text(payload)
    if not args.no_markdown:
        write_subsection(args.write, pb.SECTION_TITLE, SUBSECTION_TITLE, text)
        print(f"updated {args.write}")
    print(f"wrote {RESULTS / 'plugin-shapes.json'} ({result['minutes']} min)")
    return 0


def render_only(path: Path) -> int:
    """Rewrites our subsection from bench/results/plugin-shapes.json; runs nothing."""
    result = json.loads((RESULTS / "plugin-shapes.json").read_text())
    write_subsection(path, pb.SECTION_TITLE, SUBSECTION_TITLE, markdown(result))
    print(f"updated {path}")
    return 0
