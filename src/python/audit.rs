//! The audit hook behind observed inputs, installed in C. A hook installed
//! with `sys.addaudithook` is a Python call for every audit event of the
//! process, and pytest's own machinery raises some 27 per test
//! (`object.__getattr__`, `builtins.id`, `os.putenv`...): on the plugin
//! benchmark's first run that was most of observation's cost. This hook
//! compares the event's name with the few that observation reads and calls
//! the Python callback for those only.
//!
//! `PySys_AddAuditHook` is not in the limited API that abi3 builds see, but
//! it is exported by every CPython since 3.8 with this signature, so it is
//! declared here. A hook cannot be removed, so what it is given is a slot
//! that lives as long as the process, and the callback in it is dropped by
//! `AuditHook.release`: a callback kept for ever would keep whatever it
//! reaches (the observer, and through it the session's fixtures) alive
//! through the interpreter's shutdown, whose collections walk it all again
//! (a quarter of a second on the plugin benchmark's first run), and keep
//! each in-process pytester run's observer for the rest of the process.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

type AuditHookFn = unsafe extern "C" fn(*const c_char, *mut ffi::PyObject, *mut c_void) -> c_int;

extern "C" {
    fn PySys_AddAuditHook(hook: AuditHookFn, user_data: *mut c_void) -> c_int;
}

/// The events observation reads (`pytest_dryci.observe.WATCHED_EVENTS`).
const WATCHED: &[&[u8]] = &[
    b"open",
    b"os.listdir",
    b"os.scandir",
    b"subprocess.Popen",
    b"os.system",
    b"os.exec",
    b"os.posix_spawn",
    b"os.spawn",
    b"os.fork",
    b"os.forkpty",
    b"socket.connect",
    b"cpython.PyInterpreterState_New",
];

/// Called by CPython, with the GIL held, for every audit event.
unsafe extern "C" fn hook(
    event: *const c_char,
    args: *mut ffi::PyObject,
    user_data: *mut c_void,
) -> c_int {
    if event.is_null() || args.is_null() || user_data.is_null() {
        return 0;
    }
    // SAFETY: CPython passes a NUL-terminated event name.
    let name = unsafe { CStr::from_ptr(event) }.to_bytes();
    if !WATCHED.contains(&name) {
        return 0;
    }
    // SAFETY: `user_data` is the leaked slot of `add_audit_hook`, alive for
    // the rest of the process.
    let slot = unsafe { &*(user_data as *const HookSlot) };
    // A hook installed in C is called in every interpreter of the process;
    // the callback belongs to one. Calling it from a subinterpreter would
    // take the wrong GIL (a deadlock in 3.11, where they share one): what a
    // subinterpreter reads is unseen, and its creation is reported instead
    // (cpython.PyInterpreterState_New, raised in the creating interpreter).
    // SAFETY: CPython calls audit hooks with a thread state attached.
    if unsafe { ffi::PyInterpreterState_Get() } as usize != slot.interpreter {
        return 0;
    }
    Python::attach(|py| {
        let Some(callback) = slot.callback(py) else {
            return; // released
        };
        // SAFETY: CPython passes the event's arguments as a borrowed tuple.
        let args = unsafe { Bound::from_borrowed_ptr(py, args) };
        let event = PyString::new(py, &String::from_utf8_lossy(name));
        // Observation never blocks what the code under test does: an error
        // in the callback is reported as unraisable, and the event goes on.
        if let Err(err) = callback.call1(py, (event, args)) {
            err.write_unraisable(py, None);
        }
    });
    0
}

/// What an installed hook calls: its callback until it is released.
struct HookSlot {
    callback: Mutex<Option<Py<PyAny>>>,
    /// The interpreter the callback belongs to (its address).
    interpreter: usize,
}

impl HookSlot {
    fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let callback = self.callback.lock().unwrap_or_else(|e| e.into_inner());
        callback.as_ref().map(|c| c.clone_ref(py))
    }
}

/// An installed audit hook. Its C part stays installed (CPython cannot
/// remove one); `release` makes it do nothing and drops the callback.
#[pyclass(frozen, module = "pytest_dryci._native")]
pub struct AuditHook {
    slot: &'static HookSlot,
}

#[pymethods]
impl AuditHook {
    /// Drops the callback: the hook calls nothing any more.
    fn release(&self) {
        let callback = self
            .slot
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(callback); // after the lock: dropping may run Python code
    }
}

/// Installs `callback(event, args)` as an audit hook called for the
/// watched events only, until the returned `AuditHook` is released.
#[pyfunction]
pub fn add_audit_hook(py: Python<'_>, callback: Py<PyAny>) -> PyResult<AuditHook> {
    let slot = Box::into_raw(Box::new(HookSlot {
        callback: Mutex::new(Some(callback)),
        // SAFETY: called from Python, so with a thread state attached.
        interpreter: unsafe { ffi::PyInterpreterState_Get() } as usize,
    }));
    // SAFETY: `hook` has the signature CPython expects and `slot` stays
    // valid forever once the hook is installed (hooks cannot be removed).
    let status = unsafe { PySys_AddAuditHook(hook, slot as *mut c_void) };
    if status != 0 {
        // SAFETY: not installed, so nothing else holds the pointer.
        drop(unsafe { Box::from_raw(slot) });
        // An existing hook refused it, leaving its exception set.
        return Err(PyErr::take(py).unwrap_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("an audit hook refused DryCI's")
        }));
    }
    // SAFETY: installed (or refused silently, which CPython allows: then
    // leaked unused), so never freed: the hook may run until the process ends.
    Ok(AuditHook {
        slot: unsafe { &*slot },
    })
}
