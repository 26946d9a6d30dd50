#!/usr/bin/env python3
r"""Load benchmark of `dryci server` on SQLite (and PostgreSQL with --postgres URL).

What it does, per backend:
  1. starts the release binary on 127.0.0.1:0 with a fresh database;
  2. seeds it with --hashes stored test-file hashes (8 node ids each) through
     the v1 publish API;
  3. runs wrk (the client, on 127.0.0.1 only) for --duration seconds of v1
     queries of 100 hashes each (90 stored, 10 unknown) per workload, then
     for --duration / 2 seconds of v1 publishes of 20 new hashes x 10 ids.
     Workloads (which stored hashes a query asks for):
       uniform      any stored hash, equally likely: no locality at all, the
                    worst case for every cache;
       working-set  95% from the 50,000 most recently published hashes, 5%
                    from any: CI jobs ask for the hashes of recent commits,
                    most of which they share (a file's hash changes only
                    when its closure does), and rarely for old history;
  4. reads the server's peak RSS (VmHWM) and current RSS from /proc, and the
     CPU time it spent during the query phase (utime + stime), which is less
     noisy than queries/s when the cores are shared with other work.
Results are printed and, with --write FILE, put in FILE's "## Server" section.
Helpers shared with the other benchmarks are in bench/benchlib.py.

Bounded: every load phase is a fixed duration against a local port; nothing
leaves the machine. Needs `wrk` (apt-get install wrk) and, for PostgreSQL,
`psql` (the script creates and drops a database named dryci_bench).

    python3 bench/server_load.py --hashes 1000000 --duration 20 \
        --postgres "$DRYCI_TEST_POSTGRES_URL" --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import (
    build_release_binary,
    command_line,
    describe_machine,
    load_1m,
    machine_facts,
    md_table,
    measure_child,
    utc_now,
    write_section,
)

SECTION_TITLE = "## Server"
CONNECTIONS = [8]  # set from --connections, shown in the report
IDS_PER_HASH = 8
SEED_BATCH = 5000
QUERY_HASHES = 100
QUERY_HITS = 90
WORKING_SET = 50_000
WORKING_SET_SHARE = 0.95
WORKLOADS = ("uniform", "working-set")
GOAL_QPS, GOAL_P99_MS, GOAL_RSS_MB = 5000, 20, 100
PUBLISH_HASHES = 20
PUBLISH_IDS = 10


def file_hash(i: int) -> str:
    return hashlib.sha256(b"h%d" % i).hexdigest()


def node_ids(i: int, n: int) -> list[str]:
    return [f"{i:024x}{j:08x}" for j in range(n)]


class Server:
    def __init__(self, binary: Path, db: str, workdir: Path):
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(binary),
                "server",
                "--db",
                db,
                "--listen",
                "127.0.0.1:0",
                "--evict-unread-secs",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "DRYCI_LOG": "warn"},
        )
        self.token = None
        self.port = None
        assert self.proc.stdout is not None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if "initial admin token" in line:
                self.token = line.rsplit(" ", 1)[1].strip()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None or self.token is None:
            self.stop()
            raise SystemExit(f"server did not start; see {workdir / 'server.log'}")
        # Keep draining stdout so the server never blocks on it.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def rss_kib(self) -> tuple[int, int]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return hwm, rss

    def cpu_seconds(self) -> float:
        # Fields after the parenthesised command name: utime is the 12th, stime the 13th.
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path: str, body: bytes) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.request(
            "POST",
            path,
            body,
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 200:
            raise SystemExit(f"POST {path}: HTTP {resp.status}: {data[:300]!r}")
        return data

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def seed(server: Server, n: int) -> float:
    start = time.time()
    counts = {
        "total_test_count": 0,
        "passed_test_count": 0,
        "failed_test_count": 0,
        "skipped_test_count": 0,
        "skipped_by_cache_test_count": 0,
    }
    for lo in range(0, n, SEED_BATCH):
        batch = {
            file_hash(i): node_ids(i, IDS_PER_HASH) for i in range(lo, min(n, lo + SEED_BATCH))
        }
        server.post(
            "/api/v1/publish",
            json.dumps({"passed_node_ids_per_test_file": batch, **counts}).encode(),
        )
    return time.time() - start


LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,"
    .. "\"status_errors\":%d,\"socket_errors\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


UNKNOWN_POOL = 100_000
# Hashes travel in fixed runs of CHUNK, pre-formatted as JSON, so that wrk's
# Lua joins 10 strings per query, not 100: the client shares the server's two
# cores and every microsecond it spends is one the server does not get.
# Each stored hash is still asked for with the workload's probability.
CHUNK = 10


def hash_pool(path: Path, stored: int) -> None:
    """One line per CHUNK hashes: the stored ones in publish order, then
    UNKNOWN_POOL never-stored ones. wrk's Lua picks each query's chunks from
    this file at random, so a run asks for hundreds of thousands of distinct
    hashes, not a fixed few bodies that any cache would soon hold."""
    hashes = [file_hash(i) for i in range(stored - stored % CHUNK)]
    hashes += [file_hash(stored + 10_000_000 + i) for i in range(UNKNOWN_POOL)]
    with path.open("w") as out:
        for lo in range(0, len(hashes), CHUNK):
            out.write(", ".join(f'"{h}"' for h in hashes[lo : lo + CHUNK]) + "\n")


def query_script(path: Path, token: str, pool: Path, stored: int, workload: str) -> None:
    working_set = min(WORKING_SET, stored) if workload == "working-set" else 0
    stored_chunks, unknown_chunks = stored // CHUNK, UNKNOWN_POOL // CHUNK
    path.write_text(
        f'local hdrs = {{["Authorization"] = "Bearer {token}", '
        '["Content-Type"] = "application/json"}\n'
        f"local stored, unknown = {stored_chunks}, {unknown_chunks}\n"
        f"local working_set = {working_set // CHUNK}\n"
        "local chunks = {}\n"
        f'for line in io.lines("{pool}") do chunks[#chunks + 1] = line end\n'
        "math.randomseed(42)\n"
        # A chunk is drawn again when the query has it already: the server
        # refuses a query that names a hash twice (422).
        "request = function()\n"
        "  local parts, seen = {}, {}\n"
        f"  for k = 1, {QUERY_HASHES // CHUNK} do\n"
        "    local i\n"
        "    repeat\n"
        f"      if k > {QUERY_HITS // CHUNK} then\n"
        "        i = stored + math.random(unknown)\n"
        f"      elseif working_set > 0 and math.random() < {WORKING_SET_SHARE} then\n"
        "        i = stored - math.random(working_set) + 1\n"
        "      else\n"
        "        i = math.random(stored)\n"
        "      end\n"
        "    until not seen[i]\n"
        "    seen[i] = true\n"
        "    parts[k] = chunks[i]\n"
        "  end\n"
        '  local body = \'{"test_file_hashes": [\' .. table.concat(parts, ", ") .. "]}"\n'
        '  return wrk.format("POST", "/api/v1/query-passed", hdrs, body)\n'
        "end\n" + LUA_DONE
    )


def publish_script(path: Path, token: str) -> None:
    ids = ",".join(f'"{j:032x}"' for j in range(PUBLISH_IDS))
    path.write_text(
        f'local hdrs = {{["Authorization"] = "Bearer {token}", '
        '["Content-Type"] = "application/json"}\n'
        f"local ids = [[{ids}]]\n"
        "local n = 0\n"
        "local tid = tostring(math.random(1, 2^30))\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local parts = {}\n"
        f"  for k = 1, {PUBLISH_HASHES} do\n"
        '    local h = string.format("%048x%08x%08x", 0, n, k)\n'
        '    h = string.sub(tid .. string.rep("f", 64), 1, 8) .. string.sub(h, 9)\n'
        '    parts[#parts + 1] = "\\"" .. h .. "\\": [" .. ids .. "]"\n'
        "  end\n"
        '  local body = "{\\"passed_node_ids_per_test_file\\": {" '
        '.. table.concat(parts, ",") .. "},'
        ' \\"total_test_count\\": 0, \\"passed_test_count\\": 0, \\"failed_test_count\\": 0,'
        ' \\"skipped_test_count\\": 0, \\"skipped_by_cache_test_count\\": 0}"\n'
        '  return wrk.format("POST", "/api/v1/publish", hdrs, body)\n'
        "end\n" + LUA_DONE
    )


def wrk(port: int, script: Path, duration: int, connections: int, threads: int) -> dict:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    run = measure_child(argv, capture_stdout=True, timeout=duration + 60)
    if run.returncode != 0:
        raise SystemExit(f"wrk exited {run.returncode}:\n{run.output[-4000:]}")
    m = re.search(r"RESULT (\{.*\})", run.output)
    if not m:
        raise SystemExit(f"wrk printed no result:\n{run.output}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    # wrk shares the server's cores: what it spends, the server does not get.
    r["client_cpu_us_per_request"] = run.cpu_s * 1e6 / max(r["requests"], 1)
    return r


def run_backend(name: str, binary: Path, db: str, args, workdir: Path) -> dict:
    print(f"[{name}] starting server", flush=True)
    server = Server(binary, db, workdir)
    try:
        print(f"[{name}] seeding {args.hashes} hashes x {IDS_PER_HASH} ids", flush=True)
        seed_s = seed(server, args.hashes)
        print(f"[{name}] seeded in {seed_s:.1f}s; query load {args.duration}s", flush=True)
        pool = workdir / "hashes.txt"
        hash_pool(pool, args.hashes)
        queries = {}
        for workload in args.workloads:
            qs = workdir / f"query-{workload}.lua"
            query_script(qs, server.token, pool, args.hashes, workload)
            load_before = load_1m()
            cpu_before = server.cpu_seconds()
            print(f"[{name}] {workload} queries for {args.duration}s", flush=True)
            q = wrk(server.port, qs, args.duration, args.connections, args.wrk_threads)
            q["server_cpu_us_per_query"] = (
                (server.cpu_seconds() - cpu_before) * 1e6 / max(q["requests"], 1)
            )
            q["load_avg"] = (load_before, load_1m())
            q["rss_kib"] = server.rss_kib()[1]
            print(f"[{name}] {workload} queries: {q}", flush=True)
            queries[workload] = q
        ps = workdir / "publish.lua"
        publish_script(ps, server.token)
        p = wrk(server.port, ps, max(5, args.duration // 2), 8, 1)
        print(f"[{name}] publishes: {p}", flush=True)
        hwm, rss = server.rss_kib()
        return {
            "backend": name,
            "hashes": args.hashes,
            "seed_s": seed_s,
            "queries": queries,
            "publish": p,
            "peak_rss_kib": hwm,
            "rss_kib": rss,
        }
    finally:
        server.stop()


def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip("\n")
    return f"{describe_machine(machine_facts())}\n\n```\n$ free -h\n{free}\n```"


def goals(r: dict, q: dict) -> str:
    """The issue's goals, checked for SQLite: queries/s, p99, errors, peak RSS."""
    if r["backend"] != "SQLite":
        return "(goals are for SQLite)"
    checks = [
        (q["rps"] >= GOAL_QPS, f"{GOAL_QPS:,} q/s"),
        (q["p99_us"] / 1000 < GOAL_P99_MS, f"p99 < {GOAL_P99_MS} ms"),
        (q["status_errors"] + q["socket_errors"] == 0, "no errors"),
        (r["peak_rss_kib"] / 1024 < GOAL_RSS_MB, f"RSS < {GOAL_RSS_MB} MB"),
    ]
    missed = [name for ok, name in checks if not ok]
    return "all met" if not missed else "NOT met: " + ", ".join(missed)


