//! The hook behind function-level keys, installed in C: for every
//! call of Python code it notes which function of the repository ran (into
//! the innermost open window: a test, a wide-scoped fixture, a collector)
//! and which repository function called it (the session's call graph, which
//! makes memoised state sound: a test that only looks a result up depends
//! on the code that computed it in an earlier test).
//!
//! A function is named `path::qualname`, path relative to the repository
//! root, qualname that of its outermost `def` (`crate::functions`): nested
//! functions, lambdas and comprehensions belong to the body that holds them.
//! Module-level code (a module's body, class bodies, module-level lambdas)
//! is `path::<module>`. What runs outside every window (a conftest's hook,
//! the imports of the initial conftests) is noted as called by `<session>`,
//! on which every test depends.
//!
//! The hook is CPython's frame evaluator on 3.11 and a C profile function
//! elsewhere (`hooks`). Whoever replaces it (a profiler under test, a
//! compiler that evaluates frames itself) makes the open windows
//! incomplete, and their tests are not recorded at function level.
//!
//! The state is process-wide, behind a lock only the GIL holder takes: the
//! hook runs with the GIL held, and re-enters only if noting a call runs
//! Python code (a finalizer, during a garbage collection): a lock found
//! taken marks every open window incomplete rather than miss a call.

mod hooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::functions::{recent, FunctionIndex, MODULE_LEVEL, SESSION_LEVEL};

use hooks::Hook;

/// The pseudo-function that "calls" whatever runs outside every window
/// (`crate::functions::SESSION_LEVEL`): the first function interned.
const SESSION_ID: u32 = 0;

struct Function {
    /// `path::qualname`, handed to Python as is.
    name: Py<PyString>,
    /// The serial of the window it was last added to.
    mark: u32,
}

struct Window {
    serial: u32,
    executed: Vec<u32>,
    complete: bool,
}

struct Profiler {
    /// The repository root and the folders inside it that are not its code
    /// (a virtualenv, say), each ending in a separator.
    root: String,
    ignored: Vec<String>,
    /// Code object address -> its function, or None when it is not the
    /// repository's. Each code object seen is kept alive (`held`), so that an
    /// address is never reused for another.
    codes: FxHashMap<usize, Option<u32>>,
    held: Vec<Py<PyAny>>,
    /// A code object's file name -> the file relative to the root, None when
    /// it is not the repository's (resolved once per file: it may cost a
    /// `realpath`).
    files: HashMap<String, Option<String>>,
    functions: Vec<Function>,
    ids: HashMap<(String, String), u32>,
    /// Path relative to the root -> its functions, None when they cannot be
    /// delimited (all its code is then module-level).
    indexes: HashMap<String, Option<Arc<FunctionIndex>>>,
    windows: Vec<Window>,
    serial: u32,
    calls: FxHashSet<(u32, u32)>,
    new_calls: Vec<(u32, u32)>,
    /// The object passed with the hook: `sys.getprofile()` returns it while
    /// the hook is the thread's profile function.
    sentinel: Py<PyAny>,
    /// `sys.getprofile`, looked up once (a C function: calling it from here
    /// runs no Python code, so no profile event).
    getprofile: Py<PyAny>,
    hook: Hook,
}

static PROFILER: Mutex<Option<Profiler>> = Mutex::new(None);
/// Set when the hook found the state locked and could not note a call.
static MISSED: AtomicBool = AtomicBool::new(false);

impl Profiler {
    /// The function `code` belongs to, resolved once per code object.
    fn function_of(&mut self, py: Python<'_>, code: *mut ffi::PyObject) -> Option<u32> {
        let key = code as usize;
        if let Some(known) = self.codes.get(&key) {
            return *known;
        }
        // SAFETY: `code` is a live code object (a borrowed reference).
        let code = unsafe { Bound::from_borrowed_ptr(py, code) };
        // A generator resumed by `throw()` is evaluated with its exception
        // set: kept aside while the code object's attributes are read.
        let pending = PyErr::take(py);
        let resolved = self.resolve(&code);
        if let Some(pending) = pending {
            pending.restore(py);
        }
        self.codes.insert(key, resolved);
        self.held.push(code.unbind());
        resolved
    }

