"""Condenses a cProfile file of one pytest run into the figures plugin_bench.py reports.

    python bench/pstats_report.py cached.prof   # prints one JSON object

Cumulative seconds of the phases that matter (collection, test-module imports, the run
loop, DryCI's decide/mark_passed and the native decide), self time of DryCI's Python code and of
assertion rewriting, and the 15 functions with the most self time. Run it with the
interpreter that wrote the file: pstats reads marshal data, whose format is the writer's.
"""

from __future__ import annotations

import json
import pstats
import sys
from typing import Any, Callable

Predicate = Callable[[str, str], bool]  # (file, function name) -> selected


def report(path: str) -> dict[str, Any]:
    # {(file, line, name): (primitive calls, calls, self time, cumulative time, callers)}
    stats = pstats.Stats(path).stats

    def cumulative(pred: Predicate) -> float:
        """The largest cumulative time among the selected functions (the outermost call)."""
        return max((v[3] for (file, _, name), v in stats.items() if pred(file, name)), default=0.0)

    def self_time(pred: Predicate) -> float:
        return sum(v[2] for (file, _, name), v in stats.items() if pred(file, name))

    out: dict[str, Any] = {
        "total": max(v[3] for v in stats.values()),
        "collect (Session.perform_collect)": cumulative(lambda f, n: n == "perform_collect"),
        "import of test modules": cumulative(
            lambda f, n: n in ("importtestmodule", "_importtestmodule")
        ),
        "runtestloop": cumulative(lambda f, n: n == "pytest_runtestloop" and "_pytest" in f),
        "dryci: decide (hash + query)": cumulative(
            lambda f, n: n == "decide" and "pytest_dryci" in f
        ),
        "dryci: skip markers (mark_passed)": cumulative(
            lambda f, n: n == "mark_passed" and "pytest_dryci" in f
        ),
        "dryci: native Session.decide": cumulative(lambda f, n: "'decide' of" in n),
        "dryci: all pytest_dryci code (self time)": self_time(lambda f, n: "pytest_dryci" in f),
        "assertion rewriting (self time)": self_time(lambda f, n: "assertion/rewrite" in f),
    }
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    out["top_self"] = [
        {
            "function": f"{name} ({'/'.join(file.rsplit('/', 2)[-2:])}:{line})",
            "self_s": round(v[2], 3),
            "calls": v[1],
        }
        for (file, line, name), v in top
    ]
    return out


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1])))
