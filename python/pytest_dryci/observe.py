"""Observing what each test reads at run time, so that it joins the test's key.

The static graph cannot see a data file whose name is computed, a module
imported by a computed name, or an environment variable. While a test runs
(setup, call, teardown), while a fixture is set up and while a collector
collects (importing a test module or a folder's conftest.py), this module
records:

- files opened for reading (`open`, `os.open`, `io.open_code`: the `open`
  audit event), unless the run itself wrote them or they lie under an
  ignored path (see `default_ignored`);
- directory listings (`os.listdir` and `os.scandir`, which `glob` and
  `pathlib` use), except the import system's own;
- modules named at run time: every `importlib.import_module` call (what
  registries, plugin loaders and entry points use), also of a module
  imported before, however the function was imported; import statements
  are the static graph's;
- environment variables read through `os.environ` (`os.getenv`,
  `os.environ.get`, `[]`, `in`), with their value, except those pytest and
  DryCI set themselves;
- subprocesses started (`subprocess`, `os.system`, `os.exec*`,
  `os.posix_spawn`, `os.fork`, `os.forkpty`, and multiprocessing's spawn and
  forkserver, which call `_posixsubprocess.fork_exec` unaudited): the
  executable is a file input, and the start is reported; so is a
  subinterpreter created (whose reads the hook cannot pass on), and a
  connection to a process multiprocessing started earlier (a forkserver, a
  manager); network connections (`socket.connect`) are reported. Whether a test
  that did either may be served is a policy (ini `dryci_serve_subprocess`).

A test's observed inputs are its own, those of every fixture it uses
(whatever the fixture's scope, so a session fixture's reads count for every
test that uses it) and those of the collectors above it (a file read while
its module or a conftest.py above it was imported counts for each of its
tests; the rootdir's conftest.py is imported before observation starts). They travel on the
teardown report, so pytest-xdist workers send them to the controller.

A test and a collector each open a window (`observing`); a fixture of a
wider scope than a test does not: it is set up inside the window of the
first test that uses it, and a read made meanwhile is told apart by pytest's
`FixtureDef.execute` frame on the stack (`Observer.window`). Reads are
rare and fixture set-ups are not, so the stack is walked only for a read.

Reads made by the import system (module sources and folders it lists) and
by pytest, pluggy, pytest-xdist and DryCI themselves (the first caller
outside the standard library decides) are not the test's.

What it cannot see: reads by C code that bypasses Python's `open` and
`os.environ` (C extensions, `getenv` in C, the C library's own files),
iterating the whole environment, `__import__` with a computed name, reads
by subprocesses and subinterpreters, and state kept in memory from an earlier test (a
module-level cache filled by another test).
"""

from __future__ import annotations

import getpass
import importlib._bootstrap as _bootstrap
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from _pytest.fixtures import FixtureDef

try:
    import _posixsubprocess
except ImportError:  # not POSIX: subprocesses start through audited calls only
    _posixsubprocess = None

from pytest_dryci import _native

# Installed in C, it calls `Observer._on_event` only for the events read
# here: open, os.listdir, os.scandir, the subprocess events and
# socket.connect (the list is in src/python/audit.rs), until released.
_add_audit_hook = _native.add_audit_hook

SUBINTERPRETER_EVENT = "cpython.PyInterpreterState_New"
SUBPROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        SUBINTERPRETER_EVENT,
    }
)
# What a fork (multiprocessing's default start on Linux, say) is reported as.
FORK = "(fork)"
# A subinterpreter's reads are unseen, like a subprocess's: its start is reported.
SUBINTERPRETER = "(subinterpreter)"
# A connection to a process multiprocessing started (a forkserver, a manager).
MULTIPROCESSING = "(multiprocessing)"
# Set by pytest, pytest-xdist and DryCI themselves: never outcome-relevant inputs.
OWN_ENV_PREFIXES = ("PYTEST_", "DRYCI_")
IMPORT_SYSTEM_FILES = ("<frozen importlib._bootstrap", "<frozen zipimport>")
STANDARD_LIBRARY = (os.path.join(sysconfig.get_paths()["stdlib"], ""), "<frozen ")
# os.open flags that make an open a write.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
REPORT_ATTRIBUTE = "dryci_observed"
# The attribute of a test that read nothing: one dict for all of them (read,
# never changed). A new one per test would outlive the test, and each
# allocation of a container counts towards the cyclic collector's next pass.
NOTHING_READ: dict = {}
# The frame of a fixture's set-up: its `self` is the FixtureDef.
FIXTURE_EXECUTE = FixtureDef.execute.__code__


