#!/usr/bin/env python3
"""What the function-level hooks cost per call (issue 11), in-process, on call-heavy code.

For each hook (none, the frame evaluator, the profile function, and the frame evaluator
with code that is not the repository's, as most code a suite runs is: pytest's and the
libraries'), a fresh interpreter
imports a small module from a temporary "repository", installs the hook with one window
open, and times each workload several times; the table gives medians and the ratio to no
hook measured in the same run. Workloads:
  calls      a recursive fib(22): about 57,000 calls of one repository function
  methods    50,000 calls of a method and a `__getitem__`
  loop       a loop of 1,000,000 iterations with no call (the hook's cost off calls)

Uses plugin_bench's virtualenv (a release build of DryCI; build it with
`python3 bench/plugin_bench.py --reinstall` or `bench/function_bench.py --reinstall`).
Prints a table and writes bench/results/hooks.json. Stdlib only:
`python3 bench/hook_bench.py --help`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import plugin_bench as pb

RESULTS = benchlib.RESULTS / "hooks.json"
HOOKS = ("none", "frame", "profile", "frame-not-repository")
WORKLOADS = ("calls", "methods", "loop")

MODULE = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Box:
    def __init__(self):
        self.items = list(range(100))
    def get(self, i):
        return self.items[i % 100]
    def __getitem__(self, i):
        return self.items[i % 100]

def methods():
    box = Box()
    total = 0
    for i in range(25_000):
        total += box.get(i) + box[i]
    return total

def loop():
    total = 0
    for i in range(1_000_000):
        total += i & 7
    return total

WORKLOADS = {"calls": lambda: fib(22), "methods": methods, "loop": loop}
"""

CHILD = """
import json, sys, time
root, hook, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, root)
from pytest_dryci import _native
import work
if hook != "none":
    repository = "/nonexistent" if hook == "frame-not-repository" else root
    _native.start_function_profiler(repository, [], hook.split("-")[0])
    _native.open_function_window()
times = {}
for name, workload in work.WORKLOADS.items():
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        workload()
        runs.append(time.perf_counter() - start)
    times[name] = runs
print(json.dumps(times))
"""


def measure(python: Path, root: Path, hook: str, rounds: int) -> dict[str, list[float]]:
    out = subprocess.run(
        [str(python), "-c", CHILD, str(root), hook, str(rounds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timings per workload and process")
    parser.add_argument("--processes", type=int, default=3, help="fresh interpreters per hook")
    args = parser.parse_args(argv)
    python = pb.VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run bench/plugin_bench.py --reinstall first")
    samples: dict[str, dict[str, list[float]]] = {h: {w: [] for w in WORKLOADS} for h in HOOKS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "work.py").write_text(MODULE)
        for _ in range(args.processes):
            for hook in HOOKS:  # interleaved: drifts of a busy machine hit every hook alike
                for name, runs in measure(python, root, hook, args.rounds).items():
                    samples[hook][name].extend(runs)
    medians = {
        hook: {name: benchlib.spread(runs)[0] * 1000 for name, runs in by_workload.items()}
        for hook, by_workload in samples.items()
    }
    header = ["hook", *[f"{w} ms" for w in WORKLOADS], *[f"{w} vs none" for w in WORKLOADS]]
    rows = []
    for hook in HOOKS:
        times = [f"{medians[hook][w]:.1f}" for w in WORKLOADS]
        ratios = [f"{medians[hook][w] / medians['none'][w]:.2f}x" for w in WORKLOADS]
        rows.append([hook, *times, *ratios])
    table = benchlib.md_table(header, rows, "l" + "r" * (len(header) - 1))
    print(table)
    facts = benchlib.machine_facts(python)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": facts, "commit": benchlib.git("rev-parse", "HEAD"), "medians_ms": medians},
            indent=2,
        )
        + "\n"
    )
    print(f"results: {RESULTS.relative_to(benchlib.PROJECT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
