#!/usr/bin/env python3
"""Mutation self-check of function-level keys (`--dryci-precision=function`, issue 11).

Not a timed benchmark: a soundness and precision check. For each target project it

1. copies the project into a temporary folder and makes it a git repository:
   (a) example_project, with its own pyproject.toml and repo_dagger.yaml;
   (b) bench/plugin_bench.py's generated suite (its generator, imported read-only), made
       eager: every package `__init__.py` imports all its modules and sub-packages, so
       every test's static closure is the whole package and file-level keys run every
       test after any edit, while function-level keys should run only the tests that
       reach the edited function;
2. records every test once with `pytest --dryci --dryci-precision=function`, and, in a
   second copy, once with file precision (the keys differ, so each has its own store),
   and checks that a run with no change serves every test;
3. for each function body of the package's sources (outermost functions and methods of
   classes; a deterministic sample of at most --max-mutations), replaces the body with
   `raise RuntimeError("mutated")` (the docstring and the indentation kept), then
   - runs the whole suite without DryCI: the failing tests F are those that execute the
     mutated function (it raises),
   - runs `pytest --dryci --dryci-no-publish` at function and at file precision: R, the
     tests that ran rather than being served,
   and restores the file byte for byte, checking that the tree is pristine again;
4. counts misses, |F - R| (a failing test that was served: unsound, the goal is 0), and
   the precision |R| / |F| (the goal is at most 1.5), prints a table per target, lists
   every miss, writes bench/results/mutation.json (mutation-trial.json with --no-markdown)
   and replaces its section of BENCHMARKS.md (--render-only rewrites it from the JSON).

Stdlib only, Python 3.9+. Run from anywhere: `python3 bench/mutation_check.py --help`.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    BENCHMARKS_MD,
    PROJECT,
    RESULTS,
    command_line,
    describe_machine,
    git,
    machine_facts,
    md_table,
    utc_now,
    write_section,
)
from plugin_bench import (
    OBSERVED_ENV,
    OBSERVED_ENV_VALUE,
    PACKAGE,
    generate_layout,
    write_layout,
)

SECTION_TITLE = "## Function-level keys: mutation self-check (issue 11)"
EXAMPLE = PROJECT / "example_project"
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
MUTATION = b'raise RuntimeError("mutated")'
PRECISIONS = ("function", "file")
RATIO_GOAL = 1.5
# What pytest writes that is not part of the tree under test.
NOT_THE_TREE = (".dryci/", "__pycache__/", ".pytest_cache/")
# The plain run (no DryCI) that tells which tests execute the mutated function.
PLAIN_ARGS = ("-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-rA")
# Recording and checking differ by --dryci-no-publish only, which is not part of any key:
# the check compares every mutation with the pristine record.
RECORD_ARGS = {
    precision: ("--dryci", f"--dryci-precision={precision}", "-p", "no:randomly", "-rA")
    for precision in PRECISIONS
}
RAN_WORDS = ("PASSED", "FAILED", "ERROR", "XFAIL", "XPASS")
FAILED_WORDS = ("FAILED", "ERROR")

# ---------------------------------------------------------------------------------------------
# Targets


@dataclass
class Target:
    """A project under test: one copy per precision (each with its own .dryci store), the
    folders whose Python files are mutated, and the node ids of its tests per test file."""

    name: str
    description: str
    roots: dict[str, Path]  # precision -> copy of the project
    sources: list[str]  # folders, relative to a root, whose .py files are mutated
    tests: dict[str, list[str]] = field(default_factory=dict)  # test file -> node ids

    @property
    def all_tests(self) -> set[str]:
        return {node for nodes in self.tests.values() for node in nodes}


def git_init(root: Path) -> None:
    """Makes `root` a git repository with one commit, so that `git status` can tell after
    each mutation that the tree is pristine again. What pytest and DryCI write is excluded
    in .git/info/exclude, which is not a file of the tree DryCI hashes."""
    quiet = {"cwd": root, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **quiet)
    (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("\n".join(NOT_THE_TREE) + "\n")
    subprocess.run(["git", "add", "-A"], **quiet)
    ident = ["-c", "user.name=mutation", "-c", "user.email=mutation@localhost"]
    subprocess.run(["git", *ident, "commit", "-q", "-m", "pristine"], **quiet)


def copies(source: Path, base: Path) -> dict[str, Path]:
    """One git-initialised copy of `source` per precision, under `base`: the file-precision
    store is recorded separately because its keys differ."""
    roots = {}
    for precision in PRECISIONS:
        root = base / precision
        shutil.copytree(source, root, ignore=shutil.ignore_patterns(".dryci", "__pycache__"))
        shutil.rmtree(root / ".pytest_cache", ignore_errors=True)
        git_init(root)
        roots[precision] = root
    return roots


def example_target(base: Path) -> Target:
    """example_project as it is, with its own configuration."""
    return Target(
        name="example_project",
        description="example_project (its own pyproject.toml and repo_dagger.yaml)",
        roots=copies(EXAMPLE, base / "example_project"),
        sources=["shop"],
    )


def make_eager(package: Path) -> int:
    """Rewrites every `__init__.py` below `package` to import all its modules and
    sub-packages (its docstring kept), so that importing any module imports the whole
    package: every test's static closure is then every module. Returns the files rewritten.

    The generator only imports modules of a lower index, so sorted order has no cycles."""
    rewritten = 0
    for init in sorted(package.rglob("__init__.py")):
        folder = init.parent
        names = sorted(p.stem for p in folder.glob("*.py") if p.name != "__init__.py")
        names += sorted(p.name for p in folder.iterdir() if (p / "__init__.py").is_file())
        if not names:
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        head = f'"""{docstring}"""\n\n' if docstring else ""
        init.write_text(head + "from . import " + ", ".join(sorted(names)) + "\n")
        rewritten += 1
    return rewritten


def suite_target(base: Path, modules: int, tests: int, seed: int, observed: float) -> Target:
    """plugin_bench.py's generated suite at this size, made eager."""
    layout = generate_layout(modules, tests, seed, observed)
    staging = base / "suite-staging"
    write_layout(layout, staging)
    inits = make_eager(staging / "src" / PACKAGE)
    description = (
        f"plugin_bench.py suite made eager: {modules} modules, {tests} test files, seed {seed}, "
        f"observed share {observed}; {inits} `__init__.py` files import every module"
    )
    roots = copies(staging, base / "suite")
    shutil.rmtree(staging)
    return Target(name="plugin_bench-eager", description=description, roots=roots, sources=["src"])