class Reads:
    """What one window (a test, a fixture, a collector) read: per kind
    ("files", "listings", "modules", "subprocesses", "network") a set, and
    the environment variables with their values (None: not set). Empty, and
    allocated nothing, until something is read: most windows read nothing.
    One is made per test, so making one runs no Python code (no `__init__`:
    the class attributes are the empty state), and the hot paths test
    `kinds or env` where others write `bool(reads)`."""

    kinds: dict[str, set[str]] | None = None
    env: dict[str, str | None] | None = None
    # Under function-level keys: the repository functions it ran, and
    # whether some of its calls may have gone unnoted (no record then).
    functions: set[str] | None = None
    functions_missed = False

    def __bool__(self) -> bool:
        return bool(self.kinds or self.env or self.functions or self.functions_missed)

    def add_functions(self, names: list[str] | None) -> None:
        if names is None:
            self.functions_missed = True
        elif names:
            if self.functions is None:
                self.functions = set()
            self.functions.update(names)

    def add(self, kind: str, value: str) -> None:
        if self.kinds is None:
            self.kinds = {}
        self.kinds.setdefault(kind, set()).add(value)

    def add_env(self, name: str, value: str | None) -> None:
        if self.env is None:
            self.env = {}
        self.env.setdefault(name, value)

    def get(self, kind: str) -> set[str]:
        return self.kinds.get(kind, set()) if self.kinds else set()

    def update(self, other: Reads) -> None:
        for kind, values in (other.kinds or {}).items():
            for value in values:
                self.add(kind, value)
        for name, value in (other.env or {}).items():
            self.add_env(name, value)
        if other.functions_missed:
            self.functions_missed = True
        if other.functions:
            self.add_functions(list(other.functions))


def default_ignored(rootpath: Path) -> list[str]:
    """Paths whose reads are not inputs: the system's pseudo-files, the
    interpreter and its installed packages (the environment fingerprint
    covers them), pytest's temporary folders, and the caches of pytest and
    DryCI. (An ignored folder that holds the rootdir ignores nothing in it.)"""
    ignored = ["/proc", "/dev", "/sys", "/run", _pytest_temp_root()]
    ignored += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    ignored += [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    ignored += [str(rootpath / name) for name in (".dryci", ".pytest_cache")]
    return sorted({os.path.normpath(p) for p in ignored if p})


def ignored_paths(rootpath: Path, observe_ignore: list[str], basetemp: str | None) -> list[str]:
    """`default_ignored`, the ini's `dryci_observe_ignore` and the run's
    `--basetemp`: reads there are no inputs, and code there is not the repository's."""
    ignored = default_ignored(rootpath)
    ignored += [str(rootpath / path) for path in observe_ignore]
    if basetemp:
        ignored.append(os.path.abspath(basetemp))
    return ignored


def _pytest_temp_root() -> str:
    """Where pytest makes `tmp_path` folders by default: <temp>/pytest-of-<user>."""
    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):
        user = "unknown"
    return os.path.join(tempfile.gettempdir(), f"pytest-of-{user}")


