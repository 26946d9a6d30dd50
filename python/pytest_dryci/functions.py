"""Function-level keys (`--dryci-precision=function`), the plugin's half.

A test file's key then holds the module-level code of its static closure
(each file with its function bodies left out, `src/functions/`), and each
test's record holds the functions it was seen to run, with everything they
were seen to call anywhere in the session: after an edit of one function,
only the tests that ran it (or ran a caller of it) run again.

The functions are noted by a hook installed in C (`src/python/profiler/`),
into the same windows as the observed inputs (`observing`): a test, a
wide-scoped fixture, a collector. On CPython 3.11 it is the interpreter's
frame evaluator, which sees every thread; elsewhere, or when
`DRYCI_FUNCTION_HOOK=profile` asks for it (a project whose own tools
evaluate frames, as some JIT compilers do), a profile function, which
threads started after it get through `threading.setprofile`.

The hook is installed before pytest imports the initial conftest.py files
(`pytest_load_initial_conftests`), so what they import is seen too.

What it cannot see, and how that stays sound:
- Code that ran before the hook was installed (a plugin of the repository's
  own, loaded from an entry point or `-p`): the files of the modules
  imported by then are keyed by their whole content (`pre_imported`), so no
  edit of them is missed; they only lose the precision.
- A test whose hook was replaced (a profiler under test, for the profile
  function; another frame evaluator), or a call that went unnoted (deep
  recursion handed back to CPython): its record is not made at function
  level, and it runs next time.
- Under the profile function, threads that were running before the hook
  was installed (the frame evaluator covers every thread).
- State that one test leaves for another without a call between them that
  the hook sees. A lookup through a repository function is seen (it was
  seen to call what computes the result), and so is a hit of a repository
  function decorated with `functools.lru_cache` or `functools.cache` after
  the hook was installed: it is called through a trampoline that notes the
  call (`_watch_lru_caches`; the C wrapper runs no Python code on a hit).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path

import pytest

from pytest_dryci import _native
from pytest_dryci.observe import ignored_paths

HOOKS = ("auto", "frame", "profile")
# On teardown reports: the calls between repository functions first seen
# since the last report (caller, callee), for the session's call graph.
CALLS_ATTRIBUTE = "dryci_calls"


# The repository files imported before the hook, once it is installed.
_unseen_before: list[str] | None = None


def start(config: pytest.Config) -> list[str]:
    """Installs the hook (for a profile function: this thread and threads
    started from now on), once, and returns the repository files of the modules imported
    before it, whose functions may have run unseen. Called before the
    initial conftest.py files are imported, and again when DryCI is configured."""
    global _unseen_before
    if _unseen_before is not None:
        return _unseen_before
    root = str(config.rootpath)
    basetemp = getattr(config.known_args_namespace, "basetemp", None)
    ignored = ignored_paths(config.rootpath, config.getini("dryci_observe_ignore"), basetemp)
    inside = os.path.join(root, "")
    # Only folders inside the root (a virtualenv there) are not its code: an
    # ignored folder that holds the root (pytest's temporary one) ignores nothing.
    ignored = [p for p in ignored if os.path.join(p, "").startswith(inside) and p != root]
    hook = _native.start_function_profiler(root, ignored, requested_hook())
    if hook == "profile":
        threading.setprofile(_profile_new_thread)
    _watch_lru_caches(inside, tuple(os.path.join(p, "") for p in ignored))
    _unseen_before = pre_imported(config.rootpath, ignored)
    return _unseen_before


def requested_hook() -> str:
    """`DRYCI_FUNCTION_HOOK`: auto (the default), frame or profile."""
    requested = os.environ.get("DRYCI_FUNCTION_HOOK", "").strip() or "auto"
    if requested not in HOOKS:
        raise ValueError(f"DRYCI_FUNCTION_HOOK={requested!r} is not one of {', '.join(HOOKS)}")
    return requested


def stop() -> None:
    global _unseen_before
    _unseen_before = None
    threading.setprofile(None)  # type: ignore[arg-type]
    _native.stop_function_profiler()


def _watch_lru_caches(inside: str, ignored: tuple[str, ...]) -> None:
    """Makes a hit of an `lru_cache`d (or `cache`d) repository function
    visible: the C wrapper answers it without running any Python code, so
    the hook would not see that the caller depends on the function. Such a
    function decorated from now on is called through a trampoline that notes
    the call (`_native.note_call`); others keep the C wrapper untouched."""
    make_wrapper = functools._lru_cache_wrapper  # type: ignore[attr-defined]
    if getattr(make_wrapper, "dryci_watched", False):
        return

    def lru_cache_wrapper(user_function, *args):
        wrapper = make_wrapper(user_function, *args)
        code = getattr(user_function, "__code__", None)
        filename = os.path.realpath(code.co_filename) if code is not None else ""
        if not filename.startswith(inside) or filename.startswith(ignored):
            return wrapper
        note_call = _native.note_call

        def cached(*args, **kwargs):
            note_call(code)
            return wrapper(*args, **kwargs)

        cached.cache_info = wrapper.cache_info  # type: ignore[attr-defined]
        cached.cache_clear = wrapper.cache_clear  # type: ignore[attr-defined]
        return cached

    lru_cache_wrapper.dryci_watched = True  # type: ignore[attr-defined]
    functools._lru_cache_wrapper = lru_cache_wrapper  # type: ignore[attr-defined]


def _profile_new_thread(frame, event, arg) -> None:
    """The first profile event of a new thread installs the C hook in its place."""
    _native.profile_thread()


def pre_imported(root: Path, ignored: list[str]) -> list[str]:
    """The repository's Python files (absolute) among the modules imported so far."""
    inside = os.path.join(str(root), "")
    skipped = tuple(os.path.join(p, "") for p in ignored)
    files = set()
    # Most modules share a few folders: resolve each folder once (a whole
    # realpath per module cost 5 ms at startup), then the file if it is a link.
    real_folders: dict[str, str] = {}
    for module in list(sys.modules.values()):
        module_file = getattr(module, "__file__", None)
        if not isinstance(module_file, str) or not module_file.endswith(".py"):
            continue
        folder, name = os.path.split(module_file)
        real_folder = real_folders.get(folder)
        if real_folder is None:
            real_folder = real_folders[folder] = os.path.realpath(folder)
        path = os.path.join(real_folder, name)
        if os.path.islink(path):
            path = os.path.realpath(path)
        if path.startswith(inside) and not path.startswith(skipped):
            files.add(path)
    return sorted(files)
