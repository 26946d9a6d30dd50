#!/usr/bin/env python3
"""Issue #12, item 3: `dryci graph`'s no-change re-run against repo_dagger on Django's sdist.

A real repository full of non-Python files (6,800 files in 3,200 folders, 2,800 of them Python:
translations, templates, static files, docs), where graph_bench.py's synthetic repository has
Python files only. The goal: dryci's no-change re-run takes at most 1/20 of repo_dagger's full run.

What it does, in order:

1. Downloads Django's sdist (`pip download django==5.1.4 --no-binary :all: --no-deps`) into
   bench/work/dl and extracts it to bench/work/django (never committed), with a
   repo_dagger.yaml both tools accept: the tests under tests/ are the inputs, `django` the
   root package, and each test folder's fixtures/*.json a dependency of its Python files.
2. Fetches repo_dagger from the pytest-dryci 0.1.1 wheel (as graph_bench.py does) and builds
   `target/release/dryci` unless --dryci names a binary.
3. Runs dryci once (cold), waits out its racy window so the state it wrote is trusted, checks
   that both tools hash the same inputs, then interleaves --repeat runs of dryci's no-change
   re-run and repo_dagger's full run (repo_dagger keeps no state). Wall time is measured
   around each child, CPU time (user + sys) from os.wait4; medians are printed with the
   1-minute load average, since a loaded machine stretches wall times more than CPU times.
   --baseline BINARY interleaves a second dryci (the build before a change) in the same runs.

Stdlib only, Python 3.9+: `python3 bench/django_bench.py --help`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchlib import WORK, ChildRun, build_release_binary, load_1m, run_checked
from graph_bench import RACY_WINDOW_S, dagger_cmd, dryci_cmd, fetch_repo_dagger, measure

DJANGO_VERSION = "5.1.4"
GOAL_RATIO = 20.0

CONFIG = """\
# Written by bench/django_bench.py: accepted by both dryci and repo_dagger 1.4.0.
inputs:
  - "tests/**/test_*.py"
  - "tests/**/tests.py"
global_deps:
  - pyproject.toml
  - setup.cfg
  - tox.ini
root_python_packages:
  - django
path_rules:
  "**/*.py":
    visit_imported_python_modules: true
    visit_grand_siblings:
      - conftest.py
      - __init__.py
  "tests/**/*.py":
    visit_siblings:
      - "fixtures/*.json"
"""


def fetch_django(dl: Path, repo: Path) -> None:
    """Django's sdist extracted at `repo` with the shared configuration written into it."""
    if not (repo / "django" / "__init__.py").is_file():
        archive = dl / f"Django-{DJANGO_VERSION}.tar.gz"
        if not archive.is_file():
            dl.mkdir(parents=True, exist_ok=True)
            run_checked(
                [
                    *(sys.executable, "-m", "pip", "download", f"django=={DJANGO_VERSION}"),
                    *("--no-binary", ":all:", "--no-deps", "-d", str(dl)),
                ],
                echo=True,
            )
        shutil.rmtree(repo, ignore_errors=True)
        unpacked = repo.parent / f"Django-{DJANGO_VERSION}"
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(archive) as tar:
            # The "data" filter (3.12+, backported to security releases) refuses links and
            # paths leading out of the folder.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(repo.parent, filter="data")
            else:
                tar.extractall(repo.parent)
        unpacked.rename(repo)
    config = repo / "repo_dagger.yaml"
    if not config.is_file() or config.read_text() != CONFIG:
        config.write_text(CONFIG)


def median_ms(runs: list[ChildRun], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs) * 1000