# ---------------------------------------------------------------------------------------------
# Function bodies and their mutation


@dataclass
class Body:
    """The statements of one function body, as a byte span of its file (ast columns are
    UTF-8 byte offsets): from the first statement after the docstring to the end of the
    last one. Replacing exactly that span keeps the docstring, the indentation and any
    comment after the body."""

    path: str  # relative to the root
    qualname: str
    lineno: int
    start: int
    end: int


def line_offsets(source: bytes) -> list[int]:
    """The byte offset at which each line starts (index 0 is line 1)."""
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def function_bodies(path: str, source: bytes) -> list[Body]:
    """The outermost functions of a module and the methods of its classes (nested classes
    included, functions inside functions not: they run only when their outer one does, and
    function-level keys name the outermost). A body that is only a docstring is skipped:
    there is nothing to replace without changing what the function is."""
    offsets = line_offsets(source)
    found: list[Body] = []

    def visit(statements: list[ast.stmt], prefix: str) -> None:
        for node in statements:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if is_docstring(node.body[0]) else node.body
                if not body:
                    continue
                first, last = body[0], body[-1]
                assert last.end_lineno is not None and last.end_col_offset is not None
                found.append(
                    Body(
                        path=path,
                        qualname=prefix + node.name,
                        lineno=node.lineno,
                        start=offsets[first.lineno - 1] + first.col_offset,
                        end=offsets[last.end_lineno - 1] + last.end_col_offset,
                    )
                )

    visit(ast.parse(source).body, "")
    return found


