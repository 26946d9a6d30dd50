"""A/B of the fully cached run on the suite shapes, for changes to DryCI's Python only.

plugin_bench.py --shapes measures one build against plain pytest and testmon; rounds made
an hour apart on a shared machine differ by more than a change worth a few per cent. This
script runs, round by round and interleaved, plain pytest, the fully cached run with the
Python package of a base commit, the fully cached run with the bench venv's (built from
the work tree by plugin_bench.py --reinstall --from-worktree), and the floor (pytest with
the shape's configuration, collecting nothing). The base runs in bench/work/venv-base, a
copy of the bench venv whose pytest_dryci package is replaced by the base commit's
python/pytest_dryci/*.py: valid only when the native module (src/) is the same in both, which
the script checks. Both venvs list the same distributions, so both use the same DryCI
store and keys.

    python3 bench/plugin_bench.py --shapes all --reinstall --from-worktree   # first
    python3 bench/served_ab.py --base f84da7a --runs 5 --max-load 1.5

It prints, per shape, the medians and each round's cached/plain ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from pathlib import Path

import plugin_bench as pb
import plugin_shapes as ps
from benchlib import PROJECT, WORK, git, measure_child

BASE_VENV = WORK / "venv-base"
RUNS = ("plain", "base", "new", "floor")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"cannot find the site-packages of {venv}")
    return found[0]


def prepare_base(base: str) -> None:
    """bench/work/venv-base: the bench venv with the base commit's Python package."""
    changed = git("diff", "--name-only", base, "--", "src", "Cargo.toml", "Cargo.lock").split()
    if changed:
        raise SystemExit(f"the native module differs from {base} ({changed[0]}...): rebuild both")
    shutil.rmtree(BASE_VENV, ignore_errors=True)
    shutil.copytree(pb.VENV, BASE_VENV, symlinks=True)
    package = site_packages(BASE_VENV) / "pytest_dryci"
    for path in package.glob("*.py"):
        path.unlink()
    shutil.rmtree(package / "__pycache__", ignore_errors=True)
    names = git("ls-tree", "--name-only", base, "python/pytest_dryci/").split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{base}:{name}"], cwd=PROJECT, check=True, capture_output=True
            ).stdout
            (package / Path(name).name).write_bytes(text)


def run(kind: str, suite: Path, args: dict[str, list[str]], expected: ps.Expected) -> pb.Run:
    if kind == "floor":
        argv, _ = ps.limit_argv("limit-conftest", args["plain"])
        child = measure_child(argv, cwd=suite, env=pb.child_env(), capture_stdout=True)
        result = pb.Run(**vars(child), counts=pb.parse_counts(child.output))
        ps.check_limit("limit-conftest", result)
        return result
    if kind == "plain":
        result = pb.run_pytest(args["plain"], cwd=suite)
        ps.check("plain", result, expected)
        return result
    venv = BASE_VENV if kind == "base" else pb.VENV
    argv = [str(venv / "bin" / "python"), "-m", "pytest", *args["cached"]]
    child = measure_child(argv, cwd=suite, env=pb.child_env(), capture_stdout=True)
    result = pb.Run(**vars(child), counts=pb.parse_counts(child.output))
    ps.check("cached", result, expected)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the base commit (Python package)")
    parser.add_argument("--runs", type=int, default=5, help="rounds per shape (5)")
    parser.add_argument("--shapes", default="all", help="all or A,B,... (plugin_shapes names)")
    parser.add_argument("--modules", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--max-load", type=float, default=0.0, help="wait before each round (plugin_bench's)"
    )
    args = parser.parse_args()
    prepare_base(args.base)
    plugins = pb.pytest11_plugins()
    rows = []
    for name in ps.parse_shapes(args.shapes):
        shape = ps.SHAPES[name]
        suite, expected = ps.build_shape(shape, 1.0, args.modules, args.seed)
        scen_args = pb.scenario_args(plugins, hypothesis=shape.hypothesis_plugin, precision=None)
        print(f"shape {shape.key} {name}", flush=True)
        # a store for this build's keys, and warm bytecode for every variant
        pb.run_pytest(scen_args["first"], cwd=suite)
        for kind in RUNS:
            run(kind, suite, scen_args, expected)
        runs: dict[str, list[pb.Run]] = {kind: [] for kind in RUNS}
        for _ in range(args.runs):
            pb.wait_for_quiet(args.max_load)
            for kind in RUNS:
                runs[kind].append(run(kind, suite, scen_args, expected))
            print(
                "  " + "  ".join(f"{k} {runs[k][-1].wall_s:.3f} s" for k in RUNS),
                f"load {runs['plain'][-1].load_1m:.2f}",
                flush=True,
            )
        rows.append((shape, runs))
    print()
    print(
        "| shape | plain | cached, base | cached, new | floor | base / plain | new / plain "
        "| CPU: base / plain, new / plain |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    for shape, runs in rows:
        wall = {k: [r.wall_s for r in runs[k]] for k in RUNS}
        cpu = {k: statistics.median(r.cpu_s for r in runs[k]) for k in RUNS}
        median = {k: statistics.median(v) for k, v in wall.items()}
        cells = [f"{shape.key} {shape.name}"]
        cells += [f"{median[kind]:.2f} s" for kind in RUNS]
        for kind in ("base", "new"):
            rounds = sorted(c / p for c, p in zip(wall[kind], wall["plain"]))
            share = median[kind] / median["plain"]
            cells.append(f"{share:.1%} (rounds {rounds[0]:.1%}-{rounds[-1]:.1%})")
        cells.append(f"{cpu['base'] / cpu['plain']:.1%}, {cpu['new'] / cpu['plain']:.1%}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