class Observer:
    """Routes the reads of the running window into its `Reads`. One per
    run: an audit hook cannot be removed, so `close` releases its callback
    (this observer), which would otherwise keep all it holds alive until
    the process ends."""

    def __init__(self, root: str, ignored: list[str]) -> None:
        self.root = os.path.join(root, "")
        # Folder prefixes, each ending in a separator: "/run" must not ignore "/runner".
        self.ignored = tuple(os.path.join(p, "") for p in ignored)
        # Inside the rootdir only what is ignored inside it counts (a virtualenv
        # there, say), not the rootdir itself or a folder above it (pytest's
        # temporary one, say).
        self.ignored_in_root = tuple(
            p for p in self.ignored if p.startswith(self.root) and p != self.root
        )
        self.machinery = _machinery_folders()
        # The open windows, innermost last: a collector's, or the running test's.
        self.stack: list[Reads] = []
        self.test_window: Reads | None = None
        # FixtureDef -> what its set-ups read, for a fixture of a wider scope
        # than a test (a definition lives all session), and how many reads
        # were added to them: what tests inherit is merged again after one.
        self.fixtures: dict[object, Reads] = {}
        self.fixture_reads = 0
        self.written: set[str] = set()
        self.open = False
        # While starting: the first watched event proves the audit hook works.
        self._probing = False
        self._probed = False
        self._hook: _native.AuditHook | None = None
        self._environ_getitem = None
        self._gcd_import = None
        self._fork_exec = None
        # Under function-level keys: every test's inputs name the functions
        # it ran (`functions`), an empty list included, unless they cannot
        # be trusted (a worker that ran code its controller's key left out).
        self.functions = False
        self.functions_trusted = True

    # -- installing --------------------------------------------------------------

    def start(self) -> None:
        """Installs the hooks; raises when the audit hook is not working
        (another audit hook may refuse it silently, as CPython allows)."""
        self._probing = True
        self._hook = _add_audit_hook(self._on_event)
        with open(os.devnull, "rb"):
            pass
        working, self._probing = self._probed, False
        if not working:
            self.close()
            raise RuntimeError("the audit hook was not installed (another audit hook refused it)")
        self.open = True
        environ_class = type(os.environ)
        original_getitem = environ_class.__getitem__
        observer = self

        def getitem(environ, key):
            try:
                value = original_getitem(environ, key)
            except KeyError:
                if observer.stack:
                    observer._env_read(environ, key, None)
                raise
            # pytest's own PYTEST_CURRENT_TEST, read at every test, costs no call.
            if observer.stack and not (type(key) is str and key.startswith(OWN_ENV_PREFIXES)):
                observer._env_read(environ, key, value)
            return value

        self._environ_getitem = original_getitem
        environ_class.__getitem__ = getitem
        # importlib.import_module looks this up at every call, so code that
        # imported the function itself (`from importlib import import_module`)
        # is seen too; import statements do not go through it.
        original_gcd_import = _bootstrap._gcd_import

        def gcd_import(name, package=None, level=0):
            module = original_gcd_import(name, package, level)
            if observer.stack and observer._by_the_test(2):
                observer.window().add("modules", module.__name__)
            return module

        self._gcd_import = original_gcd_import
        _bootstrap._gcd_import = gcd_import
        # multiprocessing's spawn and forkserver start methods (the default
        # on macOS, and on Linux from 3.14) start a process with this,
        # raising no audit event; subprocess calls it too.
        original_fork_exec = getattr(_posixsubprocess, "fork_exec", None)
        if original_fork_exec is not None:

            def fork_exec(*args, **kwargs):
                if observer.stack and observer._by_the_test(2):
                    try:  # fork_exec(argv, executable candidates, ...)
                        program = _executable("subprocess.Popen", (None, args[0]))
                    except Exception:  # an argv it cannot read: the start still counts
                        program = "?"
                    observer.window().add("subprocesses", program)
                return original_fork_exec(*args, **kwargs)

            self._fork_exec = original_fork_exec
            _posixsubprocess.fork_exec = fork_exec

    def close(self) -> None:
        self.open = False
        if self._hook is not None:
            self._hook.release()
            self._hook = None
        self.stack.clear()
        self.test_window = None
        if self._environ_getitem is not None:
            type(os.environ).__getitem__ = self._environ_getitem
            self._environ_getitem = None
        if self._gcd_import is not None:
            _bootstrap._gcd_import = self._gcd_import
            self._gcd_import = None
        if self._fork_exec is not None:
            _posixsubprocess.fork_exec = self._fork_exec
            self._fork_exec = None

    # -- events ------------------------------------------------------------------------

    def _on_event(self, event: str, args: tuple) -> None:
        if not self.open:
            self._probed = self._probing
            return
        if event == "open":
            self._on_open(args)
            return
        if not self.stack or not self._by_the_test(2):
            return
        if event in SUBPROCESS_EVENTS:
            self.window().add("subprocesses", _executable(event, args))
        elif event == "socket.connect":
            address = args[1] if len(args) > 1 else None
            self.window().add("network", _address(address))
            if _is_multiprocessing_listener(address):
                # A forkserver started by an earlier test, or a manager: its
                # processes run code for this test.
                self.window().add("subprocesses", MULTIPROCESSING)
        else:  # os.listdir, os.scandir
            path = self._path(args[0] if args else None)
            if path is not None and not self._is_ignored(path):
                self.window().add("listings", path)

    def _on_open(self, args: tuple) -> None:
        path_arg, mode, flags = args
        if isinstance(mode, str) and "r" in mode and "+" not in mode:
            writes = False  # the common case, told apart first
        else:
            writes = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else bool(flags & WRITE_FLAGS)
            )
        if writes:
            path = self._path(path_arg)
            if path is not None:
                self.written.add(path)
            return
        # The import system's reads (every module it loads) are left out
        # before their path is even made absolute.
        if not self.stack or not self._by_the_test(3):
            return
        path = self._path(path_arg)
        if path is not None and "__pycache__" not in path and not self._is_ignored(path):
            self.window().add("files", path)

    def _env_read(self, environ, key, value) -> None:
        if (
            self.open
            and environ is os.environ
            and isinstance(key, str)
            and not key.startswith(OWN_ENV_PREFIXES)
            and self._by_the_test(3)
        ):
            self.window().add_env(key, value)

    def window(self) -> Reads:
        """Where a read made now goes: the innermost open window, unless it
        is a test's and a fixture of a wider scope than a test is being set
        up in it (for the first test that uses it): then that fixture's
        reads, which count for every test that uses it."""
        window = self.stack[-1]
        if window is not self.test_window:
            return window
        fixturedef = _wider_fixture_set_up_now()
        if fixturedef is None:
            return window
        return self.fixture(fixturedef)

    def fixture(self, fixturedef: object) -> Reads:
        """What `fixturedef`'s set-ups read (and ran), for the caller to add
        to: counted in `fixture_reads`, so what tests inherit is merged again."""
        self.fixture_reads += 1
        reads = self.fixtures.get(fixturedef)
        if reads is None:
            reads = self.fixtures[fixturedef] = Reads()
        return reads

    def _by_the_test(self, depth: int) -> bool:
        """Whether the read being audited, made by the function `depth`
        frames above this one (0), is the code under test's: not the import system's, nor that of
        pytest's machinery (the first caller outside the standard library)."""
        try:
            frame = sys._getframe(depth)
        except ValueError:
            return True
        if frame.f_code.co_filename.startswith(IMPORT_SYSTEM_FILES):
            return False
        while frame is not None:
            filename = frame.f_code.co_filename
            if not filename.startswith(STANDARD_LIBRARY):
                return not filename.startswith(self.machinery)
            frame = frame.f_back
        return True

    def _path(self, arg) -> str | None:
        if isinstance(arg, int) or arg is None:
            return None if isinstance(arg, int) else os.getcwd()
        try:
            text = os.fsdecode(arg)
        except (TypeError, ValueError):
            return None
        return os.path.normpath(os.path.join(os.getcwd(), text))

    def _is_ignored(self, path: str) -> bool:
        folder = os.path.join(path, "")  # an ignored folder itself, listed, is ignored too
        if path.startswith(self.root):
            return folder.startswith(self.ignored_in_root)
        return folder.startswith(self.ignored)

    # -- results ------------------------------------------------------------------------

    def inputs(self, reads: Reads) -> dict:
        """`reads` as a report attribute: only files that exist and that the
        run did not write, executables among them, and modules by their file
        (built-ins have none). An empty dict when nothing was read, unless
        the functions run are recorded (then every kind, each empty).

        Each kind is a sorted tuple of strings, which the cyclic collector
        stops tracking after one pass (a list it walks in every pass): the
        run holds every test's inputs until it publishes, and under
        function-level keys every test has its functions."""
        if not reads and not (self.functions and self.functions_trusted):
            return NOTHING_READ
        executables = {p for p in reads.get("subprocesses") if os.path.isabs(p)}
        candidates = (reads.get("files") | executables) - self.written
        files = sorted(p for p in candidates if not self._is_ignored(p) and os.path.isfile(p))
        modules = set()
        for name in reads.get("modules"):
            module_file = getattr(sys.modules.get(name), "__file__", None)
            if module_file and not self._is_ignored(os.path.normpath(module_file)):
                modules.add(os.path.normpath(module_file))
        inputs = {
            "files": tuple(files),
            "listings": tuple(sorted(reads.get("listings") - self.written)),
            "modules": tuple(sorted(modules)),
            "env": dict(sorted((reads.env or {}).items())),
            "subprocesses": tuple(sorted(reads.get("subprocesses"))),
            "network": tuple(sorted(reads.get("network"))),
        }
        if self.functions and self.functions_trusted and not reads.functions_missed:
            inputs["functions"] = tuple(sorted(reads.functions or ()))
        return inputs


