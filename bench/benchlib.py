"""What the benchmark scripts share: paths, the machine's description, building the release
binary, measuring one child process, medians, tables, and the BENCHMARKS.md section that
each script owns.

graph_bench.py, plugin_bench.py and server_load.py import it; they run as scripts, so
bench/ is on sys.path. Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
WORK = BENCH / "work"  # generated repositories, venvs, downloads: never committed
RESULTS = BENCH / "results"
BENCHMARKS_MD = PROJECT / "BENCHMARKS.md"

# ---------------------------------------------------------------------------------------------
# The machine and the source


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load_1m() -> float:
    """The 1-minute load average: other work on this shared machine stretches wall times."""
    return os.getloadavg()[0]


def git(*args: str) -> str:
    """`git ARGS` in the project, stripped stdout; a failure stops the benchmark."""
    return subprocess.run(
        ["git", *args], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.strip()


def machine_facts(python: str | Path | None = None) -> dict[str, Any]:
    """Cores, memory, CPU model, kernel, date, and the version of `python` (this
    interpreter by default; the plugin benchmark passes its venv's)."""
    cpu = "unknown"
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    if python is None:
        version = platform.python_version()
    else:
        version = subprocess.run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    return {
        # The cores this process may run on (a container's share), not the host's count.
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": version,
        "date": utc_now(),
    }


def describe_machine(facts: dict[str, Any]) -> str:
    """`2 cores, 23.5 GiB, <CPU model>, Linux <release>`, as every report words it."""
    return (
        f"{facts['nproc']} cores, {facts['memory_gib']} GiB, {facts['cpu']}, "
        f"Linux {facts['kernel']}"
    )


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How a report shows the command that produced it (argv defaults to sys.argv[1:])."""
    return shlex.join(["python3", script, *(sys.argv[1:] if argv is None else argv)])


# ---------------------------------------------------------------------------------------------
# Building and running


def run_checked(
    argv: Sequence[str | Path],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    echo: bool = False,
) -> str:
    """Runs argv to completion and returns its output (stdout and stderr); a non-zero exit
    stops the benchmark with the command and the tail of that output."""
    cmd = [str(a) for a in argv]
    if echo:
        print(f"  $ {shlex.join(cmd)}", flush=True)
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"error: {shlex.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}")
    return proc.stdout


def release_binary() -> Path:
    """Where `cargo build --release` puts the dryci binary (CARGO_TARGET_DIR honoured)."""
    return PROJECT / os.environ.get("CARGO_TARGET_DIR", "target") / "release" / "dryci"


def build_release_binary(features: Sequence[str] = ()) -> Path:
    """`cargo build --release --bin dryci` with `features`, its progress shown as it comes."""
    argv = ["cargo", "build", "--release", "--bin", "dryci"]
    if features:
        argv += ["--features", ",".join(features)]
    print(f"building: {shlex.join(argv)}", flush=True)
    if subprocess.run(argv, cwd=PROJECT).returncode != 0:
        sys.exit(f"error: {shlex.join(argv)} failed")
    binary = release_binary()
    if not binary.is_file():
        sys.exit(f"error: {binary} not found after the build")
    return binary


@dataclass
class ChildRun:
    """One run of one child process, every figure its own."""

    wall_s: float
    cpu_s: float  # user + sys
    max_rss_kib: int
    returncode: int
    output: str  # stdout and stderr with capture_stdout, else stderr only
    load_1m: float  # when it started


# A child forked from this Python process inherits its memory image until exec, and Linux
# folds that image's high-water mark into the child's ru_maxrss (even with vfork). So
# children are started through GNU time, a small C program, and its %M (max RSS of its
# child, KiB) is the peak; without it, os.wait4's figure is an upper bound that includes
# Python. CPU time still comes from os.wait4: it counts time's child, which time waits for.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_METHOD = (
    "GNU time %M (/usr/bin/time -f %M), one child per run"
    if GNU_TIME
    else "os.wait4 ru_maxrss (an upper bound: includes the forking Python's image)"
)


def measure_child(
    argv: Sequence[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    capture_stdout: bool = False,
    timeout: float | None = None,
) -> ChildRun:
    """Runs argv once: wall clock around it, CPU from os.wait4, peak RSS as above. With a
    timeout the child gets its own process group, killed whole when time runs out."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        full = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if GNU_TIME else list(argv)
        load = load_1m()
        start = time.perf_counter()
        proc = subprocess.Popen(
            full,
            cwd=cwd,
            env=env,
            stdout=out if capture_stdout else subprocess.DEVNULL,
            stderr=out,
            start_new_session=timeout is not None,
        )
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if timer is not None:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
        fields = rss.read().split()
        # Linux reports ru_maxrss in KiB, as does %M.
        max_rss = int(fields[-1]) if GNU_TIME and fields else int(usage.ru_maxrss)
    return ChildRun(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_kib=max_rss,
        returncode=proc.returncode,
        output=output,
        load_1m=load,
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended as the timer fired
        os.killpg(pid, signal.SIGKILL)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


# ---------------------------------------------------------------------------------------------
# Reporting


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table; `align` has one letter per column, `r` right-aligns it."""
    rule = "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(header), "l"))
    lines = ["| " + " | ".join(header) + " |", "|" + rule]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(path: Path, title: str, section: str) -> None:
    """Replaces the section whose heading line is `title` (up to the next `## ` heading),
    or appends it; every other section of the file is kept as it is, and so are the
    section's `### ` subsections that `section` does not hold (notes written by hand,
    another script's subsection), after the new text."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    found = re.search(rf"^{re.escape(title)}[ \t]*$", text, flags=re.M)
    if found is None:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        start = found.start()
        nxt = text.find("\n## ", found.end())
        tail = text[nxt + 1 :] if nxt != -1 else ""
        old = text[start : nxt + 1 if nxt != -1 else len(text)]
        kept = [
            sub
            for sub in _subsections(old)
            if not re.search(rf"^{re.escape(sub.splitlines()[0])}[ \t]*$", section, flags=re.M)
        ]
        body = "\n\n".join([section.rstrip("\n"), *(sub.rstrip("\n") for sub in kept)])
        text = text[:start] + body + "\n" + ("\n" + tail if tail else "")
    path.write_text(text)


def _subsections(section: str) -> list[str]:
    """The `### ` subsections of a section's text, each up to the next `### ` heading."""
    starts = [m.start() for m in re.finditer(r"^### ", section, flags=re.M)]
    return [section[a:b] for a, b in zip(starts, [*starts[1:], len(section)])]


def write_subsection(path: Path, section_title: str, title: str, subsection: str) -> None:
    """Replaces the subsection whose heading line is `title` (up to the next `### ` or
    `## ` heading) inside the section headed `section_title`, or appends it at the end of
    that section; everything else is kept. The section must exist."""
    text = path.read_text()
    section = re.search(rf"^{re.escape(section_title)}[ \t]*$", text, flags=re.M)
    if section is None:
        sys.exit(f"error: {path} has no section {section_title!r} to hold {title!r}")
    end = text.find("\n## ", section.end())
    end = len(text) if end == -1 else end + 1
    found = re.search(rf"^{re.escape(title)}[ \t]*$", text[section.end() : end], flags=re.M)
    if found is None:
        start = stop = end
        before = text[:start].rstrip("\n") + "\n\n"
    else:
        start = section.end() + found.start()
        nxt = re.search(r"^#{2,3} ", text[start + len(title) : end], flags=re.M)
        stop = start + len(title) + nxt.start() if nxt else end
        before = text[:start]
    after = text[stop:]
    text = before + subsection.rstrip("\n") + "\n" + ("\n" + after if after else "")
    path.write_text(text)
