"""What the last `pytest --dryci` run leaves for `dryci explain` and
`dryci observed`: why each test that ran was not served, and what tests read
outside their static graph. One JSON file, `.dryci/last-run.json`, replaced
whole at the end of every run (written aside, then renamed, so a reader
never sees half of it). A failure to write it costs the run nothing."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

LAST_RUN = Path(".dryci") / "last-run.json"
VERSION = 1


def write_last_run(
    root: Path, ran: dict[str, str], served: int, observed: list[dict] | None
) -> str | None:
    """Writes the record under `root`; returns what went wrong, if anything."""
    path = root / LAST_RUN
    record = {
        "version": VERSION,
        "finished_at": int(time.time()),
        "served": served,
        "ran": [{"node_id": node_id, "why": why} for node_id, why in sorted(ran.items())],
        "observed": observed,
    }
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        # Compact: with `indent`, json encodes in Python, four times slower on
        # a run of thousands of tests; `dryci explain` is how people read it.
        text = json.dumps(record, separators=(",", ":"))
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return f"cannot write {path}: {err}"
    return None