def enumerate_bodies(target: Target) -> list[Body]:
    """Every mutable function body of the target's sources (not its tests), in path order."""
    root = target.roots["function"]
    bodies: list[Body] = []
    for folder in target.sources:
        for file in sorted((root / folder).rglob("*.py")):
            rel = file.relative_to(root).as_posix()
            bodies += function_bodies(rel, file.read_bytes())
    return bodies


def sample(bodies: list[Body], limit: int, seed: int) -> list[Body]:
    """At most `limit` bodies, the same ones for the same seed, kept in path order."""
    if limit <= 0 or len(bodies) <= limit:
        return bodies
    chosen = sorted(random.Random(seed).sample(range(len(bodies)), limit))
    return [bodies[i] for i in chosen]


def mutated(source: bytes, body: Body) -> bytes:
    """`source` with `body` replaced by the raise; it must still parse."""
    text = source[: body.start] + MUTATION + source[body.end :]
    ast.parse(text)
    return text


# ---------------------------------------------------------------------------------------------
# Running pytest


def child_env() -> dict[str, str]:
    """The environment of every pytest run: no DryCI or pytest variables from the caller
    (a server, a salt, addopts would change what is served), no bytecode written (a
    restored file within the same second and of the same size as its mutation could be
    run from a stale .pyc), wide lines (node ids are read from the -rA summary) and the
    variable the generated suite's observed tests read, the same every run."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("DRYCI_", "PYTEST_")) or name in ("PYTHONPATH", "VIRTUAL_ENV"):
            del env[name]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["COLUMNS"] = "400"
    env[OBSERVED_ENV] = OBSERVED_ENV_VALUE
    return env


@dataclass
class PytestRun:
    returncode: int
    output: str
    outcomes: dict[str, str]  # node id (or test file, for a collection error) -> word


def run_module(
    python: Path, root: Path, argv: Sequence[str], timeout: float
) -> subprocess.CompletedProcess:
    """`python -m ARGV` in `root`, stderr folded into stdout."""
    return subprocess.run(
        [str(python), "-m", *argv],
        cwd=root,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def run_pytest(python: Path, root: Path, args: Sequence[str], timeout: float) -> PytestRun:
    """`python -m pytest ARGS` in `root`, its -rA summary read into node id -> outcome."""
    proc = run_module(python, root, ["pytest", *args], timeout)
    return PytestRun(proc.returncode, proc.stdout, summary_outcomes(proc.stdout))


def summary_outcomes(output: str) -> dict[str, str]:
    """Node id -> PASSED, FAILED, ERROR... from the short test summary (`-rA`). A served
    test is a SKIPPED line that names a location rather than a node id, so it is absent.
    A collection error names the test file only."""
    outcomes = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in RAN_WORDS and rest:
            node = rest.split(" - ", 1)[0].strip()
            # An ERROR of a setup and a FAILED of the call: keep the failure.
            if outcomes.get(node) not in FAILED_WORDS:
                outcomes[node] = word
    return outcomes


def expand(outcomes: dict[str, str], words: Sequence[str], target: Target) -> set[str]:
    """The node ids whose outcome is one of `words`; a collection error of a test file
    stands for every test the file holds in the pristine tree."""
    nodes = set()
    for node, word in outcomes.items():
        if word not in words:
            continue
        if "::" in node:
            nodes.add(node)
        else:
            nodes.update(target.tests.get(node, [node]))
    return nodes


def check_count(run: PytestRun, ran: set[str], what: str) -> None:
    """The tests read from the -rA summary must be as many as DryCI's own summary says
    ran (`dryci: N tests ran`): a line the parser missed would hide a miss."""
    found = re.search(r"^dryci: (\d+) tests ran$", run.output, flags=re.M)
    collection_error = any("::" not in node for node in run.outcomes)
    if found and not collection_error and int(found.group(1)) != len(ran):
        sys.exit(f"error: {what}: DryCI says {found.group(1)} tests ran, -rA shows {len(ran)}")


def record(target: Target, python: Path, timeout: float) -> None:
    """Records every test once per precision (all must pass), learns the suite's node ids
    from the plain run, and checks that a run with no change serves every test: otherwise
    the check would count tests that run for another reason than the mutation."""
    plain = run_pytest(python, target.roots["function"], PLAIN_ARGS, timeout)
    if plain.returncode != 0 or any(w != "PASSED" for w in plain.outcomes.values()):
        sys.exit(f"error: {target.name}: the pristine suite does not pass:\n{plain.output[-4000:]}")
    for node in sorted(plain.outcomes):
        target.tests.setdefault(node.split("::", 1)[0], []).append(node)
    for precision, root in target.roots.items():
        first = run_pytest(python, root, RECORD_ARGS[precision], timeout)
        ran = expand(first.outcomes, RAN_WORDS, target)
        if first.returncode != 0 or ran != target.all_tests or "degraded" in first.output:
            sys.exit(f"error: {target.name}: recording ({precision}):\n{first.output[-4000:]}")
        again = run_pytest(python, root, (*RECORD_ARGS[precision], "--dryci-no-publish"), timeout)
        if again.returncode != 0 or again.outcomes or "degraded" in again.output:
            sys.exit(
                f"error: {target.name}: a run with no change ({precision}) did not serve "
                f"every test:\n{again.output[-4000:]}"
            )
        print(f"  recorded {len(ran)} tests at {precision} precision", flush=True)


# ---------------------------------------------------------------------------------------------
# One mutation


@dataclass
class Mutation:
    """What one mutation made fail and what each precision ran."""

    path: str
    qualname: str
    lineno: int
    failed: list[str]
    ran: dict[str, list[str]]  # precision -> node ids that ran
    misses: dict[str, list[str]]  # precision -> failing node ids that were served
    explain: dict[str, str] = field(default_factory=dict)  # precision -> `explain` output

    def ratio(self, precision: str) -> float:
        return len(self.ran[precision]) / max(len(self.failed), 1)


def tree_is_pristine(root: Path) -> bool:
    """git sees no change in the tree (what pytest and DryCI write is excluded)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return status.stdout.strip() == ""


