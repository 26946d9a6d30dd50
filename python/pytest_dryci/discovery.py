"""Which files pytest will collect, named as pytest names them in node ids,
found before collection so they can be hashed (and some not collected)."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest


def file_part(nodeid: str) -> str:
    """`tests/test_a.py::TestX::test_y[1]` -> `tests/test_a.py`"""
    return nodeid.split("::", 1)[0]


def any_of(patterns: list[str]) -> Callable[[str], bool]:
    """A predicate: does a name match any of the glob `patterns` (as
    fnmatch.fnmatch would), compiled into one regular expression."""
    if not patterns:
        return lambda name: False
    match = re.compile("|".join(fnmatch.translate(os.path.normcase(p)) for p in patterns)).match
    return lambda name: match(os.path.normcase(name)) is not None


class NodeIdParts:
    """The node-id prefix pytest gives a file: its path relative to the
    rootdir, unresolved, as pytest computes it."""

    def __init__(self, rootpath: Path) -> None:
        self.root = str(rootpath)
        # "<root>/" on POSIX: a normalised path below it is its node-id prefix as it stands.
        self.prefix = os.path.join(self.root, "") if os.sep == "/" else None

    def of(self, path: Path | str) -> str | None:
        """The node-id part of `path`, or None outside the root."""
        text = os.fspath(path)
        prefix = self.prefix
        if (
            prefix
            and text.startswith(prefix)
            and "/." not in text
            and "//" not in text
            and not text.endswith("/")
        ):
            return text[len(prefix) :]  # what relpath gives for it, at a fraction of the cost
        rel = os.path.relpath(text, self.root)
        if rel == ".." or rel.startswith(("../", "..\\")) or os.path.isabs(rel):
            return None
        return rel.replace(os.sep, "/")

    def shown(self, path: str) -> str:
        """`path` relative to the rootdir when inside it, else as given."""
        part = self.of(path)
        return part if part is not None else path


def explicit_files(config: pytest.Config, parts: NodeIdParts) -> set[str]:
    """Files named on the command line: pytest collects them even when ignored."""
    invocation_dir = Path(config.invocation_params.dir)
    return {part for arg in config.args if (part := parts.of(invocation_dir / file_part(arg)))}


def discover_test_files(
    config: pytest.Config, parts: NodeIdParts, conftests: list[str] | None = None
) -> dict[str, str]:
    """The files pytest will collect (python_files under the arguments):
    node-id part -> path. The conftest.py files found under folder
    arguments are added to `conftests` when given."""
    is_test_file = any_of(config.getini("python_files"))
    is_norecurse = any_of(config.getini("norecursedirs"))
    invocation_dir = Path(config.invocation_params.dir)
    args = config.args or [str(invocation_dir)]
    found: dict[str, str] = {}

    def add(path: str) -> None:
        part = parts.of(path)
        if part is not None:  # outside the root: its tests run uncached
            found[part] = path

    for arg in args:
        path = os.path.normpath(invocation_dir / file_part(arg))
        if os.path.isfile(path):
            add(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not is_norecurse(d)]
            for name in filenames:
                if is_test_file(name):
                    add(os.path.join(dirpath, name))
                elif name == "conftest.py" and conftests is not None:
                    conftests.append(os.path.join(dirpath, name))
    return found
