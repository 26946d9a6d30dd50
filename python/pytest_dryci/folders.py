"""Serving a whole folder from `pytest_ignore_collect`, so that pytest does not
walk it file by file (a node, a collect report and a hook proxy per folder, and
two hook calls per file: 35 ms for 41 folders and 500 files of a cached run).

A folder is served whole only when that gives exactly what pytest's own walk
would: every file pytest would collect below it is one DryCI serves without
collecting it, and nothing else below it would be loaded or collected. So,
below the folder: no conftest.py (its hooks and fixtures would go unloaded), no
link (pytest follows them), no command-line argument, no file pytest's doctest
plugin would collect; and, in the whole run, no plugin or conftest that ignores
or collects files its own way (only pytest's `pytest_ignore_collect`,
`pytest_collect_file` and `pytest_collect_directory`, hypothesis's and DryCI's). Which files
pytest ignores is its own rule, read from its own configuration: `--ignore`,
`--ignore-glob`, `collect_ignore` and `collect_ignore_glob` of the conftests
above the folder (none below it), and, for subfolders, the hook itself
(`norecursedirs`, virtualenvs). Anything else keeps pytest's walk.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

from pytest_dryci.discovery import NodeIdParts, any_of, file_part

# The plugins whose collection hooks are known, besides DryCI's: pytest's own,
# and hypothesis's, which only ignores folders named `.hypothesis`.
KNOWN_COLLECTORS = {
    "pytest_ignore_collect": ("_pytest.main", "_hypothesis_pytestplugin"),
    "pytest_collect_file": ("_pytest.python", "_pytest.doctest"),
    "pytest_collect_directory": ("_pytest.main", "_pytest.python"),
}
DOCTEST_DEFAULT_GLOBS = ["test*.txt"]


class FolderServing:
    """Answers, for a folder pytest is about to walk, which files to serve
    instead of walking it (None: walk it)."""

    def __init__(
        self,
        config: pytest.Config,
        parts: NodeIdParts,
        served: Collection[str],
        explicit_files: Collection[str],
        own_plugins: Collection[object],
    ) -> None:
        self.config = config
        self.parts = parts
        self.served = served
        self.explicit_files = explicit_files
        self.own_plugins = own_plugins
        self.is_test_file = _patterns_on_names(config.getini("python_files"))
        self.is_doctest = _doctest_files(config)
        invocation_dir = Path(config.invocation_params.dir)
        self.arguments = [os.path.normpath(invocation_dir / file_part(arg)) for arg in config.args]
        # Whether pytest's private helper for conftest settings is there (pytest 8 and 9).
        self.conftest_settings = getattr(config, "_getconftest_pathlist", None)
        # While a folder is scanned, pytest's hook is asked about its subfolders: not DryCI's.
        self.scanning = False
        # folder -> the test files below it pytest would collect, or None: it
        # must be walked. A folder walked is asked about its subfolders next.
        self.scans: dict[str, list[str] | None] = {}

    def files_to_serve(self, folder: Path) -> list[str] | None:
        """The served files below `folder` (node-id parts) when pytest's walk
        of it would collect exactly those; None when it must be walked."""
        if (
            self.scanning
            or self.is_test_file is None
            or self.is_doctest is None
            or self.conftest_settings is None
            or not self._only_known_collectors()
        ):
            return None
        folder_text = os.path.join(str(folder), "")
        if any(arg == str(folder) or arg.startswith(folder_text) for arg in self.arguments):
            return None
        ignored = self._ignored_below(folder)
        self.scanning = True
        try:
            candidates = self._scan(str(folder), ignored)
        finally:
            self.scanning = False
        if candidates is None:
            return None
        found = []
        for path in candidates:
            part = self.parts.of(path)
            if part is None or part not in self.served or part in self.explicit_files:
                return None
            found.append(part)
        return found

    def _only_known_collectors(self) -> bool:
        """No plugin or conftest registered so far ignores or collects files its own way."""
        hooks = self.config.pluginmanager.hook
        for hook_name, known in KNOWN_COLLECTORS.items():
            for implementation in getattr(hooks, hook_name).get_hookimpls():
                plugin = implementation.plugin
                if plugin in self.own_plugins:
                    continue
                if getattr(plugin, "__name__", None) not in known:
                    return False
        return True

    def _ignored_below(self, folder: Path) -> Callable[[str], bool]:
        """The part of pytest's rule (`pytest_ignore_collect` of `_pytest.main`)
        read from the command line and the conftests, for everything below
        `folder`: the conftests of its parent, the folder pytest is walking,
        as there is no conftest.py in it or below it (pytest reads those of
        a folder only once it walks it)."""
        config = self.config
        parent = folder.parent
        paths = list(self.conftest_settings("collect_ignore", path=parent) or [])
        paths.extend(os.path.abspath(p) for p in config.getoption("ignore") or [])
        globs = list(self.conftest_settings("collect_ignore_glob", path=parent) or [])
        globs.extend(os.path.abspath(p) for p in config.getoption("ignore_glob") or [])
        ignored_paths = {str(p) for p in paths}
        glob_texts = [str(g) for g in globs]
        return lambda path: (
            path in ignored_paths or any(fnmatch.fnmatch(path, glob) for glob in glob_texts)
        )

    def _scan(self, folder: str, ignored: Callable[[str], bool]) -> list[str] | None:
        """The test files below `folder` pytest would collect; None as soon
        as something below it needs pytest's walk."""
        if folder in self.scans:
            return self.scans[folder]
        found = self.scans[folder] = self._scan_listing(folder, ignored)
        return found

    def _scan_listing(self, folder: str, ignored: Callable[[str], bool]) -> list[str] | None:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            return None
        if any(entry.name == "conftest.py" or entry.is_symlink() for entry in entries):
            return None
        found: list[str] = []
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if ignored(entry.path) or self.config.hook.pytest_ignore_collect(
                    collection_path=Path(entry.path), config=self.config
                ):
                    continue  # pytest does not enter it: nothing below is collected
                below = self._scan(entry.path, ignored)
                if below is None:
                    return None
                found.extend(below)
            elif self.is_doctest(name):
                return None
            elif name.endswith(".py") and self.is_test_file(name) and not ignored(entry.path):
                found.append(entry.path)
        return found


def _patterns_on_names(patterns: list[str]) -> Callable[[str], bool] | None:
    """`any_of(patterns)` when every pattern names files by their name alone
    (pytest matches one with a separator against the whole path); else None."""
    if any("/" in p or os.sep in p for p in patterns):
        return None
    return any_of(patterns)


def _doctest_files(config: pytest.Config) -> Callable[[str], bool] | None:
    """Whether pytest's doctest plugin would collect a file of this name; None
    when it would collect Python modules too (--doctest-modules)."""
    if not config.pluginmanager.has_plugin("doctest"):
        return lambda name: False
    if config.getoption("doctestmodules", False):
        return None
    return _patterns_on_names(config.getoption("doctestglob", None) or DOCTEST_DEFAULT_GLOBS)
