//! The only place pyo3 appears: the `pytest_dryci._native` module. Every
//! method converts its arguments, runs plain Rust (`crate::session`) with
//! the GIL released, and converts the result into typed objects; errors
//! cross to Python in `to_py_err` as `pytest_dryci.errors.DryciError`, with
//! the same messages as the CLI and hints in the plugin's words.
//!
//! A pytest run crosses here once to decide (hash and query), once to match
//! its collected tests against the answers, and once to publish. Dependency
//! hashes and keys never leave Rust.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod audit;
mod profiler;

use crate::analysis::{FunctionLevel, StateCacheMode};
use crate::cache::local::Outcome;
use crate::cache::{Collection, Matchers, ServerSettings};
use crate::config::FrontEnd;
use crate::hash::Salt;
use crate::requirements::Observed;
use crate::session::{self, OtherCounts, SessionError, SessionSettings};

/// The one place a Rust error becomes a Python exception.
fn to_py_err(py: Python<'_>, message: String) -> PyErr {
    let made = py
        .import("pytest_dryci.errors")
        .and_then(|module| module.getattr("DryciError"))
        .and_then(|class| class.call1((message,)));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(err) => err,
    }
}

fn session_error(py: Python<'_>, err: SessionError) -> PyErr {
    let hint = match &err {
        SessionError::Analysis(analysis) => analysis.hint(FrontEnd::Plugin),
        _ => None,
    };
    let message = match hint {
        Some(hint) => format!("{err}\nhint: {hint}"),
        None => err.to_string(),
    };
    to_py_err(py, message)
}

/// What DryCI decided about one test file.
#[pyclass(frozen, module = "pytest_dryci._native")]
struct FileDecision {
    /// The first characters of its dependency hash (for skip reasons); None when unhashed.
    #[pyo3(get)]
    short_hash: Option<String>,
    /// Why it has no hash (its tests run); None when hashed.
    #[pyo3(get)]
    problem: Option<String>,
    /// Every node id of the file when its whole collection was recorded
    /// under its hash and each test has a result to serve: it need not be collected.
    #[pyo3(get)]
    complete: Option<Vec<String>>,
    /// Of `complete`, the tests that were skipped or xfailed: node id ->
    /// ("skipped" or "xfailed", reason).
    #[pyo3(get)]
    complete_results: BTreeMap<String, (&'static str, String)>,
    /// Every node id of its recorded collection, in collection order, when
    /// `decide` was told to read matchers and the record has them.
    #[pyo3(get)]
    recorded: Option<Vec<String>>,
    /// What `-k` and `-m` match `recorded` against, as the plugin encoded it.
    #[pyo3(get)]
    matchers: Option<String>,
    /// How many of its tests passed under its hash.
    #[pyo3(get)]
    passed_tests: usize,
    /// The durations of its tests that passed under its hash, added up (ms).
    #[pyo3(get)]
    passed_ms: u64,
}

/// The answer of `Session.decide`.
#[pyclass(frozen, module = "pytest_dryci._native")]
struct Decision {
    /// Node-id part of each test file -> its decision.
    #[pyo3(get)]
    files: BTreeMap<String, Py<FileDecision>>,
    #[pyo3(get)]
    graph_warnings: Vec<String>,
    /// Cache failures: the tests they concern run.
    #[pyo3(get)]
    cache_warnings: Vec<String>,
}

/// The answer of `Session.publish`.
#[pyclass(frozen, module = "pytest_dryci._native")]
struct Publication {
    #[pyo3(get)]
    published: usize,
    #[pyo3(get)]
    warnings: Vec<String>,
}

/// An outcome as Python sees it: ("passed", "skipped" or "xfailed", reason).
fn outcome_parts(outcome: Outcome) -> (&'static str, String) {
    match outcome {
        Outcome::Passed => ("passed", String::new()),
        Outcome::Skipped(reason) => ("skipped", reason),
        Outcome::XFailed(reason) => ("xfailed", reason),
    }
}

/// A result to serve, as Python sees it: (duration ms, kind, reason).
type ServedTuple = (Option<u64>, &'static str, String);

/// What a test was observed to read, as the plugin sends it (a dict).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct ObservedArg {
    files: Vec<String>,
    listings: Vec<String>,
    modules: Vec<String>,
    env: BTreeMap<String, Option<String>>,
    /// Under function-level keys, when they were all seen.
    #[pyo3(default)]
    functions: Option<Vec<String>>,
    #[pyo3(default)]
    subprocesses: Vec<String>,
}

impl From<ObservedArg> for Observed {
    fn from(arg: ObservedArg) -> Self {
        Observed {
            files: arg.files,
            listings: arg.listings,
            modules: arg.modules,
            env: arg.env,
            functions: arg.functions,
            subprocesses: arg.subprocesses,
        }
    }
}

/// One pytest run's link to DryCI (see `crate::session`). Cache failures
/// never raise: they come back as warnings and the tests run.
#[pyclass(module = "pytest_dryci._native")]
struct Session {
    /// Behind a lock so the GIL can be released while it works (a SQLite
    /// connection may move between threads but not be shared).
    inner: Mutex<session::Session>,
}

impl Session {
    fn wrap(inner: session::Session) -> Self {
        Session {
            inner: Mutex::new(inner),
        }
    }