def row(label: str, wall: str, cpu: str) -> str:
    return f"{label:24}{wall:>10}{cpu:>10}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="interleaved runs per tool")
    parser.add_argument("--dryci", type=Path, help="dryci binary (default: build it)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another dryci binary to interleave (before/after a change); it shares .dryci/, "
        "so both must read the same cache formats or each run rebuilds what the other wrote",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    repo = WORK / "django"
    fetch_django(WORK / "dl", repo)
    dagger, _ = fetch_repo_dagger(WORK / "dl")
    dryci = args.dryci.resolve() if args.dryci else build_release_binary()

    d_out, r_out = WORK / "django-dryci.json", WORK / "django-repo_dagger.json"
    dryci_run = dryci_cmd(dryci, repo, "--out-dep-hashes", str(d_out))
    dagger_run = dagger_cmd(dagger, repo, "-out-dep-hashes", str(r_out))

    shutil.rmtree(repo / ".dryci", ignore_errors=True)
    cold = measure(dryci_run, repo)
    time.sleep(RACY_WINDOW_S)  # the state just written must be older than the racy window
    measure(dryci_run, repo)  # rewrites the stamps it could not trust the first time
    measure(dagger_run, repo)  # warms the OS page cache for repo_dagger too
    ours, theirs = json.loads(d_out.read_text()), json.loads(r_out.read_text())
    if set(ours) != set(theirs):
        sys.exit(f"error: input sets differ: dryci {len(ours)}, repo_dagger {len(theirs)}")

    commands = {"dryci": dryci_run, "repo_dagger": dagger_run}
    if args.baseline:
        commands["baseline"] = dryci_cmd(
            args.baseline.resolve(), repo, "--out-dep-hashes", str(d_out)
        )
        measure(commands["baseline"], repo)
    runs: dict[str, list[ChildRun]] = {tool: [] for tool in commands}
    for i in range(args.repeat):
        print(f"  run {i + 1}/{args.repeat} (load {load_1m():.2f})", flush=True)
        for tool, command in commands.items():
            runs[tool].append(measure(command, repo))

    figures = {
        tool: {"wall_ms": median_ms(r, "wall_s"), "cpu_ms": median_ms(r, "cpu_s")}
        for tool, r in runs.items()
    }
    wall_ratio = figures["repo_dagger"]["wall_ms"] / figures["dryci"]["wall_ms"]
    cpu_ratio = figures["repo_dagger"]["cpu_ms"] / max(figures["dryci"]["cpu_ms"], 1e-3)
    loads = [r.load_1m for tool_runs in runs.values() for r in tool_runs]
    files = sum(1 for _ in repo.rglob("*") if ".dryci" not in _.parts and ".git" not in _.parts)
    print(f"\nDjango {DJANGO_VERSION}: {files:,} files and folders, {len(ours)} inputs")
    print(f"dryci cold run: {cold.wall_s * 1000:.0f} ms, CPU {cold.cpu_s * 1000:.0f} ms")
    print(
        f"medians over {args.repeat} interleaved runs, 1-minute load {min(loads):.2f}"
        f"-{max(loads):.2f}"
    )
    print(row("", "wall", "CPU"))
    print(row("dryci no-change", *(f"{v:.1f} ms" for v in figures["dryci"].values())))
    print(row("repo_dagger full run", *(f"{v:.1f} ms" for v in figures["repo_dagger"].values())))
    print(row("repo_dagger / dryci", f"{wall_ratio:.1f}x", f"{cpu_ratio:.1f}x"))
    if "baseline" in figures:
        base = figures["baseline"]
        print(row("baseline no-change", f"{base['wall_ms']:.1f} ms", f"{base['cpu_ms']:.1f} ms"))
        print(
            row(
                "repo_dagger / baseline",
                f"{figures['repo_dagger']['wall_ms'] / base['wall_ms']:.1f}x",
                f"{figures['repo_dagger']['cpu_ms'] / max(base['cpu_ms'], 1e-3):.1f}x",
            )
        )
    print(f"goal: >= {GOAL_RATIO:.0f}x (wall): {'met' if wall_ratio >= GOAL_RATIO else 'NOT met'}")
    if args.json:
        report = {
            "figures": figures,
            "ratios": {"wall": wall_ratio, "cpu": cpu_ratio},
            "load_1m": loads,
            "cold": {"wall_ms": cold.wall_s * 1000, "cpu_ms": cold.cpu_s * 1000},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
