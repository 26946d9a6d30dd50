//! The profile hook behind function-level keys, installed in C: for every
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
//! A C profile function (`PyEval_SetProfile`, in every CPython since 3.0)
//! costs one C call per Python call and nothing per line; the hook returns
//! at once for every event but a call. It is per thread: new threads get it
//! through `threading.setprofile` (the plugin's `profile_thread`). Whoever
//! replaces it (a profiler under test, say) makes the open windows
//! incomplete, and their tests are not recorded at function level.
//!
//! The state is process-wide, behind a lock only the GIL holder takes: the
//! hook runs with the GIL held and never re-enters (CPython does not profile
//! its own profile function). A lock found taken all the same marks every
//! open window incomplete rather than miss a call silently.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::functions::{FunctionIndex, MODULE_LEVEL, SESSION_LEVEL};

type TraceFunction =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut c_void, c_int, *mut ffi::PyObject) -> c_int;

// Not in the limited API that abi3 builds see, but exported by every CPython
// this package supports (3.9+) with these signatures.
extern "C" {
    fn PyEval_SetProfile(function: Option<TraceFunction>, object: *mut ffi::PyObject);
    fn PyFrame_GetCode(frame: *mut c_void) -> *mut ffi::PyObject;
    fn PyFrame_GetBack(frame: *mut c_void) -> *mut c_void;
}

const PY_TRACE_CALL: c_int = 0;
/// The pseudo-function that "calls" whatever runs outside every window
/// (`crate::functions::SESSION_LEVEL`): the first function interned.
const SESSION_ID: u32 = 0;
/// How many frames up a call's repository caller is looked for: far enough
/// for decorators, `functools` wrappers and generated code in between.
const MAX_CALLER_DEPTH: usize = 32;

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
    indexes: HashMap<String, Option<FunctionIndex>>,
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
        let resolved = self.resolve(&code);
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
fn index_file(root: &str, rel: &str) -> Option<FunctionIndex> {
    let source = std::fs::read(format!("{root}{rel}")).ok()?;
    FunctionIndex::parse(&source).ok()
}

/// Called by CPython, with the GIL held, for every profile event of a
/// thread the hook is installed on.
unsafe extern "C" fn hook(
    _object: *mut ffi::PyObject,
    frame: *mut c_void,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    if what != PY_TRACE_CALL || frame.is_null() {
        return 0;
    }
    let Ok(mut guard) = PROFILER.try_lock() else {
        MISSED.store(true, Ordering::Relaxed);
        return 0;
    };
    let Some(profiler) = guard.as_mut() else {
        return 0;
    };
    // SAFETY: the GIL is held (CPython calls profile functions with it).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `frame` is the frame being entered; PyFrame_GetCode returns a
    // new reference, released once the code object is resolved (the
    // profiler holds its own).
    let code = unsafe { PyFrame_GetCode(frame) };
    if code.is_null() {
        return 0;
    }
    let callee = profiler.function_of(py, code);
    unsafe { ffi::Py_DECREF(code) };
    let Some(callee) = callee else {
        return 0;
    };
    note_caller(profiler, py, frame, callee);
    0
}

/// Notes that `callee` ran, called from the frame `frame` is (or, when it
/// is not the repository's, the closest repository frame up the stack).
fn note_caller(profiler: &mut Profiler, py: Python<'_>, frame: *mut c_void, callee: u32) {
    profiler.executed(callee);
    // The closest repository function up the stack is the caller.
    // SAFETY: `frame` is a live frame; PyFrame_GetBack returns a new reference.
    let mut back = unsafe { PyFrame_GetBack(frame) };
    for _ in 0..MAX_CALLER_DEPTH {
        if back.is_null() {
            break;
        }
        let code = unsafe { PyFrame_GetCode(back) };
        let caller = if code.is_null() {
            None
        } else {
            let caller = profiler.function_of(py, code);
            unsafe { ffi::Py_DECREF(code) };
            caller
        };
        if let Some(caller) = caller {
            profiler.called(caller, callee);
            break;
        }
        let next = unsafe { PyFrame_GetBack(back) };
        unsafe { ffi::Py_DECREF(back as *mut ffi::PyObject) };
        back = next;
    }
    if !back.is_null() {
        unsafe { ffi::Py_DECREF(back as *mut ffi::PyObject) };
    }
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
    // SAFETY: the GIL is held; PyEval_GetFrame returns a borrowed reference
    // to the running frame (the trampoline's), alive while it runs.
    let frame = unsafe { ffi::PyEval_GetFrame() } as *mut c_void;
    if frame.is_null() {
        profiler.executed(callee);
        return;
    }
    // PyFrame_GetBack in `note_caller` takes its own reference.
    note_caller(profiler, py, frame, callee);
}

fn state() -> std::sync::MutexGuard<'static, Option<Profiler>> {
    PROFILER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn install(_py: Python<'_>, sentinel: &Py<PyAny>) {
    // SAFETY: the GIL is held; CPython keeps its own reference to the object.
    unsafe { PyEval_SetProfile(Some(hook), sentinel.as_ptr()) };
}

/// Whether the hook is this thread's profile function.
fn installed(py: Python<'_>, profiler: &Profiler) -> bool {
    profiler
        .getprofile
        .call0(py)
        .is_ok_and(|current| current.is(profiler.sentinel.bind(py)))
}

/// Starts noting the repository's functions, on this thread; `root` and the
/// `ignored` folders inside it are absolute. Calling it again starts afresh.
#[pyfunction]
pub fn start_function_profiler(py: Python<'_>, root: String, ignored: Vec<String>) -> PyResult<()> {
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
    install(py, &sentinel);
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
    };
    let session = PyString::new(py, SESSION_LEVEL).unbind();
    profiler.functions.push(Function {
        name: session,
        mark: 0,
    });
    *state() = Some(profiler);
    Ok(())
}

/// Installs the hook on the calling thread (a thread started by a test).
#[pyfunction]
pub fn profile_thread(py: Python<'_>) {
    let guard = state();
    if let Some(profiler) = guard.as_ref() {
        install(py, &profiler.sentinel);
    }
}

/// Stops noting: the hook is removed from this thread (other threads'
/// hooks return at once from now on).
#[pyfunction]
pub fn stop_function_profiler(py: Python<'_>) {
    let taken = state().take();
    if let Some(profiler) = taken {
        if installed(py, &profiler) {
            // SAFETY: the GIL is held.
            unsafe { PyEval_SetProfile(None, std::ptr::null_mut()) };
        }
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

/// The functions the innermost window ran so far, or None when some call
/// may have gone unnoted.
#[pyfunction]
pub fn window_functions(py: Python<'_>) -> Option<Vec<Py<PyString>>> {
    let mut guard = state();
    let profiler = guard.as_mut()?;
    ensure_installed(py, profiler);
    let window = profiler.windows.last()?;
    window
        .complete
        .then(|| profiler.names(py, &window.executed))
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
/// something replaced it; every open window is incomplete once it was not
/// (or once a call went unnoted).
fn ensure_installed(py: Python<'_>, profiler: &mut Profiler) -> bool {
    let missed = MISSED.swap(false, Ordering::Relaxed);
    let working = installed(py, profiler);
    if !working {
        install(py, &profiler.sentinel);
    }
    if missed || !working {
        for window in &mut profiler.windows {
            window.complete = false;
        }
    }
    !missed && working
}
