//! The only place pyo3 appears: the `pytest_dryci._native` module. Every
//! function converts its arguments, runs a plain Rust function with the GIL
//! released, and converts the result; errors cross to Python in `to_py_err`
//! as `pytest_dryci.errors.DryciError`, with the same messages as the CLI.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;

use crate::analysis::{dependency_hashes, Request, StateCacheMode};
use crate::cache::{keys, Cache, CacheSettings, ServerSettings};
use crate::hash::Salt;
use crate::protocol::v2::PassedTest;
use crate::protocol::RunCounts;

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

/// Dependency hashes of some test files.
#[pyclass(frozen, module = "pytest_dryci._native")]
struct HashReport {
    /// The repository root the paths are relative to.
    #[pyo3(get)]
    root: String,
    /// Given path -> dependency hash, or None when it could not be fully hashed.
    #[pyo3(get)]
    hashes: HashMap<String, Option<String>>,
    /// Given path -> why it has no hash.
    #[pyo3(get)]
    problems: HashMap<String, String>,
    #[pyo3(get)]
    warnings: Vec<String>,
    /// Where the configuration came from.
    #[pyo3(get)]
    config_source: String,
}

/// Computes the dependency hash of each of `files` (absolute or relative to `root`).
#[pyfunction]
#[pyo3(signature = (root, files, config=None, salt=String::new(), python_env=None, state_cache=true))]
fn compute_hashes(
    py: Python<'_>,
    root: PathBuf,
    files: Vec<PathBuf>,
    config: Option<PathBuf>,
    salt: String,
    python_env: Option<String>,
    state_cache: bool,
) -> PyResult<HashReport> {
    let request = Request {
        root,
        config_path: config,
        inputs: Some(files.clone()),
        salt: Salt::new(salt, python_env),
        state_cache: if state_cache {
            StateCacheMode::Default
        } else {
            StateCacheMode::Off
        },
    };
    let analysis = py.detach(|| dependency_hashes(&request)).map_err(|err| {
        let message = match err.hint() {
            Some(hint) => format!("{err}\nhint: {hint}"),
            None => err.to_string(),
        };
        to_py_err(py, message)
    })?;
    // Inputs come back in the order given, one row each.
    let mut hashes = HashMap::new();
    let mut problems = HashMap::new();
    for (given, result) in files.iter().zip(&analysis.inputs) {
        let key = given.to_string_lossy().into_owned();
        if let Some(problem) = &result.problem {
            problems.insert(key.clone(), problem.clone());
        }
        hashes.insert(key, result.hash.clone());
    }
    let config_source = match &analysis.config.source {
        crate::config::ConfigSource::Yaml(p) | crate::config::ConfigSource::Pyproject(p) => {
            p.display().to_string()
        }
        crate::config::ConfigSource::Defaults => "defaults".to_string(),
    };
    Ok(HashReport {
        root: analysis.config.root.display().to_string(),
        hashes,
        problems,
        warnings: analysis.warnings,
        config_source,
    })
}

/// The key a test file's dependency hash is stored under.
#[pyfunction]
fn file_key(dep_hash: &str) -> String {
    keys::file_key(dep_hash)
}

/// The keys of many tests of one file: node id -> key.
#[pyfunction]
fn node_keys(node_ids: Vec<String>, dep_hash: &str) -> HashMap<String, String> {
    node_ids
        .into_iter()
        .map(|id| (keys::node_key(&id, dep_hash), id))
        .map(|(k, id)| (id, k))
        .collect()
}

/// The layered result cache (local store and/or server). Never raises on
/// cache failures: they come back as warnings and the tests run.
#[pyclass(module = "pytest_dryci._native")]
struct ResultCache {
    inner: Mutex<Cache>,
    #[pyo3(get)]
    open_warnings: Vec<String>,
}

#[pymethods]
impl ResultCache {
    #[new]
    #[pyo3(signature = (local_path=None, server_url=None, token=None, timeout=3.0))]
    fn new(
        py: Python<'_>,
        local_path: Option<PathBuf>,
        server_url: Option<String>,
        token: Option<String>,
        timeout: f64,
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
        let settings = CacheSettings {
            local: local_path,
            server: server_url.map(|url| ServerSettings {
                url,
                token,
                timeout,
            }),
        };
        let (cache, open_warnings) = py.detach(|| Cache::open(&settings));
        Ok(ResultCache {
            inner: Mutex::new(cache),
            open_warnings,
        })
    }

    /// For each file key, {node key: duration in ms or None}; plus warnings.
    fn query(
        &self,
        py: Python<'_>,
        file_keys: Vec<String>,
    ) -> (Vec<HashMap<String, Option<u64>>>, Vec<String>) {
        py.detach(|| {
            let Ok(mut cache) = self.inner.lock() else {
                return (
                    vec![HashMap::new(); file_keys.len()],
                    vec!["cache lock poisoned".to_string()],
                );
            };
            let (answers, warnings) = cache.query(&file_keys);
            let answers = answers
                .into_iter()
                .map(|tests| {
                    tests
                        .into_iter()
                        .map(|t| (t.node_id, t.duration_ms))
                        .collect()
                })
                .collect();
            (answers, warnings)
        })
    }

    /// For each file key, the JSON list of node ids of its complete-file record, or None.
    fn complete_files(
        &self,
        py: Python<'_>,
        file_keys: Vec<String>,
    ) -> (Vec<Option<String>>, Vec<String>) {
        py.detach(|| match self.inner.lock() {
            Ok(cache) => cache.complete_files(&file_keys),
            Err(_) => (
                vec![None; file_keys.len()],
                vec!["cache lock poisoned".to_string()],
            ),
        })
    }

    /// Records complete files: {file key: JSON list of node ids}; returns warnings.
    fn record_complete_files(
        &self,
        py: Python<'_>,
        complete: BTreeMap<String, String>,
    ) -> Vec<String> {
        py.detach(|| match self.inner.lock() {
            Ok(cache) => cache.record_complete_files(&complete),
            Err(_) => vec!["cache lock poisoned".to_string()],
        })
    }

    /// Publishes {file key: {node key: duration ms}} with the run's counts
    /// (total, passed, failed, skipped, skipped by cache); returns (tests sent, warnings).
    fn publish(
        &self,
        py: Python<'_>,
        passed: HashMap<String, HashMap<String, Option<u64>>>,
        counts: (u64, u64, u64, u64, u64),
    ) -> (usize, Vec<String>) {
        let passed: BTreeMap<String, Vec<PassedTest>> = passed
            .into_iter()
            .map(|(file, tests)| {
                let mut tests: Vec<PassedTest> = tests
                    .into_iter()
                    .map(|(node_id, duration_ms)| PassedTest {
                        node_id,
                        duration_ms,
                    })
                    .collect();
                tests.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                (file, tests)
            })
            .collect();
        let counts = RunCounts {
            total_test_count: counts.0,
            passed_test_count: counts.1,
            failed_test_count: counts.2,
            skipped_test_count: counts.3,
            skipped_by_cache_test_count: counts.4,
        };
        py.detach(|| match self.inner.lock() {
            Ok(mut cache) => cache.publish(&passed, counts),
            Err(_) => (0, vec!["cache lock poisoned".to_string()]),
        })
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
    m.add_class::<HashReport>()?;
    m.add_class::<ResultCache>()?;
    m.add_function(wrap_pyfunction!(compute_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(file_key, m)?)?;
    m.add_function(wrap_pyfunction!(node_keys, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    Ok(())
}