def _wider_fixture_set_up_now() -> object | None:
    """The FixtureDef being set up innermost on the stack, when its scope
    is wider than a test's. (A fixture that a wider one requests is set up
    inside it, and a function-scoped one cannot be.)"""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is FIXTURE_EXECUTE:
            fixturedef = frame.f_locals.get("self")
            return None if getattr(fixturedef, "scope", "function") == "function" else fixturedef
        frame = frame.f_back
    return None


def _executable(event: str, args: tuple) -> str:
    """The program a subprocess event starts: a resolved path when it can be
    found, else the command as given."""
    if event in ("os.fork", "os.forkpty"):
        return FORK
    if event == SUBINTERPRETER_EVENT:
        return SUBINTERPRETER
    if event == "subprocess.Popen":
        executable, argv = args[0], args[1]
        if executable is None and argv:
            argv = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv)
            executable = argv[0] if argv else None
    elif event == "os.system":
        command = os.fsdecode(args[0]) if args else ""
        executable = command.split()[0] if command.split() else command
    else:  # os.exec, os.posix_spawn, os.spawn: (path, argv, env) or (mode, path, ...)
        executable = next((a for a in args if isinstance(a, (str, bytes, os.PathLike))), None)
    if executable is None:
        return "?"
    text = os.fsdecode(executable)
    found = shutil.which(text) if not os.path.isabs(text) else text
    return os.path.normpath(found) if found else text