def explain_misses(python: Path, root: Path, misses: list[str], timeout: float) -> str:
    """`python -m pytest_dryci explain` for the missed tests, from the run just made: what
    DryCI says about them (a served test has no reason to run, so mostly: nothing)."""
    return run_module(python, root, ["pytest_dryci", "explain", *misses], timeout).stdout


def try_mutation(target: Target, body: Body, python: Path, timeout: float) -> Mutation:
    """Mutates `body` in every copy, runs the plain suite and both DryCI checks, and
    restores the file byte for byte, whatever happened; a tree that is not pristine
    afterwards stops the check (every later figure would be wrong)."""
    originals = {p: (root / body.path).read_bytes() for p, root in target.roots.items()}
    try:
        for precision, root in target.roots.items():
            (root / body.path).write_bytes(mutated(originals[precision], body))
        plain = run_pytest(python, target.roots["function"], PLAIN_ARGS, timeout)
        failed = expand(plain.outcomes, FAILED_WORDS, target)
        ran: dict[str, list[str]] = {}
        misses: dict[str, list[str]] = {}
        explain: dict[str, str] = {}
        for precision, root in target.roots.items():
            args = (*RECORD_ARGS[precision], "--dryci-no-publish")
            check = run_pytest(python, root, args, timeout)
            if "degraded" in check.output:
                sys.exit(f"error: {target.name}: degraded run ({precision}):\n{check.output}")
            ran_nodes = expand(check.outcomes, RAN_WORDS, target)
            check_count(check, ran_nodes, f"{target.name} {body.path}::{body.qualname}")
            ran[precision] = sorted(ran_nodes)
            misses[precision] = sorted(failed - ran_nodes)
            if misses[precision]:
                explain[precision] = explain_misses(python, root, misses[precision], timeout)
    finally:
        for precision, root in target.roots.items():
            (root / body.path).write_bytes(originals[precision])
    for precision, root in target.roots.items():
        if (root / body.path).read_bytes() != originals[precision] or not tree_is_pristine(root):
            sys.exit(f"error: {root} is not pristine after restoring {body.path}")
    return Mutation(
        path=body.path,
        qualname=body.qualname,
        lineno=body.lineno,
        failed=sorted(failed),
        ran=ran,
        misses=misses,
        explain=explain,
    )


