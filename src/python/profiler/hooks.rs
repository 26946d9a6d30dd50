//! The two ways CPython is made to call the profiler for every call of
//! Python code.
//!
//! - The frame evaluator (PEP 523), on CPython 3.11: the interpreter hands
//!   every frame it evaluates (a call, a generator or coroutine resumed, a
//!   module body) to `evaluate`, which notes the frame's function and has
//!   CPython's own evaluator run it. It is per interpreter, so every thread
//!   is covered, those already running included. The specialising
//!   interpreter keeps its specialised instructions; only calls between
//!   Python functions stop being inlined (each one recurses in C, as before
//!   3.11). The caller of a call is the closest repository frame up the
//!   thread's chain of frames, read where the interpreter keeps it (so
//!   greenlets, which swap that chain, are followed too).
//! - The profile function (`PyEval_SetProfile`), everywhere else (3.9,
//!   3.10, 3.12+), and on 3.11 on request (`DRYCI_FUNCTION_HOOK=profile`,
//!   for a project whose own tools replace the frame evaluator). On 3.11 it
//!   costs several times more: a frame object per call, and every
//!   instruction goes through the tracing path, unspecialised
//!   (BENCHMARKS.md). The caller is the closest repository frame up to
//!   `MAX_CALLER_DEPTH` frames. Per thread: new threads get it through
//!   `threading.setprofile` (the plugin's `profile_thread`).
//!
//! The evaluator reads CPython 3.11's internal layouts (`ThreadState311`,
//! `Frame311`), which is why it is used on 3.11 only (`Hook::choose`); 3.12
//! moved their fields, and has `sys.monitoring` for this.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;

use super::{with_profiler, Profiler, MISSED, PROFILER};

type TraceFunction =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut c_void, c_int, *mut ffi::PyObject) -> c_int;
type EvalFrame =
    unsafe extern "C" fn(*mut ffi::PyThreadState, *mut c_void, c_int) -> *mut ffi::PyObject;

// Not in the limited API that abi3 builds see, but exported by every CPython
// this package supports (3.9+) with these signatures; the frame evaluator's
// three are CPython's PEP 523 interface, only called on 3.11.
extern "C" {
    fn PyEval_SetProfile(function: Option<TraceFunction>, object: *mut ffi::PyObject);
    fn PyFrame_GetCode(frame: *mut c_void) -> *mut ffi::PyObject;
    fn PyFrame_GetBack(frame: *mut c_void) -> *mut c_void;
    fn _PyInterpreterState_SetEvalFrameFunc(
        interpreter: *mut ffi::PyInterpreterState,
        function: EvalFrame,
    );
    fn _PyInterpreterState_GetEvalFrameFunc(interpreter: *mut ffi::PyInterpreterState)
        -> EvalFrame;
    fn _PyEval_EvalFrameDefault(
        thread: *mut ffi::PyThreadState,
        frame: *mut c_void,
        throwing: c_int,
    ) -> *mut ffi::PyObject;
}

const PY_TRACE_CALL: c_int = 0;
/// How many frames up a call's repository caller is looked for: far enough
/// for decorators, `functools` wrappers and generated code in between.
const MAX_CALLER_DEPTH: usize = 32;

/// The leading fields of CPython 3.11's `PyThreadState`, up to `cframe`
/// (Include/cpython/pystate.h).
#[repr(C)]
struct ThreadState311 {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    initialized: c_int,
    is_static: c_int,
    recursion_remaining: c_int,
    recursion_limit: c_int,
    recursion_headroom: c_int,
    tracing: c_int,
    tracing_what: c_int,
    cframe: *const CFrame311,
}

/// CPython 3.11's `_PyCFrame` (Include/cpython/pystate.h).
#[repr(C)]
struct CFrame311 {
    use_tracing: u8,
    /// The frame executing on this thread: the caller, when a frame is
    /// handed to the evaluator.
    current_frame: *const Frame311,
    previous: *const CFrame311,
}

/// The leading fields of CPython 3.11's `_PyInterpreterFrame`
/// (Include/internal/pycore_frame.h).
#[repr(C)]
struct Frame311 {
    f_func: *mut ffi::PyObject,
    f_globals: *mut ffi::PyObject,
    f_builtins: *mut ffi::PyObject,
    f_locals: *mut ffi::PyObject,
    f_code: *mut ffi::PyObject,
    frame_obj: *mut ffi::PyObject,
    previous: *const Frame311,
}

/// How much C stack nested evaluations may take on a thread before the
/// deeper calls are handed back to CPython, which then inlines them (3.11
/// runs deep recursion in no C stack; with a frame evaluator each call
/// recurses in C, and a test that raised the recursion limit would
/// overflow the stack). Far above what the default limit of 1,000 calls takes.
const STACK_BUDGET: usize = 2 << 20;