    fn resolve(&mut self, code: &Bound<'_, PyAny>) -> Option<u32> {
        let filename: String = code.getattr("co_filename").ok()?.extract().ok()?;
        let rel = match self.files.get(&filename) {
            Some(known) => known.clone(),
            None => {
                let rel = self.relative(&filename);
                self.files.insert(filename, rel.clone());
                rel
            }
        }?;
        let qualname = {
            let name: String = code.getattr("co_name").ok()?.extract().ok()?;
            let line: u32 = code.getattr("co_firstlineno").ok()?.extract().ok()?;
            if name == MODULE_LEVEL {
                MODULE_LEVEL.to_string()
            } else {
                let root = &self.root;
                let index = self
                    .indexes
                    .entry(rel.clone())
                    .or_insert_with(|| index_file(root, &rel));
                index
                    .as_ref()
                    .and_then(|index| index.function_at(line))
                    .unwrap_or(MODULE_LEVEL)
                    .to_string()
            }
        };
        Some(self.intern(code.py(), rel, qualname))
    }

    /// `filename` relative to the root when it is the repository's code.
    fn relative(&self, filename: &str) -> Option<String> {
        let inside = |path: &str| {
            path.strip_prefix(self.root.as_str())
                .filter(|_| !self.ignored.iter().any(|p| path.starts_with(p.as_str())))
                .filter(|rel| rel.ends_with(".py"))
                .map(str::to_string)
        };
        inside(filename).or_else(|| {
            // Through a symbolic link, or relative to the working folder.
            let real = std::fs::canonicalize(filename).ok()?;
            inside(real.to_str()?)
        })
    }

    fn intern(&mut self, py: Python<'_>, rel: String, qualname: String) -> u32 {
        let key = (rel, qualname);
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.functions.len() as u32;
        let name = PyString::new(py, &format!("{}::{}", key.0, key.1)).unbind();
        self.functions.push(Function { name, mark: 0 });
        self.ids.insert(key, id);
        id
    }

    fn executed(&mut self, id: u32) {
        let Some(window) = self.windows.last_mut() else {
            // Outside every test, fixture and collector: a conftest's hook,
            // an initial import. Every test may depend on it.
            self.called(SESSION_ID, id);
            return;
        };
        let function = &mut self.functions[id as usize];
        if function.mark != window.serial {
            function.mark = window.serial;
            window.executed.push(id);
        }
    }

    fn called(&mut self, caller: u32, callee: u32) {
        if caller != callee && self.calls.insert((caller, callee)) {
            self.new_calls.push((caller, callee));
        }
    }

    fn names(&self, py: Python<'_>, ids: &[u32]) -> Vec<Py<PyString>> {
        ids.iter()
            .map(|id| self.functions[*id as usize].name.clone_ref(py))
            .collect()
    }
}

/// The functions of the file at `root` + `rel`, None when they cannot be
/// delimited or the file cannot be read.
fn index_file(root: &str, rel: &str) -> Option<Arc<FunctionIndex>> {
    let source = std::fs::read(format!("{root}{rel}")).ok()?;
    recent::index(&source).ok()
}