# ---------------------------------------------------------------------------------------------
# Summary and report


def summarize(target: Target, bodies: int, mutations: list[Mutation]) -> dict[str, Any]:
    """Per precision: misses, and |R|/|F| and the share of tests run over the mutations
    that made a test fail (a function no test runs has no ratio: what it ran is counted
    apart)."""
    total = len(target.all_tests)
    live = [m for m in mutations if m.failed]
    dead = [m for m in mutations if not m.failed]
    stats: dict[str, Any] = {
        "target": target.name,
        "description": target.description,
        "tests": total,
        "function_bodies": bodies,
        "mutations": len(mutations),
        "mutations_failing_a_test": len(live),
        "failed_mean": statistics.mean(len(m.failed) for m in mutations) if mutations else 0.0,
        "precisions": {},
    }
    for precision in PRECISIONS:
        ratios = [m.ratio(precision) for m in live]
        stats["precisions"][precision] = {
            "misses": sum(len(m.misses[precision]) for m in mutations),
            "mutations_with_misses": sum(1 for m in mutations if m.misses[precision]),
            "ratio_median": statistics.median(ratios) if ratios else 0.0,
            "ratio_mean": statistics.mean(ratios) if ratios else 0.0,
            "ratio_max": max(ratios, default=0.0),
            "over_goal": sum(1 for r in ratios if r > RATIO_GOAL),
            "ran_mean": statistics.mean(len(m.ran[precision]) for m in mutations)
            if mutations
            else 0.0,
            "share_run_mean": statistics.mean(len(m.ran[precision]) / total for m in mutations)
            if mutations
            else 0.0,
            "ran_when_nothing_failed": sum(len(m.ran[precision]) for m in dead),
        }
    return stats


TABLE_HEADER = (
    "target",
    "precision",
    "tests",
    "mutations (of bodies)",
    "failing a test",
    "misses (goal 0)",
    "median |R|/|F|",
    "mean |R|/|F|",
    "max |R|/|F|",
    f"over {RATIO_GOAL}x",
    "mean |F|",
    "mean |R|",
    "mean share run",
)


def table_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for s in summaries:
        for precision in PRECISIONS:
            p = s["precisions"][precision]
            rows.append(
                [
                    s["target"],
                    precision,
                    str(s["tests"]),
                    f"{s['mutations']} (of {s['function_bodies']})",
                    str(s["mutations_failing_a_test"]),
                    f"{p['misses']} in {p['mutations_with_misses']} mutations",
                    f"{p['ratio_median']:.2f}",
                    f"{p['ratio_mean']:.2f}",
                    f"{p['ratio_max']:.2f}",
                    str(p["over_goal"]),
                    f"{s['failed_mean']:.1f}",
                    f"{p['ran_mean']:.1f}",
                    f"{p['share_run_mean']:.1%}",
                ]
            )
    return rows