thread_local! {
    /// The stack address of the outermost evaluation seen on this thread.
    static OUTERMOST: Cell<usize> = const { Cell::new(0) };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hook {
    FrameEvaluator,
    ProfileFunction,
}

impl Hook {
    /// The hook for `requested` ("auto", "frame" or "profile") on this
    /// interpreter.
    pub fn choose(py: Python<'_>, requested: &str) -> PyResult<Hook> {
        let version = py.version_info();
        let evaluator_fits = (version.major, version.minor) == (3, 11);
        match requested {
            "auto" if evaluator_fits => Ok(Hook::FrameEvaluator),
            "auto" | "profile" => Ok(Hook::ProfileFunction),
            "frame" if evaluator_fits => Ok(Hook::FrameEvaluator),
            "frame" => Err(PyValueError::new_err(format!(
                "the frame hook needs CPython 3.11, this is {}.{}",
                version.major, version.minor
            ))),
            other => Err(PyValueError::new_err(format!(
                "unknown function hook {other:?}: expected auto, frame or profile"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::FrameEvaluator => "frame",
            Hook::ProfileFunction => "profile",
        }
    }

    /// Installs the hook (the profile function on the calling thread only);
    /// `sentinel` is what `sys.getprofile()` then returns.
    pub fn install(self, _py: Python<'_>, sentinel: &Py<PyAny>) {
        match self {
            // SAFETY: the GIL is held; 3.11 was checked by `choose`.
            Hook::FrameEvaluator => unsafe {
                _PyInterpreterState_SetEvalFrameFunc(ffi::PyInterpreterState_Get(), evaluate)
            },
            // SAFETY: the GIL is held; CPython keeps its own reference.
            Hook::ProfileFunction => unsafe { PyEval_SetProfile(Some(profile), sentinel.as_ptr()) },
        }
    }

    /// Installs the hook again after something replaced it, unless that
    /// is a frame evaluator still in place (replacing it would break the
    /// tool that installed it; until it is gone, calls go unnoted).
    pub fn reinstall(self, py: Python<'_>, sentinel: &Py<PyAny>) {
        if self == Hook::ProfileFunction
            || current_evaluator() == _PyEval_EvalFrameDefault as EvalFrame as usize
        {
            self.install(py, sentinel);
        }
    }

    /// Whether the hook is still in place (for the profile function: on
    /// the calling thread).
    pub fn installed(self, py: Python<'_>, profiler: &Profiler) -> bool {
        match self {
            // SAFETY: the GIL is held.
            Hook::FrameEvaluator => current_evaluator() == evaluate as EvalFrame as usize,
            Hook::ProfileFunction => profiler
                .getprofile
                .call0(py)
                .is_ok_and(|current| current.is(profiler.sentinel.bind(py))),
        }
    }

    /// Removes the hook when it is still the one in place.
    pub fn remove(self, py: Python<'_>, profiler: &Profiler) {
        if !self.installed(py, profiler) {
            return;
        }
        match self {
            // SAFETY: the GIL is held.
            Hook::FrameEvaluator => unsafe {
                _PyInterpreterState_SetEvalFrameFunc(
                    ffi::PyInterpreterState_Get(),
                    _PyEval_EvalFrameDefault,
                )
            },
            // SAFETY: the GIL is held.
            Hook::ProfileFunction => unsafe { PyEval_SetProfile(None, std::ptr::null_mut()) },
        }
    }

    /// The repository function that is calling, from Python, the code now
    /// being noted by hand (`note_call`): the innermost one being evaluated,
    /// or the closest repository frame up from the running one.
    pub fn current_caller(self, py: Python<'_>, profiler: &mut Profiler) -> Option<u32> {
        match self {
            // SAFETY: the GIL is held: this thread's state is current.
            Hook::FrameEvaluator => unsafe {
                caller_3_11(
                    profiler,
                    py,
                    ffi::PyThreadState_Get() as *const ThreadState311,
                )
            },
            Hook::ProfileFunction => {
                // SAFETY: the GIL is held; PyEval_GetFrame returns a borrowed
                // reference to the running frame, alive while it runs.
                let frame = unsafe { ffi::PyEval_GetFrame() } as *mut c_void;
                (!frame.is_null())
                    .then(|| repository_caller(profiler, py, frame))
                    .flatten()
            }
        }
    }
}

/// The address of the interpreter's frame evaluator (CPython's own when no
/// hook is installed). Only called on 3.11, with the GIL held.
fn current_evaluator() -> usize {
    // SAFETY: the GIL is held; both functions exist on every CPython 3.9+.
    unsafe { _PyInterpreterState_GetEvalFrameFunc(ffi::PyInterpreterState_Get()) as usize }
}

/// Called by CPython 3.11, with the GIL held, to evaluate every frame.
unsafe extern "C" fn evaluate(
    thread: *mut ffi::PyThreadState,
    frame: *mut c_void,
    throwing: c_int,
) -> *mut ffi::PyObject {
    if stack_used() > STACK_BUDGET {
        // SAFETY: the arguments CPython passed.
        return unsafe { evaluate_handed_back(thread, frame, throwing) };
    }
    // SAFETY: `frame` is a live 3.11 `_PyInterpreterFrame` and `thread` the
    // running thread's state; the code object is borrowed, alive while the
    // frame is.
    let code = unsafe { (*(frame as *const Frame311)).f_code };
    if !code.is_null() {
        with_profiler(|profiler, py| {
            if let Some(callee) = profiler.function_of(py, code) {
                profiler.executed(callee);
                // SAFETY: as above.
                let caller = unsafe { caller_3_11(profiler, py, thread as *const ThreadState311) };
                if let Some(caller) = caller {
                    profiler.called(caller, callee);
                }
            }
        });
    }
    // SAFETY: what CPython would have called without a hook.
    unsafe { _PyEval_EvalFrameDefault(thread, frame, throwing) }
}

/// The closest repository function up the frames `thread` is executing,
/// inclusive: the caller of a frame about to be evaluated (CPython links
/// that frame in only once it evaluates it), or of a call noted by hand.
///
/// # Safety
/// `thread` is the running thread's state, on CPython 3.11, with the GIL held.
unsafe fn caller_3_11(
    profiler: &mut Profiler,
    py: Python<'_>,
    thread: *const ThreadState311,
) -> Option<u32> {
    // SAFETY: the frames of a running thread are alive while it holds the GIL.
    let cframe = unsafe { (*thread).cframe };
    if cframe.is_null() {
        return None;
    }
    let mut frame = unsafe { (*cframe).current_frame };
    for _ in 0..MAX_CALLER_DEPTH {
        if frame.is_null() {
            return None;
        }
        let code = unsafe { (*frame).f_code };
        if !code.is_null() {
            if let Some(found) = profiler.function_of(py, code) {
                return Some(found);
            }
        }
        frame = unsafe { (*frame).previous };
    }
    None
}

/// The C stack taken below the outermost evaluation on this thread (stacks
/// grow down on every platform CPython runs on).
fn stack_used() -> usize {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    OUTERMOST.with(|outermost| {
        if here > outermost.get() {
            outermost.set(here);
        }
        outermost.get() - here
    })
}

/// Evaluates `frame` with CPython's own evaluator in place, so that the
/// calls it makes are inlined again and take no C stack; they go unnoted,
/// which makes the open windows incomplete. The hook is put back once the
/// frame returns.
unsafe fn evaluate_handed_back(
    thread: *mut ffi::PyThreadState,
    frame: *mut c_void,
    throwing: c_int,
) -> *mut ffi::PyObject {
    MISSED.store(true, Ordering::Relaxed);
    // SAFETY: the GIL is held; this is 3.11 (the hook is installed).
    unsafe {
        _PyInterpreterState_SetEvalFrameFunc(
            ffi::PyInterpreterState_Get(),
            _PyEval_EvalFrameDefault,
        )
    };
    let result = unsafe { _PyEval_EvalFrameDefault(thread, frame, throwing) };
    let running = PROFILER.try_lock().is_ok_and(|profiler| {
        profiler
            .as_ref()
            .is_some_and(|p| p.hook == Hook::FrameEvaluator)
    });
    if running && current_evaluator() == _PyEval_EvalFrameDefault as EvalFrame as usize {
        // SAFETY: as above.
        unsafe { _PyInterpreterState_SetEvalFrameFunc(ffi::PyInterpreterState_Get(), evaluate) };
    }
    result
}

/// Called by CPython, with the GIL held, for every profile event of a
/// thread the profile function is installed on.
unsafe extern "C" fn profile(
    _object: *mut ffi::PyObject,
    frame: *mut c_void,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    if what != PY_TRACE_CALL || frame.is_null() {
        return 0;
    }
    // SAFETY: `frame` is the frame being entered; PyFrame_GetCode returns a
    // new reference, released once the code object is resolved (the
    // profiler holds its own).
    let code = unsafe { PyFrame_GetCode(frame) };
    if code.is_null() {
        return 0;
    }
    with_profiler(|profiler, py| {
        if let Some(callee) = profiler.function_of(py, code) {
            profiler.executed(callee);
            if let Some(caller) = repository_caller(profiler, py, frame) {
                profiler.called(caller, callee);
            }
        }
    });
    unsafe { ffi::Py_DECREF(code) };
    0
}

/// The closest repository function up the stack from `frame`, exclusive.
fn repository_caller(profiler: &mut Profiler, py: Python<'_>, frame: *mut c_void) -> Option<u32> {
    // SAFETY: `frame` is a live frame; PyFrame_GetBack and PyFrame_GetCode
    // return new references, each released here.
    let mut back = unsafe { PyFrame_GetBack(frame) };
    let mut found = None;
    for _ in 0..MAX_CALLER_DEPTH {
        if back.is_null() {
            break;
        }
        let code = unsafe { PyFrame_GetCode(back) };
        if !code.is_null() {
            found = profiler.function_of(py, code);
            unsafe { ffi::Py_DECREF(code) };
        }
        if found.is_some() {
            break;
        }
        let next = unsafe { PyFrame_GetBack(back) };
        unsafe { ffi::Py_DECREF(back as *mut ffi::PyObject) };
        back = next;
    }
    if !back.is_null() {
        unsafe { ffi::Py_DECREF(back as *mut ffi::PyObject) };
    }
    found
}