    /// The session; after a panic in an earlier call its state is still
    /// whole (every update is one map insertion), so the lock is taken anyway.
    fn lock(&self) -> MutexGuard<'_, session::Session> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (
        root, *, config=None, salt=String::new(), python_env=None, state_cache=true,
        local_store=true, server_url=None, token=None, timeout=3.0, query=true,
        function_level=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        root: PathBuf,
        config: Option<PathBuf>,
        salt: String,
        python_env: Option<String>,
        state_cache: bool,
        local_store: bool,
        server_url: Option<String>,
        token: Option<String>,
        timeout: f64,
        query: bool,
        function_level: Option<Vec<PathBuf>>,
    ) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                to_py_err(
                    py,
                    format!("DRYCI_TIMEOUT must be a positive number of seconds, got {timeout}"),
                )
            })?;
        let settings = SessionSettings {
            root,
            config_path: config,
            salt: Salt::new(salt, python_env),
            state_cache: if state_cache {
                StateCacheMode::Default
            } else {
                StateCacheMode::Off
            },
            local_store,
            server: server_url.map(|url| ServerSettings {
                url,
                token,
                timeout,
            }),
            query,
            function_level: function_level.map(|whole_files| FunctionLevel { whole_files }),
        };
        Ok(Session::wrap(session::Session::new(settings)))
    }

    /// A worker's session from the controller's `export()`: it only matches tests.
    #[staticmethod]
    fn restore(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = session::Session::restore(data).map_err(|e| session_error(py, e))?;
        Ok(Session::wrap(inner))
    }

    /// The answers a worker needs, as opaque bytes.
    fn export<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.lock().export())
    }

    /// Hashes `files` (node-id part -> path) and asks the cache about them;
    /// with `matchers`, reads what `-k` and `-m` match recorded collections against.
    #[pyo3(signature = (files, *, matchers = false))]
    fn decide(
        &self,
        py: Python<'_>,
        files: Vec<(String, PathBuf)>,
        matchers: bool,
    ) -> PyResult<Decision> {
        let read = if matchers {
            Matchers::Read
        } else {
            Matchers::Skip
        };
        let decision = py
            .detach(|| self.lock().decide(&files, read))
            .map_err(|e| session_error(py, e))?;
        let mut converted = BTreeMap::new();
        for (part, file) in decision.files {
            let (short_hash, problem) = match file.hash {
                Ok(short) => (Some(short), None),
                Err(why) => (None, Some(why)),
            };
            let (recorded, matchers) = match file.collection {
                Some(collection) => (Some(collection.node_ids), collection.matchers),
                None => (None, None),
            };
            let file = FileDecision {
                short_hash,
                problem,
                recorded,
                matchers,
                complete: file.complete,
                complete_results: file
                    .complete_results
                    .into_iter()
                    .map(|(node_id, outcome)| {
                        let (kind, reason) = outcome_parts(outcome);
                        (node_id, (kind, reason))
                    })
                    .collect(),
                passed_tests: file.passed_tests,
                passed_ms: file.passed_ms,
            };
            converted.insert(part, Py::new(py, file)?);
        }
        Ok(Decision {
            files: converted,
            graph_warnings: decision.graph_warnings,
            cache_warnings: decision.cache_warnings,
        })
    }

    /// Of `node_ids`, those with a result to serve under their file's
    /// current hash: node id -> (duration in ms or None, "passed", "skipped"
    /// or "xfailed", the reason of a skip or an expected failure).
    fn passed(&self, py: Python<'_>, node_ids: Vec<String>) -> BTreeMap<String, ServedTuple> {
        let found = py.detach(|| self.lock().passed(&node_ids));
        found
            .into_iter()
            .map(|(node_id, served)| {
                let (kind, reason) = outcome_parts(served.outcome);
                (node_id, (served.duration_ms, kind, reason))
            })
            .collect()
    }

    /// Publishes `passes` (node-id part -> {node id: duration ms}), each
    /// test with what it was `observed` to read (node id -> inputs), and
    /// records `collections` (node-id part -> (every node id a whole
    /// collection of the file produced, the matcher data or None)).
    #[pyo3(signature = (
        passes, outcomes, observed, collections, *, calls=Vec::new(), total, failed, skipped,
        served,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        py: Python<'_>,
        passes: BTreeMap<String, BTreeMap<String, Option<u64>>>,
        outcomes: BTreeMap<String, (String, String)>,
        observed: BTreeMap<String, ObservedArg>,
        collections: BTreeMap<String, (Vec<String>, Option<String>)>,
        calls: Vec<(String, String)>,
        total: u64,
        failed: u64,
        skipped: u64,
        served: u64,
    ) -> PyResult<Publication> {
        let counts = OtherCounts {
            total,
            failed,
            skipped,
            served,
        };
        let observed: BTreeMap<String, Observed> = observed
            .into_iter()
            .map(|(node_id, inputs)| (node_id, inputs.into()))
            .collect();
        let collections: BTreeMap<String, Collection> = collections
            .into_iter()
            .map(|(part, (node_ids, matchers))| (part, Collection { node_ids, matchers }))
            .collect();
        let mut results = BTreeMap::new();
        for (node_id, (kind, reason)) in outcomes {
            let outcome = match kind.as_str() {
                "skipped" => Outcome::Skipped(reason),
                "xfailed" => Outcome::XFailed(reason),
                other => {
                    let message = format!("{node_id}: unknown outcome {other:?}");
                    return Err(to_py_err(py, message));
                }
            };
            results.insert(node_id, outcome);
        }
        let publication = py
            .detach(|| {
                self.lock()
                    .publish(&passes, &results, &observed, &calls, &collections, counts)
            })
            .map_err(|e| session_error(py, e))?;
        Ok(Publication {
            published: publication.published,
            warnings: publication.warnings,
        })
    }

    /// Why each of `node_ids` (tests that ran) was not served: node id -> reason.
    fn explain(&self, py: Python<'_>, node_ids: Vec<String>) -> BTreeMap<String, String> {
        py.detach(|| self.lock().explain(&node_ids).into_iter().collect())
    }

    /// For each test file (node-id part -> paths its tests read), the paths
    /// its static dependency graph does not hold (one full analysis).
    fn outside_static_graph(
        &self,
        py: Python<'_>,
        observed: BTreeMap<String, Vec<String>>,
    ) -> PyResult<BTreeMap<String, Vec<String>>> {
        py.detach(|| self.lock().outside_static_graph(&observed))
            .map_err(|e| session_error(py, e))
    }
}

/// Runs the `dryci` command line with `argv` (program name first); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| crate::cli::run(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Session>()?;
    m.add_class::<Decision>()?;
    m.add_class::<FileDecision>()?;
    m.add_class::<Publication>()?;
    m.add_class::<audit::AuditHook>()?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(audit::add_audit_hook, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::start_function_profiler, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::stop_function_profiler, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::profile_thread, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::open_function_window, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::close_function_window, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::take_function_calls, m)?)?;
    m.add_function(wrap_pyfunction!(profiler::note_call, m)?)?;
    Ok(())
}