def _is_multiprocessing_listener(address) -> bool:
    """Whether `address` is a Unix socket multiprocessing listens on: in a
    folder of its own, `pymp-*` (`multiprocessing.util.get_temp_dir`)."""
    if not isinstance(address, (str, bytes)) or not address:
        return False
    folder = os.path.basename(os.path.dirname(os.fsdecode(address)))
    return folder.startswith("pymp-")


def _address(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _machinery_folders() -> tuple[str, ...]:
    """The folders of pytest, pluggy, pytest-xdist, execnet and DryCI."""
    folders = []
    for name in ("_pytest", "pytest", "pluggy", "xdist", "execnet", "pytest_dryci"):
        module = sys.modules.get(name)
        module_file = getattr(module, "__file__", None)
        if module_file:
            folders.append(os.path.join(os.path.dirname(module_file), ""))
    return tuple(folders)


class Attribution:
    """Which window a read belongs to, and a test's inputs: its own reads,
    its fixtures' and its collectors'."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.collectors: dict[str, Reads] = {}
        # FixtureDef -> everything its setups read (the observer's)
        self.fixtures = observer.fixtures
        # What a test inherits from its collectors and fixtures, merged once for
        # all the tests of one parent that used the same wide fixtures that
        # read something: (id of the parent, ids of those fixtures' reads) ->
        # `_Inherited`. Emptied whenever a collector's window is kept or a
        # fixture read more (`_fixture_reads` then differs).
        self._inherited: dict[tuple[int, ...], _Inherited] = {}
        self._fixture_reads = 0

    def keep_collector(self, nodeid: str, reads: Reads) -> None:
        self.collectors.setdefault(nodeid, Reads()).update(reads)
        self._inherited.clear()

    def test_inputs(self, item, own: Reads | None) -> dict:
        """The report attribute for `item` (called at its teardown report),
        given what its own window read. Only windows that read something are
        kept, so a test that read nothing, whose fixtures and collectors read
        nothing, costs a few checks."""
        if self.collectors or self.fixtures:
            if self._fixture_reads != self.observer.fixture_reads:
                self._fixture_reads = self.observer.fixture_reads
                self._inherited.clear()
            inherited = self._inherited_by(item)
            if inherited.reads:
                if not own:
                    return inherited.inputs(self.observer)
                reads = Reads()
                reads.update(inherited.reads)
                reads.update(own)
                return self.observer.inputs(reads)
        return self.observer.inputs(own) if own else self.observer.inputs(Reads())

    def _inherited_by(self, item) -> _Inherited:
        parent = item.parent
        fixture_reads = self._fixture_reads_of(item) if self.fixtures else ()
        key = (id(parent), *map(id, fixture_reads))
        known = self._inherited.get(key)
        if known is not None:
            return known
        reads = Reads()
        if self.collectors:
            for node in item.listchain():
                collected = self.collectors.get(node.nodeid)
                if collected is not None:
                    reads.update(collected)
        for read in fixture_reads:
            reads.update(read)
        known = self._inherited[key] = _Inherited((parent, *fixture_reads), reads)
        return known

    def _fixture_reads_of(self, item) -> tuple[Reads, ...]:
        """The reads of the wide fixtures `item` used: those its signature
        and its fixtures name, and those it asked for at run time
        (`request.getfixturevalue`), which pytest's request of the test
        holds until the test's protocol ends."""
        info = getattr(item, "_fixtureinfo", None)
        definitions = getattr(info, "name2fixturedefs", {})
        names = getattr(info, "names_closure", ())
        used = [fixturedef for name in names for fixturedef in definitions.get(name, ())]
        activated = getattr(getattr(item, "_request", None), "_fixture_defs", None)
        if isinstance(activated, dict):
            used += activated.values()
        fixtures = self.fixtures
        found = {id(r): r for fd in used if (r := fixtures.get(fd)) is not None}
        return tuple(found.values())


class _Inherited:
    """What the tests of one parent that used the same wide fixtures inherit, and,
    for those that read nothing themselves, their report attribute, made
    again only when the run has written more files since (the files it wrote
    are no inputs)."""

    __slots__ = ("_inputs", "_written", "owners", "reads")

    def __init__(self, owners: tuple[object, ...], reads: Reads) -> None:
        self.owners = owners  # held, so that the ids in the key stay theirs
        self.reads = reads
        self._inputs: dict | None = None
        self._written = -1

    def inputs(self, observer: Observer) -> dict:
        if self._inputs is None or self._written != len(observer.written):
            self._written = len(observer.written)
            self._inputs = observer.inputs(self.reads)
        return self._inputs
