"""Shared by the benchmark scripts: each owns one `## ` section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, title: str, section: str) -> None:
    """Replace the section headed `title` (up to the next `## ` heading), or append it;
    every other section is kept as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(title)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        nxt = text.find("\n## ", start + len(title))
        tail = text[nxt + 1 :] if nxt != -1 else ""
        text = text[:start] + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    path.write_text(text)
