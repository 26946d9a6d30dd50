"""The hermeticity report (`--dryci-observed PATH`): per test file, what its
tests read at run time that its static dependency graph does not hold, the
subprocesses they started and the connections they opened, with the
`path_rules` entry that would make each file input static. Written as JSON;
the terminal summary gives the first lines."""

from __future__ import annotations

import json
import os
from collections import defaultdict

from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import NodeIdParts, file_part
from pytest_dryci.errors import DryciError
from pytest_dryci.publishing import RunRecord

SUMMARY_LINES = 5


def observed_report(record: RunRecord, decisions: Decisions, parts: NodeIdParts) -> list[dict]:
    """One entry per test file whose tests read anything outside its graph."""
    by_file: dict[str, dict[str, set]] = {}
    for nodeid, observed in record.observed.items():
        if not observed:
            continue  # most tests read nothing: `{}`
        part = file_part(nodeid)
        entry = by_file.get(part)
        if entry is None:
            entry = by_file[part] = defaultdict(set)
        for kind in ("files", "listings", "modules", "subprocesses", "network"):
            values = observed.get(kind)
            if values:
                entry[kind].update(values)
        environment = observed.get("env")
        if environment:
            entry["env"].update(environment)
    if decisions.native is None or not by_file:
        return []
    # Only the files whose tests read paths need the graph.
    paths = {
        part: sorted(read)
        for part, entry in by_file.items()
        if (read := entry["files"] | entry["listings"] | entry["modules"])
    }
    outside = decisions.native.outside_static_graph(paths) if paths else {}
    report = []
    for part, entry in sorted(by_file.items()):
        not_static = set(outside.get(part, ()))
        row = {
            "test_file": part,
            "files": _shown(entry["files"], not_static, parts),
            "listings": _shown(entry["listings"], not_static, parts),
            "modules": _shown(entry["modules"], not_static, parts),
            "environment": sorted(entry["env"]),
            "subprocesses": sorted(entry["subprocesses"]),
            "network": sorted(entry["network"]),
        }
        if not any(row[k] for k in row if k != "test_file"):
            continue
        static = [*row["files"], *row["modules"], *(f"{p}/*" for p in row["listings"])]
        inside = [p for p in static if not os.path.isabs(p)]
        row["path_rule"] = {part: {"visit": inside}} if inside else None
        report.append(row)
    return report


def _shown(paths: set[str], not_static: set[str], parts: NodeIdParts) -> list[str]:
    """The paths outside the static graph, relative to the rootdir when inside it."""
    return sorted(parts.shown(p) for p in paths if p in not_static)


def safe_observed_report(
    record: RunRecord, decisions: Decisions, parts: NodeIdParts
) -> tuple[list[dict] | None, str | None]:
    """The report, or None and why it could not be made."""
    try:
        return observed_report(record, decisions, parts), None
    except DryciError as err:
        return None, f"no observed-inputs report: {err}"


def write_report(path: str, report: list[dict], write) -> None:
    """Writes the report to `path` and its first lines with `write`."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"version": 1, "test_files": report}, out, indent=2)
        out.write("\n")
    write(
        f"dryci: {len(report)} test files read inputs outside their static graph, "
        f"started subprocesses or used the network (report: {path})"
    )
    lines = []
    for row in report:
        for kind in ("files", "listings", "modules", "environment", "subprocesses", "network"):
            lines.extend(f"dryci:   {row['test_file']}: {kind} {item}" for item in row[kind])
    for line in lines[:SUMMARY_LINES]:
        write(line)
    if len(lines) > SUMMARY_LINES:
        write(f"dryci:   ... and {len(lines) - SUMMARY_LINES} more")
