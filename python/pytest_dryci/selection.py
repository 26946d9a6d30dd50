"""Selecting tests from records instead of collecting their files (issue 12).

A run that collects a whole test file records, with the file's node ids,
what pytest's `-k` and `-m` match each of them against ("matchers"): the
names `KeywordMatcher.from_item` gathers, and each marker's name and keyword
arguments, taken before anything is deselected. The file's key covers every
input of its collection, so a later run under the same key decides `-k`,
`-m` and node-id arguments from the record, with pytest's own expression
matching, and imports the file only when a selected test has no result to
serve. The deselected tests are reported as pytest reports them
(`pytest_deselected`), the selected ones are served as whole files are.

What a record cannot answer is collected as before (fail-open):
- a plugin or conftest other than pytest's own, DryCI, pytest-xdist and
  pytest-randomly implementing `pytest_collection_modifyitems`,
  `pytest_itemcollected` or `pytest_deselected` (`UNSAFE_HOOKS`): it may add
  markers or keywords, drop or reorder by name, or read the deselected
  items. In the run that records, its presence means no matchers are
  recorded; in the run that selects, nothing is selected from records. A
  conftest that collection would only load later is read as text: naming
  one of those hooks, `pluginmanager` or `pytest_plugins` counts;
- a marker keyword argument that is not a str, int, bool, None or finite
  float, when `-m` compares it (`level(n=...)`);
- pytest internals other than the ones this module was written against
  (checked once, `_pytest_api`); node-id arguments need pytest 9's
  collection arguments; `--pyargs` and `--keep-duplicates` select nothing
  from records;
- an expression pytest would reject, or a node-id argument that names
  nothing in the record (pytest reports both).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pytest_dryci.discovery import NodeIdParts

# The encoding of matchers; a record of another version is no record.
MATCHERS_VERSION = 1
UNSAFE_HOOKS = ("pytest_collection_modifyitems", "pytest_itemcollected", "pytest_deselected")
# Packages whose implementations of UNSAFE_HOOKS only deselect by the
# options DryCI already declines (--lf, --deselect, --sw), reorder, rename
# for --dist loadgroup (xdist's worker, `_trusted`), or count.
TRUSTED_PACKAGES = frozenset({"_pytest", "pytest_dryci", "xdist", "pytest_randomly"})
# Hypothesis's plugin marks each of its tests `hypothesis` in
# pytest_collection_modifyitems and does nothing else there; a record adds
# that marker as the plugin does (`_hypothesis_marked`), so it is trusted as
# long as it runs before pytest's own deselection, as it does once
# registered after pytest's plugins (`_hypothesis_before_deselection`).
HYPOTHESIS_PLUGIN = "_hypothesis_pytestplugin"
# Words in a conftest not loaded yet that may mean one of UNSAFE_HOOKS.
UNSAFE_WORDS = (*UNSAFE_HOOKS, "pluginmanager", "pytest_plugins")


class Elision(NamedTuple):
    """A test file served without collection: the node ids to serve, and
    those deselected from its record (None when the run selects nothing,
    and every test of the file is served)."""

    served: list[str]
    deselected: list[str] | None


class RecordedItem:
    """What `pytest_deselected` receives for a test deselected from a
    record: pytest's terminal only counts them, pytest-xdist ignores them.
    Not slotted: plugins read the `__dict__` of what the terminal's stats
    hold (hypothesis's summary does)."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __repr__(self) -> str:
        return f"<RecordedItem {self.nodeid}>"


class CannotAnswer(Exception):
    """A record cannot say what pytest would select: collect the file."""


class _Unrecorded:
    """A marker keyword argument the record could not keep: comparing it
    (`-m "name(key=value)"`) cannot be answered from the record."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        raise CannotAnswer("a marker argument was not recorded")

    __ne__ = __eq__  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]


class _RecordedMark:
    """What `MarkMatcher` reads of a marker: its keyword arguments."""

    __slots__ = ("kwargs",)

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


@dataclasses.dataclass(frozen=True)
class _Api:
    keyword_matcher: Any
    mark_matcher: Any
    expression: Any


@functools.cache
def _pytest_api() -> _Api | None:
    """pytest's matchers and expressions (private), if they behave as this
    module expects: rebuilt from recorded data, they must answer as pytest's."""
    try:
        from _pytest.mark import KeywordMatcher, MarkMatcher
        from _pytest.mark.expression import Expression

        api = _Api(KeywordMatcher, MarkMatcher, Expression)
        keywords = KeywordMatcher({"TestGroup", "test_it[alpha-1]", "slow"})
        marks = MarkMatcher({"level": [_RecordedMark({"n": 2})]})
        checks = (
            Expression.compile("testgroup and alpha-1 and not fast").evaluate(keywords),
            not Expression.compile("it[beta").evaluate(keywords),
            Expression.compile("level(n=2)").evaluate(marks),
            not Expression.compile("level(n=3) or other").evaluate(marks),
            callable(getattr(KeywordMatcher, "from_item", None)),
        )
    except Exception:
        return None
    return api if all(checks) else None


@functools.cache
def _collection_arguments() -> tuple[Any, Any] | None:
    """pytest 9's parsing and normalising of collection arguments (node ids
    with a separate parametrization, overlaps removed), if present."""
    try:
        from _pytest.main import (
            CollectionArgument,
            normalize_collection_arguments,
            resolve_collection_argument,
        )

        fields = {field.name for field in dataclasses.fields(CollectionArgument)}
    except Exception:
        return None
    if not {"path", "parts", "parametrization"} <= fields:
        return None
    return resolve_collection_argument, normalize_collection_arguments


# -- recording ------------------------------------------------------------------


def _recordable(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return {"?": type(value).__name__}


def encode_matchers(items: Sequence[pytest.Item]) -> str | None:
    """What `-k` and `-m` match each of `items` (one file's, in order)
    against, as pytest computes it; None when pytest's matchers are not
    the expected ones or an item does not let itself be read."""
    api = _pytest_api()
    if api is None:
        return None
    names: dict[str, int] = {}
    marks: list[list] = []
    mark_index: dict[str, int] = {}
    by_identity: dict[int, int] = {}  # marks are shared by the items of a class or module
    rows = []
    try:
        for item in items:
            hypothesis = _hypothesis_marked(item)
            item_names = set(_keyword_names(api, item)) | ({"hypothesis"} if hypothesis else set())
            keywords = sorted({names.setdefault(n, len(names)) for n in item_names})
            own: set[int] = set()
            extra = [pytest.mark.hypothesis.mark] if hypothesis else []
            for mark in [*item.iter_markers(), *extra]:
                index = by_identity.get(id(mark))
                if index is None:
                    entry = [mark.name, {k: _recordable(v) for k, v in mark.kwargs.items()}]
                    key = json.dumps(entry, sort_keys=True)
                    index = mark_index.get(key)
                    if index is None:
                        index = mark_index[key] = len(marks)
                        marks.append(entry)
                    by_identity[id(mark)] = index
                own.add(index)
            rows.append([keywords, sorted(own)])
        record = {"v": MATCHERS_VERSION, "names": list(names), "marks": marks, "items": rows}
        return json.dumps(record, separators=(",", ":"))
    except Exception:
        return None


def _hypothesis_marked(item: pytest.Item) -> bool:
    """Whether hypothesis's plugin marks `item` in this hook call: its test
    function is a hypothesis test, and hypothesis is imported (the plugin
    marks nothing otherwise)."""
    hypothesis = sys.modules.get("hypothesis")
    is_test = getattr(hypothesis, "is_hypothesis_test", None)
    if not callable(is_test) or not isinstance(item, pytest.Function):
        return False
    return bool(is_test(item.obj))


def _keyword_names(api: _Api, item: pytest.Item) -> Iterable[str]:
    names = api.keyword_matcher.from_item(item)._names
    if not all(type(name) is str for name in names):
        raise TypeError("a keyword that is not a string")
    return names


# One test's row in a record's "items", as encode_matchers writes it:
# [[keyword indexes],[mark indexes]]; the group is the mark indexes.
_ITEM_MARKS = re.compile(r"\[\[[0-9,]*\],\[([0-9,]*)\]\]")
_RECORD_START = f'{{"v":{MATCHERS_VERSION},"names":['


def _read_marks_only(text: str, count: int) -> tuple[str, list[str]] | None:
    """(the text of the marks list, each test's mark indexes as text) of a
    record written by `encode_matchers`, without decoding its names and
    keyword rows: for -m alone, where building those lists was most of the
    time (15 ms of 18 for the 475 records of 18,000 tests of the
    benchmark's deselect shape). None when the text is not exactly that
    layout; the caller decodes it whole. The layout is ours: the keys in
    the order v, names, marks, items; names only strings (so `,"marks":[`
    cannot occur in them, a quote in a string being escaped); items only
    numbers (so the last `,"items":[` is the key)."""
    if not text.startswith(_RECORD_START):
        return None
    marks_at = text.find(',"marks":[')
    items_at = text.rfind(',"items":[')
    if marks_at < 0 or items_at < marks_at or not text.endswith("]}"):
        return None
    sets = _ITEM_MARKS.findall(text, items_at + 9)
    if len(sets) != count:
        return None
    return text[marks_at + 9 : items_at], sets


class _Decoded:
    """One file's matchers, rebuilt as pytest's matcher objects on demand.
    `shared` holds the answers of the run's -m expression for every file,
    by set of markers (`_mark_answer`). Without `names` (-m alone), only the
    markers are read when the record allows (`_read_marks_only`), and
    decoded only for a set whose answer the run has not seen in a file
    with the same list of markers (most files of a suite have the same)."""

    def __init__(self, api: _Api, text: str, count: int, shared: dict, names: bool = True) -> None:
        self.api = api
        self.shared = shared
        # each test's set of markers: a key into mark_answers and `_indexes`
        self.mark_sets: list
        # the record's marks, as text (read for -m alone) or decoded
        self.marks_text: str | None = None
        self.decoded_marks: list | None = None
        marks_only = None if names else _read_marks_only(text, count)
        if marks_only is not None:
            self.marks_text, self.mark_sets = marks_only
        else:
            record = json.loads(text)
            if record.get("v") != MATCHERS_VERSION or len(record["items"]) != count:
                raise CannotAnswer("a record of another version")
            self.names: list[str] = record["names"]
            self.items: list[list[list[int]]] = record["items"]
            self.decoded_marks = record["marks"]
            self.mark_sets = [tuple(row[1]) for row in self.items]
        self.mark_answers: dict = {}

    @functools.cached_property
    def recorded_marks(self) -> list:
        """The record's marks: [name, keyword arguments] each."""
        if self.decoded_marks is not None:
            return self.decoded_marks
        marks = json.loads(self.marks_text or "")
        if not isinstance(marks, list):
            raise CannotAnswer("an unreadable record (marks)")
        return marks

    @functools.cached_property
    def marks(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (name, {k: _Unrecorded() if isinstance(v, dict) else v for k, v in kwargs.items()})
            for name, kwargs in self.recorded_marks
        ]

    @functools.cached_property
    def mark_keys(self) -> list[tuple[str, ...]]:
        """What identifies each of the file's markers across files."""
        return [
            (name, json.dumps(kwargs, sort_keys=True)) if kwargs else (name,)
            for name, kwargs in self.recorded_marks
        ]

    def keywords(self, index: int) -> set[str]:
        names = self.names
        return {names[i] for i in self.items[index][0]}

    def keyword_match(self, index: int, expression) -> bool:
        return expression.evaluate(self.api.keyword_matcher(self.keywords(index)))

    def mark_match(self, index: int, expression) -> bool:
        answer = self.mark_answers.get(self.mark_sets[index])
        if answer is None:
            answer = self._mark_answer(self.mark_sets[index], expression)
        return answer

    def mark_keeps(self, expression) -> list[bool]:
        """Whether each test is kept by `expression`, a -m expression."""
        sets = self.mark_sets
        answers = self.mark_answers
        for own in set(sets):
            if own not in answers:
                self._mark_answer(own, expression)
        return list(map(answers.__getitem__, sets))

    def _mark_answer(self, own, expression) -> bool:
        # Many tests share their markers, within a file and across files (a
        # stress marker, a parametrize without keyword arguments): one
        # answer per set of them in the file, found among the run's answers
        # by the file's list of markers as recorded and the set's indexes
        # into it, or else by what the markers are, in the file's order
        # (the order of each name's list that pytest's matcher walks).
        shared = self.shared
        by_text = (self.marks_text, own) if self.marks_text is not None else None
        answer = shared.get(by_text) if by_text is not None else None
        if answer is None:
            indexes = _indexes(own)
            mark_keys = self.mark_keys
            key = tuple(mark_keys[i] for i in indexes)
            answer = shared.get(key)
            if answer is None:
                mapping: dict[str, list[_RecordedMark]] = {}
                for i in indexes:
                    name, kwargs = self.marks[i]
                    mapping.setdefault(name, []).append(_RecordedMark(kwargs))
                answer = shared[key] = bool(expression.evaluate(self.api.mark_matcher(mapping)))
            if by_text is not None:
                shared[by_text] = answer
        self.mark_answers[own] = answer
        return answer


def _indexes(own: tuple[int, ...] | str) -> Sequence[int]:
    """A set of marker indexes, as a decoded row holds it or as text ("0,3")."""
    if isinstance(own, tuple):
        return own
    return [int(index) for index in own.split(",")] if own else []


# -- selecting --------------------------------------------------------------------


def selects(config: pytest.Config) -> bool:
    """Whether the run narrows what it collects: -k, -m or node ids."""
    option = config.option
    return bool(
        (option.keyword or "").lstrip() or option.markexpr or any("::" in a for a in config.args)
    )


@dataclasses.dataclass
class _NamedTests:
    """A node-id argument's names below its file (`TestA`, `test_b`) and parametrization."""

    names: list[str]
    parametrization: str | None


class Selection:
    """The run's -k, -m and node-id arguments, compiled as pytest compiles
    them, answered from records."""

    def __init__(self, api: _Api, keyword, mark) -> None:
        self.api = api
        self.keyword = keyword
        self.mark = mark
        # None: no node-id argument. Else node-id part -> the node-id
        # arguments into it; and the paths (files or folders) named whole.
        self.named: dict[str, list[_NamedTests]] | None = None
        self.whole_paths: list[str] = []
        # What `mark` answers for each set of markers (their recorded text), for every file.
        self.mark_answers: dict[tuple[str, ...], bool] = {}

    @property
    def narrows(self) -> bool:
        return self.keyword is not None or self.mark is not None or self.named is not None

    @classmethod
    def of(cls, config: pytest.Config, parts: NodeIdParts) -> Selection | str:
        """The run's selection, or why records cannot answer it."""
        api = _pytest_api()
        if api is None:
            return "pytest's -k/-m matchers are not the ones DryCI knows"
        option = config.option
        if getattr(option, "pyargs", False) or getattr(option, "keepduplicates", False):
            return "--pyargs or --keep-duplicates"
        try:
            keyword_text = (option.keyword or "").lstrip()
            keyword = api.expression.compile(keyword_text) if keyword_text else None
            mark = api.expression.compile(option.markexpr) if option.markexpr else None
        except Exception:
            return "an expression pytest will reject"
        selection = cls(api, keyword, mark)
        if any("::" in arg for arg in config.args):
            problem = selection._read_node_ids(config, parts)
            if problem:
                return problem
        return selection

    def _read_node_ids(self, config: pytest.Config, parts: NodeIdParts) -> str | None:
        arguments = _collection_arguments()
        if arguments is None:
            return "node-id arguments need pytest 9"
        resolve, normalize = arguments
        try:
            resolved = [
                resolve(
                    config.invocation_params.dir,
                    arg,
                    index,
                    as_pypath=False,
                    consider_namespace_packages=config.getini("consider_namespace_packages"),
                )
                for index, arg in enumerate(config.args)
            ]
            normalized = normalize(resolved)
        except Exception:
            return "a collection argument pytest will reject"
        self.named = {}
        for argument in normalized:
            if not argument.parts:
                self.whole_paths.append(os.path.normpath(argument.path))
                continue
            part = parts.of(argument.path)
            if part is None:
                return "a node id outside the rootdir"
            named = _NamedTests(list(argument.parts), argument.parametrization)
            self.named.setdefault(part, []).append(named)
        return None

    def select(
        self, part: str, path: str, node_ids: list[str], matchers: str
    ) -> tuple[list[str], list[str]]:
        """(selected, deselected) node ids of a recorded file at `path`, as
        pytest would select them; raises CannotAnswer."""
        if not self.narrows:
            return list(node_ids), []
        names = self.keyword is not None or self.named is not None
        try:
            decoded = _Decoded(self.api, matchers, len(node_ids), self.mark_answers, names)
        except CannotAnswer:
            raise
        except Exception as err:
            raise CannotAnswer(f"an unreadable record ({err})") from None
        if not names:  # -m alone: one answer per set of markers, applied to every test
            try:
                keeps = decoded.mark_keeps(self.mark)
            except CannotAnswer:
                raise
            except Exception as err:  # pytest would raise it too: let it collect and say so
                raise CannotAnswer(str(err)) from None
            selected = list(itertools.compress(node_ids, keeps))
            deselected = [node_id for node_id, keep in zip(node_ids, keeps) if not keep]
            return selected, deselected
        candidates = range(len(node_ids))
        if self.named is not None:
            candidates = self._named(part, path, node_ids, decoded)
        if self.keyword is None and self.mark is None:
            return [node_ids[i] for i in candidates], []
        selected, deselected = [], []
        try:
            for i in candidates:
                keep = (self.keyword is None or decoded.keyword_match(i, self.keyword)) and (
                    self.mark is None or decoded.mark_match(i, self.mark)
                )
                (selected if keep else deselected).append(node_ids[i])
        except CannotAnswer:
            raise
        except Exception as err:  # pytest would raise it too: let it collect and say so
            raise CannotAnswer(str(err)) from None
        return selected, deselected

    def _named(self, part: str, path: str, node_ids: list[str], decoded: _Decoded) -> list[int]:
        """The indexes of the tests the command-line arguments collect from the file."""
        path = os.path.normpath(path)
        if any(
            path == whole or path.startswith(os.path.join(whole, "")) for whole in self.whole_paths
        ):
            return list(range(len(node_ids)))
        arguments = self.named.get(part) if self.named else None
        if not arguments:
            raise CannotAnswer("no argument names the file")
        chosen = []
        matched = [False] * len(arguments)
        for index, node_id in enumerate(node_ids):
            names = _names_below_file(node_id, decoded.keywords(index))
            hits = [_matches(names, argument) for argument in arguments]
            if any(hits):
                chosen.append(index)
                matched = [was or hit for was, hit in zip(matched, hits)]
        if not all(matched):
            raise CannotAnswer("a node id that names nothing recorded")  # pytest: "not found"
        return chosen


def _names_below_file(node_id: str, keywords: set[str]) -> list[str]:
    """`f.py::TestA::test_b[x::y]` -> ["TestA", "test_b[x::y]"]: only the
    last name holds a parametrization. Every name of a node's chain is among
    its -k keywords: one that is not means the split was wrong."""
    base, bracket, rest = node_id.partition("[")
    names = base.split("::")[1:]
    if not names:
        raise CannotAnswer(f"no test name in {node_id}")
    names[-1] += bracket + rest
    if not all(name in keywords for name in names):
        raise CannotAnswer(f"cannot tell the names in {node_id}")
    return names


def _matches(names: list[str], argument: _NamedTests) -> bool:
    """pytest 9's matching of a node-id argument's names (Session.collect):
    every name but the last exactly; the last with its parametrization
    exactly, or without one, any parametrization of it."""
    wanted = argument.names
    if len(wanted) > len(names) or names[: len(wanted) - 1] != wanted[:-1]:
        return False
    name = names[len(wanted) - 1]
    if argument.parametrization is not None:
        return name == wanted[-1] + argument.parametrization
    return name.split("[")[0] == wanted[-1]


def rewrite_node_id_args(
    args: list[str], invocation_dir: Path, parts: NodeIdParts, elided: Iterable[str]
) -> list[str]:
    """`args` with each node id into an elided file replaced by the file:
    pytest collects it as a served file (nothing), where the node id would
    find no test in it and be an error."""
    elided = set(elided)
    rewritten: list[str] = []
    for arg in args:
        if "::" in arg:
            path = arg.partition("[")[0].split("::")[0]
            if parts.of(invocation_dir / path) in elided:
                arg = path
        if arg not in rewritten:
            rewritten.append(arg)
    return rewritten


# -- safety -----------------------------------------------------------------------


def unsafe_hooks(manager: pytest.PytestPluginManager) -> list[str]:
    """The implementations of UNSAFE_HOOKS outside TRUSTED_PACKAGES, named."""
    found = []
    for hook_name in UNSAFE_HOOKS:
        caller = getattr(manager.hook, hook_name, None)
        impls = caller.get_hookimpls() if caller is not None else []
        for impl in impls:
            module = getattr(impl.function, "__module__", None) or ""
            if module == HYPOTHESIS_PLUGIN and hook_name == "pytest_collection_modifyitems":
                if _hypothesis_before_deselection(impls, impl):
                    continue
            elif _trusted(module, getattr(impl.function, "__qualname__", "")):
                continue
            found.append(f"{hook_name} in {manager.get_name(impl.plugin) or module}")
    return found


def _hypothesis_before_deselection(impls: list, hypothesis_impl) -> bool:
    """Whether hypothesis marks its tests before pytest deselects by -m:
    pluggy calls the implementations last to first, so it must come after
    `_pytest.mark`'s in the list."""
    modules = [getattr(impl.function, "__module__", "") for impl in impls]
    if "_pytest.mark" not in modules:
        return False
    return impls.index(hypothesis_impl) > modules.index("_pytest.mark")


def _trusted(module: str, qualname: str) -> bool:
    if module.partition(".")[0] in TRUSTED_PACKAGES:
        return True
    # pytest-xdist runs its worker's plugin (xdist/remote.py) through execnet,
    # under this module name: it renames items of --dist loadgroup, no more.
    return module == "__channelexec__" and qualname.startswith("WorkerInteractor.")


def unloaded_conftests(conftests: Iterable[str], manager: pytest.PytestPluginManager) -> list[str]:
    """Of `conftests`, those not loaded yet whose text names UNSAFE_WORDS."""
    loaded = set()
    for plugin in manager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if isinstance(path, str):
            loaded.add(os.path.realpath(path))
    found = []
    for path in conftests:
        if os.path.realpath(path) in loaded:
            continue
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            found.append(path)
            continue
        if any(word in text for word in UNSAFE_WORDS):
            found.append(path)
    return found
