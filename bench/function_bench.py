#!/usr/bin/env python3
"""Function-level keys (issue 11) against file-level keys, on plugin_bench's generated suite
made eager: every package's `__init__.py` imports all of its modules, so that every test's
static closure is the whole package, as in many real libraries.

Each round, interleaved:
  plain           pytest -q (no DryCI)                                        the baseline
  first-file      pytest --dryci --dryci-precision=file, .dryci/ removed      file-level keys
  edit-file       the same after editing the body of one function             (then restored)
  first-function  pytest --dryci --dryci-precision=function, .dryci/ removed  (the default)
  cached-function the same again, nothing changed
  edit-function   the same after the same edit                                (then restored)
After each edit run the tree is restored and recorded again (not timed), so every round
starts from the same state. The edit adds a comment to the body of `compute` in the first
module: a change of one function's body that no test's outcome depends on.

Uses plugin_bench's virtualenv (release build of the committed HEAD unless --from-worktree)
and generator. Prints a table, writes bench/results/function.json and its subsection of
BENCHMARKS.md's plugin section. Stdlib only: `python3 bench/function_bench.py --help`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import plugin_bench as pb

HERE = Path(__file__).resolve().parent
SUITE = HERE / "work" / "function-suite"
RESULTS = HERE / "results" / "function.json"
SECTION = "## pytest plugin (pytest --dryci vs plain pytest vs pytest-testmon)"
TITLE = "### Function-level keys (issue 11): overhead and precision on an eager package"
BASE = ["-q", "-p", "no:cacheprovider", "-p", "no:testmon", "-p", "no:randomly"]
FUNCTION = ["--dryci", "--dryci-precision=function"]
FILE = ["--dryci", "--dryci-precision=file"]
EDITED = "    return total\n"


def make_eager(root: Path) -> int:
    """Rewrites every package's `__init__.py` to import all of its modules and
    sub-packages; returns how many packages."""
    packages = sorted(p.parent for p in (root / "src").rglob("__init__.py"))
    for package in packages:
        names = sorted(
            p.stem if p.is_file() else p.name
            for p in package.iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()
        )
        lines = [f"from . import {name}" for name in names]
        (package / "__init__.py").write_text(
            '"""Eager: imports everything."""\n' + "\n".join(lines) + "\n"
        )
    return len(packages)


def generate(modules: int, tests: int) -> Path:
    """The suite, eager, in a fresh git repository; returns the file the edits change."""
    shutil.rmtree(SUITE, ignore_errors=True)
    layout = pb.generate_layout(modules, tests, 20240601, 0.0)
    pb.write_layout(layout, SUITE)
    make_eager(SUITE)
    subprocess.run(["git", "init", "-q", str(SUITE)], check=True)
    edited = sorted((SUITE / "src").rglob("m*.py"))[0]
    if EDITED not in edited.read_text():
        raise SystemExit(f"{edited} has no {EDITED!r} to edit")
    return edited


def ran(run: pb.Run) -> int:
    """Tests that ran rather than being served: passed ones (nothing fails here)."""
    return (run.counts or {}).get("passed", 0)


def checked(scenario: str, run: pb.Run, total: int, expect_ran: int | None = None) -> pb.Run:
    counts = run.counts or {}
    if run.returncode != 0 or counts.get("passed", 0) + counts.get("skipped", 0) != total:
        pb.fail(scenario, run, f"expected {total} tests, all passed or served")
    if "dryci: degraded" in run.output:
        pb.fail(scenario, run, "a degraded line")
    if expect_ran is not None and ran(run) != expect_ran:
        pb.fail(scenario, run, f"expected {expect_ran} tests to run")
    return run


def one_round(edited: Path, total: int, runs: dict[str, list[pb.Run]]) -> None:
    original = edited.read_text()

    def timed(name: str, args: list[str], expect_ran: int | None = None) -> pb.Run:
        run = checked(name, pb.run_pytest([*BASE, *args], cwd=SUITE), total, expect_ran)
        runs.setdefault(name, []).append(run)
        return run

    def edit_run(name: str, args: list[str]) -> None:
        edited.write_text(original.replace(EDITED, "    return total  # edited\n"))
        timed(name, args)
        edited.write_text(original)
        checked(name + " (re-record)", pb.run_pytest([*BASE, *args], cwd=SUITE), total)

    timed("plain", [], expect_ran=total)
    shutil.rmtree(SUITE / ".dryci", ignore_errors=True)
    timed("first-file", FILE, expect_ran=total)
    edit_run("edit-file", FILE)
    shutil.rmtree(SUITE / ".dryci", ignore_errors=True)
    timed("first-function", FUNCTION, expect_ran=total)
    timed("cached-function", FUNCTION, expect_ran=0)
    edit_run("edit-function", FUNCTION)


def summarize(runs: dict[str, list[pb.Run]]) -> dict[str, dict[str, float]]:
    plain_wall = statistics.median(r.wall_s for r in runs["plain"])
    plain_cpu = statistics.median(r.cpu_s for r in runs["plain"])
    return {
        name: {
            "wall_s": statistics.median(r.wall_s for r in rs),
            "cpu_s": statistics.median(r.cpu_s for r in rs),
            "wall_vs_plain": statistics.median(r.wall_s for r in rs) / plain_wall,
            "cpu_vs_plain": statistics.median(r.cpu_s for r in rs) / plain_cpu,
            "ran": statistics.median(ran(r) for r in rs),
        }
        for name, rs in runs.items()
    }


def table(stats: dict[str, dict[str, float]], total: int) -> str:
    rows = [
        [
            name,
            f"{s['wall_s']:.2f}",
            f"{s['wall_vs_plain']:.2f}x",
            f"{s['cpu_s']:.2f}",
            f"{s['cpu_vs_plain']:.2f}x",
            f"{s['ran']:.0f} of {total}",
        ]
        for name, s in stats.items()
    ]
    header = ["run", "wall s", "vs plain", "CPU s", "vs plain", "tests run"]
    return benchlib.md_table(header, rows, "lrrrrr")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=120)
    parser.add_argument("--tests", type=int, default=80)
    parser.add_argument("--runs", type=int, default=5, help="rounds (medians over them)")
    parser.add_argument("--reinstall", action="store_true", help="rebuild DryCI in the venv")
    parser.add_argument("--from-worktree", action="store_true", help="build the work tree")
    parser.add_argument("--no-markdown", action="store_true")
    args = parser.parse_args(argv)
    build = pb.ensure_venv(args.reinstall, args.from_worktree)
    edited = generate(args.modules, args.tests)
    probe = pb.run_pytest(BASE, cwd=SUITE)
    total = (probe.counts or {}).get("passed", 0)
    if probe.returncode != 0 or not total:
        pb.fail("probe", probe, "the eager suite does not pass")
    runs: dict[str, list[pb.Run]] = {}
    for number in range(args.runs):
        print(f"round {number + 1} of {args.runs}", flush=True)
        one_round(edited, total, runs)
    stats = summarize(runs)
    facts = benchlib.machine_facts(pb.venv_python())
    text = table(stats, total)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"build": build, "machine": facts, "tests": total, "stats": stats}, indent=2)
        + "\n"
    )
    if not args.no_markdown:
        command = benchlib.command_line("bench/function_bench.py", argv)
        subsection = "\n\n".join(
            [
                TITLE,
                f"`{command}` at `{build.get('commit', '?')}` on {benchlib.describe_machine(facts)}"
                f", {benchlib.utc_now()}. The plugin benchmark's suite ({args.modules} modules, "
                f"{args.tests} test files, {total} tests) with every package's `__init__.py` "
                "importing all its modules; medians of "
                f"{args.runs} interleaved rounds. The edit adds a comment to one function's body.",
                text,
            ]
        )
        benchlib.write_subsection(HERE.parent / "BENCHMARKS.md", SECTION, TITLE, subsection)
    print(f"results: {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