/// Runs `note` on the profiler, when there is one; called by the hooks with
/// the GIL held. A profiler found locked (a hook re-entered, which only the
/// code a garbage collection runs could do) marks the open windows
/// incomplete rather than miss a call silently.
fn with_profiler<R>(note: impl FnOnce(&mut Profiler, Python<'_>) -> R) -> Option<R> {
    let Ok(mut guard) = PROFILER.try_lock() else {
        MISSED.store(true, Ordering::Relaxed);
        return None;
    };
    let profiler = guard.as_mut()?;
    // SAFETY: the GIL is held (CPython calls the hooks with it).
    let py = unsafe { Python::assume_attached() };
    Some(note(profiler, py))
}

/// Notes a call of the function whose code is `code` that ran no Python
/// code of it: a hit of an `lru_cache`d repository function, called through
/// the plugin's trampoline (`pytest_dryci.functions`), whose frame is the
/// current one.
#[pyfunction]
pub fn note_call(py: Python<'_>, code: &Bound<'_, PyAny>) {
    let mut guard = state();
    let Some(profiler) = guard.as_mut() else {
        return;
    };
    let Some(callee) = profiler.function_of(py, code.as_ptr()) else {
        return;
    };
    profiler.executed(callee);
    if let Some(caller) = profiler.hook.current_caller(py, profiler) {
        profiler.called(caller, callee);
    }
}

fn state() -> std::sync::MutexGuard<'static, Option<Profiler>> {
    PROFILER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts noting the repository's functions with the `requested` hook
/// ("auto", "frame" or "profile", `hooks::Hook::choose`), and returns the
/// hook's name; `root` and the `ignored` folders inside it are absolute.
/// The profile function is installed on this thread only. Calling it again
/// starts afresh.
#[pyfunction]
pub fn start_function_profiler(
    py: Python<'_>,
    root: String,
    ignored: Vec<String>,
    requested: &str,
) -> PyResult<&'static str> {
    let hook = Hook::choose(py, requested)?;
    let with_separator = |path: String| {
        if path.ends_with('/') {
            path
        } else {
            path + "/"
        }
    };
    let getprofile = py.import("sys")?.getattr("getprofile")?.unbind();
    let sentinel: Py<PyAny> = PyString::new(py, "dryci function profiler")
        .into_any()
        .unbind();
    hook.install(py, &sentinel);
    MISSED.store(false, Ordering::Relaxed);
    let mut profiler = Profiler {
        root: with_separator(root),
        ignored: ignored.into_iter().map(with_separator).collect(),
        codes: FxHashMap::default(),
        held: Vec::new(),
        files: HashMap::new(),
        functions: Vec::new(),
        ids: HashMap::new(),
        indexes: HashMap::new(),
        windows: Vec::new(),
        serial: 0,
        calls: FxHashSet::default(),
        new_calls: Vec::new(),
        sentinel,
        getprofile,
        hook,
    };
    let session = PyString::new(py, SESSION_LEVEL).unbind();
    profiler.functions.push(Function {
        name: session,
        mark: 0,
    });
    *state() = Some(profiler);
    Ok(hook.name())
}

/// Installs the profile function on the calling thread (a thread started by
/// a test); the frame evaluator covers every thread already.
#[pyfunction]
pub fn profile_thread(py: Python<'_>) {
    let guard = state();
    if let Some(profiler) = guard.as_ref() {
        if profiler.hook == Hook::ProfileFunction {
            profiler.hook.install(py, &profiler.sentinel);
        }
    }
}

/// Stops noting: the hook is removed (the profile function from this
/// thread; other threads' return at once from now on).
#[pyfunction]
pub fn stop_function_profiler(py: Python<'_>) {
    let taken = state().take();
    if let Some(profiler) = taken {
        profiler.hook.remove(py, &profiler);
    }
}

/// Opens a window inside the current one: the functions that run until it
/// is closed are its own.
#[pyfunction]
pub fn open_function_window(py: Python<'_>) {
    let mut guard = state();
    let Some(profiler) = guard.as_mut() else {
        return;
    };
    let complete = ensure_installed(py, profiler);
    profiler.serial += 1;
    let serial = profiler.serial;
    profiler.windows.push(Window {
        serial,
        executed: Vec::new(),
        complete,
    });
}

/// Closes the innermost window: the functions it ran, or None when some
/// call may have gone unnoted.
#[pyfunction]
pub fn close_function_window(py: Python<'_>) -> Option<Vec<Py<PyString>>> {
    let mut guard = state();
    let profiler = guard.as_mut()?;
    ensure_installed(py, profiler);
    let window = profiler.windows.pop()?;
    window
        .complete
        .then(|| profiler.names(py, &window.executed))
}

/// The calls between the repository's functions first seen since the last
/// time: (caller, callee) names.
#[pyfunction]
pub fn take_function_calls(py: Python<'_>) -> Vec<(Py<PyString>, Py<PyString>)> {
    let mut guard = state();
    let Some(profiler) = guard.as_mut() else {
        return Vec::new();
    };
    let calls = std::mem::take(&mut profiler.new_calls);
    calls
        .into_iter()
        .map(|(caller, callee)| {
            (
                profiler.functions[caller as usize].name.clone_ref(py),
                profiler.functions[callee as usize].name.clone_ref(py),
            )
        })
        .collect()
}

/// Whether the hook still notes this thread's calls, re-installing it when
/// something replaced it and is gone; every open window is incomplete once
/// it was not (or once a call went unnoted).
fn ensure_installed(py: Python<'_>, profiler: &mut Profiler) -> bool {
    let missed = MISSED.swap(false, Ordering::Relaxed);
    let working = profiler.hook.installed(py, profiler);
    if !working {
        profiler.hook.reinstall(py, &profiler.sentinel);
    }
    if missed || !working {
        for window in &mut profiler.windows {
            window.complete = false;
        }
    }
    !missed && working
}