def miss_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per mutation with misses: the file, the function, the served failing tests."""
    lines = []
    for result in results:
        for m in result["mutations"]:
            for precision, missed in m["misses"].items():
                if missed:
                    lines.append(
                        f"- {result['summary']['target']} ({precision} precision): "
                        f"`{m['path']}::{m['qualname']}` (line {m['lineno']}) failed "
                        f"{len(m['failed'])} tests, ran {len(m['ran'][precision])}; "
                        f"served although failing: {', '.join(f'`{n}`' for n in missed)}"
                    )
    return lines


def over_goal_lines(results: list[dict[str, Any]]) -> list[str]:
    """The function-precision mutations that ran more than RATIO_GOAL times the failing
    tests: where the precision is lost."""
    lines = []
    for result in results:
        for m in result["mutations"]:
            ran, failed = len(m["ran"]["function"]), len(m["failed"])
            if failed and ran / failed > RATIO_GOAL:
                lines.append(
                    f"- {result['summary']['target']}: `{m['path']}::{m['qualname']}` "
                    f"|F| {failed}, |R| {ran} ({ran / failed:.2f}x)"
                )
    return lines


def dead_sentence(results: list[dict[str, Any]]) -> str:
    """How many mutations hit a function no test runs, and what they ran anyway."""
    parts = []
    for result in results:
        s = result["summary"]
        dead = s["mutations"] - s["mutations_failing_a_test"]
        ran = {p: s["precisions"][p]["ran_when_nothing_failed"] for p in PRECISIONS}
        parts.append(
            f"{s['target']}: {dead} (tests they ran in all: function precision "
            f"{ran['function']}, file precision {ran['file']})"
        )
    return "Mutations of a function no test runs (nothing failed): " + "; ".join(parts) + "."


def markdown_section(report: dict[str, Any]) -> str:
    facts = report["machine"]
    misses = miss_lines(report["targets"])
    over = over_goal_lines(report["targets"])
    lines = [
        SECTION_TITLE,
        "",
        "A soundness and precision check of `--dryci-precision=function`, not a timing. "
        "Produced by (from the repository root):",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"- date: {facts['date']}; DryCI built from the sources of commit {report['commit']} "
        "(release, installed in .venv)",
        f"- machine: {describe_machine(facts)}; Python {facts['python']}; "
        f"the whole check took {report['seconds'] / 60:.1f} min",
    ]
    for result in report["targets"]:
        lines.append(f"- {result['summary']['target']}: {result['summary']['description']}")
    lines += [
        "- each mutation replaces one function body (outermost functions and methods of the "
        'package, not the tests) with `raise RuntimeError("mutated")`, docstring kept; F: the '
        "tests that fail in a plain run of the whole suite (they execute the function); R: the "
        "tests that `pytest --dryci --dryci-no-publish` ran rather than served, against a "
        "store recorded on the pristine tree (a separate store for each precision); every file "
        "restored byte for byte and `git status` checked clean after each mutation",
        "- misses: |F - R|, failing tests that were served (goal 0); |R|/|F| and its "
        f"median, mean and maximum over the mutations that made a test fail (goal <= "
        f"{RATIO_GOAL}); mean |F|, mean |R| and share run (|R| / tests in the suite): over "
        "every mutation",
        "- what the targets do not hold: caches, decorators, code run at import, threads, "
        "wide-scoped fixtures calling the package (tests/python/test_function_keys.py pins "
        "those cases); "
        "the generated suite's functions are small and call one another directly",
        "- function precision may run more than F by design (src/session/reach.rs): "
        "a test that ran a caller of the mutated function runs again, even if with its own "
        "inputs the caller did not call it, because the session saw that caller call it",
        "",
        md_table(
            TABLE_HEADER, table_rows([r["summary"] for r in report["targets"]]), "llrrrrrrrrrrr"
        ),
        "",
    ]
    lines.append(dead_sentence(report["targets"]))
    lines.append("")
    lines.append("Misses:" if misses else "Misses: none.")
    lines += misses
    if over:
        lines += ["", f"Function-precision mutations over {RATIO_GOAL}x:", *over]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main


def check_target(
    target: Target, python: Path, limit: int, seed: int, timeout: float
) -> dict[str, Any]:
    """Records, mutates each chosen body in turn and summarizes one target."""
    print(f"{target.name}: {target.description}", flush=True)
    record(target, python, timeout)
    bodies = enumerate_bodies(target)
    chosen = sample(bodies, limit, seed)
    print(f"  {len(target.all_tests)} tests; mutating {len(chosen)} of {len(bodies)} bodies")
    mutations = []
    for n, body in enumerate(chosen, 1):
        m = try_mutation(target, body, python, timeout)
        mutations.append(m)
        print(
            f"  [{n}/{len(chosen)}] {body.path}::{body.qualname}: |F| {len(m.failed)}, "
            + ", ".join(
                f"|R| {p} {len(m.ran[p])}" + (f" MISSES {m.misses[p]}" if m.misses[p] else "")
                for p in PRECISIONS
            ),
            flush=True,
        )
    return {
        "summary": summarize(target, len(bodies), mutations),
        "mutations": [asdict(m) for m in mutations],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-mutations", type=int, default=40, help="bodies mutated per target (40; 0: all)"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="sample and generator seed")
    parser.add_argument("--modules", type=int, default=30, help="generated suite modules (30)")
    parser.add_argument("--tests", type=int, default=20, help="generated suite test files (20)")
    parser.add_argument(
        "--observed-share",
        type=float,
        default=0.2,
        help="share of generated test files with a test reading a data file (0.2)",
    )
    parser.add_argument(
        "--targets",
        default="example,suite",
        metavar="A,B",
        help="which targets: example, suite (both)",
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=VENV_PYTHON,
        help="the interpreter with pytest and DryCI installed (.venv/bin/python)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--no-markdown",
        action="store_true",
        help="a trial run: do not touch BENCHMARKS.md, write bench/results/mutation-trial.json",
    )
    parser.add_argument(
        "--write", type=Path, default=BENCHMARKS_MD, metavar="FILE", help="(BENCHMARKS.md)"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite our BENCHMARKS.md section from bench/results/mutation.json; run nothing",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        report = json.loads((RESULTS / "mutation.json").read_text())
        write_section(args.write, SECTION_TITLE, markdown_section(report))
        print(f"updated {args.write}")
        return 0
    targets = [t for t in args.targets.split(",") if t]
    if not targets or set(targets) - {"example", "suite"}:
        parser.error("--targets: example, suite or both")
    if args.modules < 10 or args.tests < 1:
        parser.error("need --modules >= 10 and --tests >= 1")
    if not args.python.is_file():
        parser.error(f"--python: {args.python} not found (make venv, then pip install .)")

    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="dryci-mutation-"))
    print(f"working in {base}", flush=True)
    results = []
    try:
        for name in targets:
            if name == "example":
                target = example_target(base)
            else:
                target = suite_target(
                    base, args.modules, args.tests, args.seed, args.observed_share
                )
            results.append(
                check_target(target, args.python, args.max_mutations, args.seed, args.timeout)
            )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report = {
        "command": command_line("bench/mutation_check.py", argv),
        # The last commit that changed what is installed (this script's own commits do not).
        "commit": git("log", "-1", "--format=%h", "--", "src", "python", "Cargo.toml"),
        "machine": machine_facts(args.python),
        "seconds": time.perf_counter() - started,
        "finished": utc_now(),
        "targets": results,
    }
    print()
    print(md_table(TABLE_HEADER, table_rows([r["summary"] for r in results]), "llrrrrrrrrrrr"))
    misses = miss_lines(results)
    print("\nMisses:" if misses else "\nMisses: none.")
    for line in misses:
        print(line)
    for result in results:
        for m in result["mutations"]:
            for precision, text in m["explain"].items():
                print(f"\n--- explain ({precision}) {m['path']}::{m['qualname']}\n{text}")
    print(f"\nrun time: {report['seconds']:.0f} s")
    # A trial run keeps its JSON apart: --render-only must find the figures of the section.
    out = RESULTS / ("mutation-trial.json" if args.no_markdown else "mutation.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.no_markdown:
        write_section(args.write, SECTION_TITLE, markdown_section(report))
        print(f"updated {args.write}")
    return 1 if any(r["summary"]["precisions"]["function"]["misses"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
