//! One analysis run, composed from the core: load the configuration, index
//! the repository, build the graph from the inputs, compute closures and
//! dependency hashes, and update the state cache. The CLI and the Python
//! binding both call `analyze`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::{self, Config, ConfigError};
use crate::files::state::{write_atomically, StateCache};
use crate::graph::{self, BuildInput, Closures, DepGraph, NodeId};
use crate::hash::{dependency_hash, node_entries, HashContext, Salt};
use crate::walk::{relative, RepoIndex};

/// Where the per-file state cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateCacheMode {
    /// `<root>/.dryci/state-v1.bin`
    Default,
    At(PathBuf),
    Off,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub root: PathBuf,
    pub config_path: Option<PathBuf>,
    /// Files to hash (absolute, or relative to `root`); `None` means the configuration's `inputs`.
    pub inputs: Option<Vec<PathBuf>>,
    pub salt: Salt,
    pub state_cache: StateCacheMode,
}

#[derive(Debug, Clone)]
pub struct InputResult {
    /// Relative to the repo root (or as given, when outside it).
    pub path: String,
    pub node: Option<NodeId>,
    /// `None` when the input could not be fully hashed; `problem` says why.
    pub hash: Option<String>,
    pub problem: Option<String>,
    pub closure: Vec<NodeId>,
}

impl InputResult {
    fn unhashed(path: String, problem: String) -> Self {
        InputResult {
            path,
            node: None,
            hash: None,
            problem: Some(problem),
            closure: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub index: Duration,
    pub graph: Duration,
    pub hashes: Duration,
    pub state_save: Duration,
}

pub struct Analysis {
    pub config: Config,
    pub graph: DepGraph,
    pub inputs: Vec<InputResult>,
    pub warnings: Vec<String>,
    pub files_indexed: usize,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("repository root {0} is not a folder")]
    Root(PathBuf),
}

impl AnalysisError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            AnalysisError::Config(err) => err.hint(),
            AnalysisError::Root(_) => Some("pass the repository's root with --root"),
        }
    }
}

pub fn analyze(request: &Request) -> Result<Analysis, AnalysisError> {
    if !request.root.is_dir() {
        return Err(AnalysisError::Root(request.root.clone()));
    }
    let config = config::load(&request.root, request.config_path.as_deref())?;
    let root = config.root.clone();
    let mut timings = Timings::default();
    let started = Instant::now();
    let index = RepoIndex::build(&root, &config.rules.global_exclude);
    timings.index = started.elapsed();

    let requested = resolve_inputs(&root, &index, &config, request.inputs.as_deref());
    let relative_inputs: Vec<String> = requested
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let state = match &request.state_cache {
        StateCacheMode::Default => StateCache::load(&default_state_path(&root)),
        StateCacheMode::At(path) => StateCache::load(path),
        StateCacheMode::Off => StateCache::disabled(),
    };
    let started = Instant::now();
    let built = graph::build(BuildInput {
        config: &config,
        index: &index,
        inputs: &relative_inputs,
        state: &state,
    });
    timings.graph = started.elapsed();

    let started = Instant::now();
    let graph = built.graph;
    let closures = Closures::compute(&graph);
    let context = HashContext {
        config_fingerprint: &config.fingerprint,
        salt: request.salt.digest(),
    };
    let entries = node_entries(&graph);
    let inputs: Vec<InputResult> = requested
        .into_par_iter()
        .map(|entry| {
            let rel = match entry {
                Ok(rel) => rel,
                Err((path, problem)) => return InputResult::unhashed(path, problem),
            };
            let Some(node) = graph.node(&rel) else {
                return InputResult::unhashed(rel, "not in the dependency graph".to_string());
            };
            let closure = closures.of_input(node);
            let (hash, problem) = match dependency_hash(&context, &graph, &entries, node, &closure)
            {
                Ok(hash) => (Some(hash), None),
                Err(problem) => (None, Some(problem)),
            };
            InputResult {
                path: rel,
                node: Some(node),
                hash,
                problem,
                closure,
            }
        })
        .collect();
    timings.hashes = started.elapsed();

    let mut warnings = index.warnings.clone();
    warnings.extend(state.load_warning.clone());
    warnings.extend(graph.warnings.iter().cloned());
    let started = Instant::now();
    if request.state_cache != StateCacheMode::Off && !built.fresh.is_empty() {
        if let Err(err) = save_state(&state, &root, built.fresh, built.scans) {
            warnings.push(format!("cannot write the state cache: {err}"));
        }
    }
    timings.state_save = started.elapsed();
    Ok(Analysis {
        config,
        graph,
        inputs,
        warnings,
        files_indexed: index.len(),
        timings,
    })
}

pub fn default_state_path(root: &Path) -> PathBuf {
    root.join(".dryci").join("state-v1.bin")
}

fn save_state(
    state: &StateCache,
    root: &Path,
    fresh: Vec<(String, crate::files::state::FileStamp, crate::files::Digest)>,
    scans: Vec<(
        crate::files::Digest,
        std::sync::Arc<crate::imports::scan::ScanResult>,
    )>,
) -> std::io::Result<()> {
    let dir = root.join(".dryci");
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        // Like pytest's cache folder: never committed by accident.
        write_atomically(&ignore, b"# created by dryci\n*\n")?;
    }
    state.save(fresh, scans)
}

/// Each requested input relative to the root, or (as given, why not).
fn resolve_inputs(
    root: &Path,
    index: &RepoIndex,
    config: &Config,
    given: Option<&[PathBuf]>,
) -> Vec<Result<String, (String, String)>> {
    let Some(given) = given else {
        return index
            .paths()
            .filter(|(_, path)| config.rules.inputs_set.is_match(path))
            .map(|(_, path)| Ok(path.to_string()))
            .collect();
    };
    given
        .iter()
        .map(|path| {
            let absolute = if path.is_absolute() {
                path.clone()
            } else {
                root.join(path)
            };
            let absolute = std::fs::canonicalize(&absolute).unwrap_or(absolute);
            match relative(root, &absolute) {
                Some(rel) if index.id(&rel).is_some() => Ok(rel),
                Some(rel) => Err((
                    rel,
                    "not in the repository (missing, excluded or not a file)".to_string(),
                )),
                None => Err((
                    path.display().to_string(),
                    format!("outside the repository root {}", root.display()),
                )),
            }
        })
        .collect()
}
