"""Serving whole test files from the cache without collecting them.

When every test of a file passed under the file's current dependency hash
(a "complete file" record in the local store), importing the file again only
to skip each test is wasted time: pytest's collection is its largest fixed
cost. Such a file is replaced by a `CachedFile` whose items carry the same
node ids and a skip marker, so reports, counts and `-rs` stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest


class CachedItem(pytest.Item):
    """A test known to have passed; it is skipped by its marker, never run."""

    def runtest(self) -> None:
        raise RuntimeError(f"dryci: {self.nodeid} is served from the cache and cannot run")

    def reportinfo(self):
        return self.path, 0, self.name  # a marker skip is reported at a line


class CachedFile(pytest.File):
    """A test file served from the cache: its items without importing it."""

    node_ids: list[str]
    skip_reason: str

    def collect(self) -> Iterable[CachedItem]:
        prefix = self.nodeid + "::"
        marker = pytest.mark.skip(reason=self.skip_reason)
        for node_id in self.node_ids:
            if not node_id.startswith(prefix):
                continue
            item = CachedItem.from_parent(self, name=node_id[len(prefix) :])
            item.add_marker(marker)
            yield item


def cached_file(parent: pytest.Collector, path, node_ids: list[str], reason: str) -> CachedFile:
    collector = CachedFile.from_parent(parent, path=path)
    collector.node_ids = node_ids
    collector.skip_reason = reason
    return collector
