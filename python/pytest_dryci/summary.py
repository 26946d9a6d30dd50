"""The lines DryCI adds to pytest's terminal summary."""

from __future__ import annotations

from pytest_dryci.decisions import Decisions
from pytest_dryci.discovery import file_part
from pytest_dryci.publishing import RunRecord
from pytest_dryci.settings import Degradations

MAX_DEGRADATION_LINES = 5


def saved_seconds(record: RunRecord, decisions: Decisions) -> float:
    """How long the served tests took when they last ran."""
    # Every test that passed under the hash of a file served whole is one of its tests.
    whole = {part for part in record.served_files if part not in record.deselected_files}
    saved_ms = sum(decisions.passed_ms.get(part, 0) for part in whole)
    others = [
        nodeid
        for nodeid in record.served_nodeids
        if file_part(nodeid) not in whole and nodeid not in decisions.durations
    ]
    decisions.passed(others)  # under xdist the workers matched them; ask once here
    saved_ms += sum(
        decisions.durations.get(nodeid) or 0
        for nodeid in record.served_nodeids
        if file_part(nodeid) not in whole
    )
    return saved_ms / 1000


def why_ran(record: RunRecord, decisions: Decisions, skip: bool) -> dict[str, str]:
    """For each test that ran: why it was not served. Made before this run
    publishes, which replaces what the reasons compare with."""
    ran = record.tracker.ran()
    if not ran:
        return {}
    if not skip:
        return dict.fromkeys(ran, "--dryci-no-skip runs every test")
    if decisions.native is None:
        return dict.fromkeys(ran, "DryCI could not start a session")
    reasons = decisions.native.explain(ran)
    return {nodeid: reasons.get(nodeid, "unknown") for nodeid in ran}


def explanations(reasons: dict[str, str]) -> list[str]:
    """The `--dryci-explain` lines: one per test that ran."""
    return [f"dryci: ran {nodeid}: {why}" for nodeid, why in sorted(reasons.items())]


def write_summary(
    write,
    record: RunRecord,
    decisions: Decisions,
    degradations: Degradations,
    published: int | None,
    not_selected: str | None = None,
) -> None:
    """`published` is None when publishing was switched off; `not_selected`
    says why -k, -m or node ids were not answered from records."""
    total, _, _ = record.tracker.counts()
    write(f"dryci: {total} tests ran")
    served_files = len(record.served_files)
    not_collected = f", {served_files} files not even collected" if served_files else ""
    write(
        f"dryci: {len(record.served_nodeids)} tests served from the cache "
        f"(they took {saved_seconds(record, decisions):.2f}s when they last ran{not_collected})"
    )
    deselected = record.deselected_count()
    if deselected:
        write(f"dryci: {deselected} tests deselected from records, their files not collected")
    if not_selected:
        write(f"dryci: -k, -m and node ids need collection here: {not_selected}")
    if published is None:
        write("dryci: nothing published (--dryci-no-publish)")
    else:
        write(f"dryci: {published} passes published")
    subprocesses, network = record.started("subprocesses"), record.started("network")
    if subprocesses or network:
        write(
            f"dryci: {subprocesses} tests started subprocesses, {network} connected to the "
            "network (ini dryci_serve_subprocess and dryci_serve_network say whether "
            "they may be served)"
        )
    if decisions.unhashed:
        sample = "; ".join(f"{p}: {why}" for p, why in sorted(decisions.unhashed.items())[:3])
        write(f"dryci: {len(decisions.unhashed)} test files could not be hashed and ran: {sample}")
    warnings = decisions.graph_warnings
    if warnings:
        write(
            f"dryci: {len(warnings)} dependency graph warnings "
            f"(`dryci graph -v` lists them), first: {warnings[0]}"
        )
    messages = degradations.messages
    for message in messages[:MAX_DEGRADATION_LINES]:
        write(f"dryci: degraded: {message}", yellow=True)
    if len(messages) > MAX_DEGRADATION_LINES:
        write(f"dryci: degraded: ... and {len(messages) - MAX_DEGRADATION_LINES} more")