QUERY_HEADER = (
    "backend",
    "workload",
    "stored hashes",
    "queries/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "server CPU ms per query",
    "client CPU ms per query",
    "RSS after MB",
    "load avg start / end",
    "goals",
)
PUBLISH_HEADER = (
    "backend",
    "publishes/s",
    "publish p50 ms",
    "publish p99 ms",
    "publish errors",
    "peak RSS MB (whole run)",
)


def markdown(results: list[dict], command: str) -> str:
    query_rows, publish_rows = [], []
    for r in results:
        for workload, q in r["queries"].items():
            query_rows.append(
                [
                    r["backend"],
                    workload,
                    f"{r['hashes']:,}",
                    f"{q['rps']:,.0f}",
                    f"{q['p50_us'] / 1000:.2f}",
                    f"{q['p99_us'] / 1000:.2f}",
                    str(q["status_errors"] + q["socket_errors"]),
                    f"{q['server_cpu_us_per_query'] / 1000:.2f}",
                    f"{q['client_cpu_us_per_request'] / 1000:.2f}",
                    f"{q['rss_kib'] / 1024:.0f}",
                    f"{q['load_avg'][0]:.1f} / {q['load_avg'][1]:.1f}",
                    goals(r, q),
                ]
            )
        p = r["publish"]
        publish_rows.append(
            [
                r["backend"],
                f"{p['rps']:,.0f}",
                f"{p['p50_us'] / 1000:.2f}",
                f"{p['p99_us'] / 1000:.2f}",
                str(p["status_errors"] + p["socket_errors"]),
                f"{r['peak_rss_kib'] / 1024:.0f}",
            ]
        )
    return (
        f"{SECTION_TITLE}\n\n"
        f"Measured {utc_now()} with `{command}`.\n"
        "Client: wrk on 127.0.0.1 (same machine, sharing the cores), "
        f"{CONNECTIONS[0]} connections for queries. Queries: v1, 100 hashes "
        f"each ({QUERY_HITS} stored, {QUERY_HASHES - QUERY_HITS} unknown). Workloads: "
        "*uniform* asks for any stored hash, equally likely (no locality: the worst case); "
        f"*working-set* takes {WORKING_SET_SHARE:.0%} of the stored hashes it asks for from "
        f"the {WORKING_SET:,} most recently published and the rest from any (CI jobs ask "
        "for the hashes of recent commits, which they mostly share). "
        f"Publishes: v1, {PUBLISH_HASHES} new hashes x {PUBLISH_IDS} ids each, 8 connections, "
        "each acknowledged only after commit. "
        f"Stored: the given number of hashes with {IDS_PER_HASH} ids each, "
        "seeded through the API.\n\n"
        f"Machine: {machine()}\n\n"
        + md_table(QUERY_HEADER, query_rows, "llrrrrrrrrll")
        + "\n\n"
        + md_table(PUBLISH_HEADER, publish_rows, "lrrrrr")
        + "\n\n"
        "Peak RSS includes seeding, whose 5,000-hash publish bodies (about 2 MB each) "
        "are parsed in memory. Goals (issue #4, SQLite, 2 cores): "
        f"{GOAL_QPS:,} queries/s, p99 under {GOAL_P99_MS} ms, no errors, "
        f"RSS under {GOAL_RSS_MB} MB.\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hashes", type=int, default=1_000_000)
    ap.add_argument(
        "--postgres-hashes",
        type=int,
        default=None,
        help="stored hashes for PostgreSQL (default: --hashes)",
    )
    ap.add_argument("--duration", type=int, default=20, help="seconds per load phase (max 120)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)",
    )
    ap.add_argument(
        "--postgres", default=None, help="postgres:// URL of a server to create dryci_bench on"
    )
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument(
        "--binary",
        type=Path,
        default=None,
        help="use this dryci binary instead of `cargo build --release --features server`",
    )
    args = ap.parse_args()
    args.duration = min(max(args.duration, 1), 120)
    CONNECTIONS[0] = args.connections
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown or not args.workloads:
        print(f"unknown workloads {unknown}: choose from {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    binary = args.binary or build_release_binary(["server"])
    results = []
    with tempfile.TemporaryDirectory(prefix="dryci-bench-") as tmp:
        work = Path(tmp)
        results.append(run_backend("SQLite", binary, str(work / "bench.sqlite"), args, work))
        if args.postgres:
            base = args.postgres.rsplit("/", 1)[0]
            admin = f"{base}/postgres"
            subprocess.run(
                ["psql", admin, "-qc", "DROP DATABASE IF EXISTS dryci_bench"], check=True
            )
            subprocess.run(["psql", admin, "-qc", "CREATE DATABASE dryci_bench"], check=True)
            pg_args = argparse.Namespace(**vars(args))
            pg_args.hashes = args.postgres_hashes or args.hashes
            try:
                results.append(
                    run_backend("PostgreSQL", binary, f"{base}/dryci_bench", pg_args, work)
                )
            finally:
                subprocess.run(
                    ["psql", admin, "-qc", "DROP DATABASE IF EXISTS dryci_bench"], check=False
                )
    section = markdown(results, command_line("bench/server_load.py", None))
    print(section)
    if args.write:
        write_section(args.write, SECTION_TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
