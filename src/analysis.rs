//! One analysis run, composed from the core: load the configuration, index
//! the repository, build the graph from the inputs, compute closures and
//! dependency hashes, and update the caches under `.dryci/`. `analyze`
//! returns the graph too (the CLI's pictures and reports);
//! `dependency_hashes` only the hashes, and replays them from the hash memo
//! when nothing they depend on changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use std::sync::Arc;

use crate::config::{self, Config, ConfigError};
use crate::files::envelope::write_atomically;
use crate::files::state::{FileStamp, StateCache};
use crate::files::{read_facts, Digest, FileDigest, Needs};
use crate::graph::entry_points::EntryPoint;
use crate::graph::visit_cache::{Derived, VisitCache};
use crate::graph::{self, BuildInput, Closures, DepGraph, NodeId};
use crate::hash::memo::{self, InputHash, Memo};
use crate::hash::{dependency_hash, node_entries, HashContext, Salt};
use crate::imports::scan::ScanResult;
use crate::walk::{relative, FileId, RepoIndex};

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
}

impl InputResult {
    fn remembered(&self) -> InputHash {
        InputHash {
            path: self.path.clone(),
            hash: self.hash.clone(),
            problem: self.problem.clone(),
        }
    }

    fn unhashed(path: String, problem: String) -> Self {
        InputResult {
            path,
            node: None,
            hash: None,
            problem: Some(problem),
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
    closures: Closures,
    pub inputs: Vec<InputResult>,
    pub warnings: Vec<String>,
    pub files_indexed: usize,
    pub timings: Timings,
}

impl Analysis {
    /// The closure of `input` (node ids in path order), empty when it has no node.
    pub fn closure(&self, input: &InputResult) -> Vec<NodeId> {
        input.node.map_or_else(Vec::new, |node| {
            self.closures
                .of_input(node)
                .ones()
                .map(|i| i as NodeId)
                .collect()
        })
    }
}

/// The dependency hashes of the inputs, without the graph.
pub struct HashRun {
    pub config: Config,
    /// In the order requested.
    pub inputs: Vec<InputHash>,
    /// Files and absent names in the graph the hashes came from.
    pub node_count: usize,
    pub warnings: Vec<String>,
    pub files_indexed: usize,
    pub timings: Timings,
    /// The hashes were remembered from an earlier run: no graph was built.
    pub remembered: bool,
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

/// Everything both kinds of run need before the graph: the configuration,
/// the index, the inputs and the caches.
struct Prepared {
    config: Config,
    index: RepoIndex,
    requested: Vec<Result<String, (String, String)>>,
    state: StateCache,
    entry_points: Vec<EntryPoint>,
    /// The fingerprint of what, besides a file's content, a visit depends on.
    visit_context: [u8; 32],
    memo: Memo,
    timings: Timings,
}

fn prepare(request: &Request) -> Result<Prepared, AnalysisError> {
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
    let state = match &request.state_cache {
        StateCacheMode::Default => StateCache::load(&default_state_path(&root)),
        StateCacheMode::At(path) => StateCache::load(path),
        StateCacheMode::Off => StateCache::disabled(),
    };
    let entry_points = graph::entry_points::for_config(&config);
    let visit_context = graph::visit_cache::context(&config, &index, &entry_points);
    let memo = match cache_path(&request.state_cache, &root, "hashes") {
        Some(path) => Memo::load(&path),
        None => Memo::disabled(),
    };
    Ok(Prepared {
        config,
        index,
        requested,
        state,
        entry_points,
        visit_context,
        memo,
        timings,
    })
}

/// Builds the graph and hashes every input.
pub fn analyze(request: &Request) -> Result<Analysis, AnalysisError> {
    let prepared = prepare(request)?;
    Ok(analyze_prepared(request, prepared))
}

/// The dependency hashes of the inputs: remembered ones when nothing they
/// depend on changed since a recent run, else from a full analysis.
pub fn dependency_hashes(request: &Request) -> Result<HashRun, AnalysisError> {
    let prepared = prepare(request)?;
    let key = memo_key(request, &prepared);
    if let Some(run) = remembered_run(request, &prepared, &key) {
        return Ok(run);
    }
    let analysis = analyze_prepared(request, prepared);
    Ok(HashRun {
        inputs: analysis
            .inputs
            .iter()
            .map(InputResult::remembered)
            .collect(),
        node_count: analysis.graph.nodes.len(),
        config: analysis.config,
        warnings: analysis.warnings,
        files_indexed: analysis.files_indexed,
        timings: analysis.timings,
        remembered: false,
    })
}

fn memo_key(request: &Request, prepared: &Prepared) -> [u8; 32] {
    let context = HashContext {
        config_fingerprint: &prepared.config.fingerprint,
        salt: request.salt.digest(),
    };
    memo::key(&prepared.visit_context, &context, &prepared.requested)
}

/// The memo's answer, when every file its slot was computed from still
/// has the same content (read again if its stamp changed).
fn remembered_run(request: &Request, prepared: &Prepared, key: &[u8; 32]) -> Option<HashRun> {
    let started = Instant::now();
    let slot = prepared.memo.find(key, &prepared.index)?;
    let index = &prepared.index;
    let fresh: Vec<Option<(String, FileStamp, Digest)>> = slot
        .files
        .par_iter()
        .map(|(id, digest)| {
            let rel = index.path(*id);
            let facts = read_facts(&index.absolute(*id), rel, Needs::default(), &prepared.state);
            match facts.digest {
                FileDigest::Content(now) if now == *digest => {
                    Ok(facts.fresh.map(|(stamp, d)| (rel.to_string(), stamp, d)))
                }
                _ => Err(()),
            }
        })
        .collect::<Result<_, ()>>()
        .ok()?;
    let mut warnings = prepared.index.warnings.clone();
    warnings.extend(prepared.state.load_warning.clone());
    warnings.extend(slot.warnings.iter().cloned());
    let fresh: Vec<_> = fresh.into_iter().flatten().collect();
    let mut timings = prepared.timings;
    timings.hashes = started.elapsed();
    if request.state_cache != StateCacheMode::Off && !fresh.is_empty() {
        // Files touched without a change: remember their new stamps.
        if let Err(err) = save_state(&prepared.state, &prepared.config.root, fresh, Vec::new()) {
            warnings.push(format!("cannot write the state cache: {err}"));
        }
    }
    Some(HashRun {
        config: prepared.config.clone(),
        inputs: slot.inputs.clone(),
        node_count: slot.node_count,
        warnings,
        files_indexed: prepared.index.len(),
        timings,
        remembered: true,
    })
}

fn analyze_prepared(request: &Request, prepared: Prepared) -> Analysis {
    let key = memo_key(request, &prepared);
    let Prepared {
        config,
        index,
        requested,
        state,
        entry_points,
        visit_context,
        memo,
        mut timings,
    } = prepared;
    let root = config.root.clone();
    let relative_inputs: Vec<String> = requested
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let visit_cache = match cache_path(&request.state_cache, &root, "visits") {
        Some(path) => VisitCache::load(&path, visit_context, &index),
        None => VisitCache::disabled(),
    };
    let started = Instant::now();
    let built = graph::build(BuildInput {
        config: &config,
        index: &index,
        inputs: &relative_inputs,
        state: &state,
        entry_points,
        visit_cache,
    });
    timings.graph = started.elapsed();

    let graph = built.graph;
    let saving = request.state_cache != StateCacheMode::Off;
    let (inputs, closures, mut warnings) = std::thread::scope(|scope| {
        // What the walk learned is written while the hashes are computed.
        let learned = scope.spawn(|| {
            if !saving {
                return Vec::new();
            }
            save_learned(
                &root,
                &index,
                &state,
                built.fresh,
                built.scans,
                &built.visit_cache,
                built.fresh_visits,
            )
        });
        let started = Instant::now();
        let previous = memo.find(&key, &index);
        let (inputs, closures) = hash_inputs(request, &config, &graph, &index, previous, requested);
        timings.hashes = started.elapsed();
        let started = Instant::now();
        let warnings = learned
            .join()
            .unwrap_or_else(|_| vec!["writing the caches failed".to_string()]);
        timings.state_save = started.elapsed();
        (inputs, closures, warnings)
    });

    let mut all_warnings = index.warnings.clone();
    all_warnings.extend(state.load_warning.clone());
    all_warnings.extend(built.visit_cache.load_warning.clone());
    all_warnings.extend(memo.load_warning.clone());
    all_warnings.extend(graph.warnings.iter().cloned());
    all_warnings.append(&mut warnings);
    let mut warnings = all_warnings;
    let started = Instant::now();
    if saving {
        let saved =
            ignored_cache_dir(&root).and_then(|()| remember(&memo, key, &graph, &index, &inputs));
        warnings.extend(
            saved
                .err()
                .map(|e| format!("cannot write the hash memo: {e}")),
        );
    }
    timings.state_save += started.elapsed();
    Analysis {
        config,
        graph,
        closures,
        inputs,
        warnings,
        files_indexed: index.len(),
        timings,
    }
}

/// Hashes every requested input, reusing the hash a memo slot of the same
/// key remembered for an input whose closure did not change. Returns the
/// results in the order requested, and the closures.
fn hash_inputs(
    request: &Request,
    config: &Config,
    graph: &DepGraph,
    index: &RepoIndex,
    previous: Option<&memo::Slot>,
    requested: Vec<Result<String, (String, String)>>,
) -> (Vec<InputResult>, Closures) {
    let reuse = previous.map(|slot| memo::Reuse::new(slot, graph, index));
    let to_hash = requested
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|rel| graph.node(rel)))
        .filter(|node| reuse.as_ref().is_none_or(|r| r.is_affected(*node)))
        .count();
    // Every closure at once pays off when many inputs need theirs.
    let closures = if to_hash * 4 >= requested.len() {
        Closures::compute(graph)
    } else {
        Closures::walking(graph)
    };
    let context = HashContext {
        config_fingerprint: &config.fingerprint,
        salt: request.salt.digest(),
    };
    let entries = node_entries(graph);
    let inputs = requested
        .into_par_iter()
        .enumerate()
        .map_init(Vec::new, |buffer, (position, entry)| {
            let rel = match entry {
                Ok(rel) => rel,
                Err((path, problem)) => return InputResult::unhashed(path, problem),
            };
            let Some(node) = graph.node(&rel) else {
                return InputResult::unhashed(rel, "not in the dependency graph".to_string());
            };
            if let Some(remembered) = reuse.as_ref().and_then(|r| r.outcome(position, &rel, node)) {
                return InputResult {
                    path: rel,
                    node: Some(node),
                    hash: remembered.hash.clone(),
                    problem: None,
                };
            }
            let closure = closures.of_input(node);
            let closure = closure.ones().map(|i| i as NodeId);
            let hashed = dependency_hash(&context, graph, &entries, node, closure, buffer);
            let (hash, problem) = match hashed {
                Ok(hash) => (Some(hash), None),
                Err(problem) => (None, Some(problem)),
            };
            InputResult {
                path: rel,
                node: Some(node),
                hash,
                problem,
            }
        })
        .collect();
    (inputs, closures)
}

/// Writes the state cache and the visit cache with what this run learned;
/// returns a warning for each that could not be written.
fn save_learned(
    root: &Path,
    index: &RepoIndex,
    state: &StateCache,
    fresh: Vec<(String, FileStamp, Digest)>,
    scans: Vec<(Digest, Arc<ScanResult>)>,
    visit_cache: &VisitCache,
    fresh_visits: Vec<(FileId, Digest, Arc<Derived>)>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !fresh.is_empty() {
        if let Err(err) = save_state(state, root, fresh, scans) {
            warnings.push(format!("cannot write the state cache: {err}"));
        }
    }
    if !fresh_visits.is_empty() {
        let saved = ignored_cache_dir(root).and_then(|()| visit_cache.save(index, fresh_visits));
        if let Err(err) = saved {
            warnings.push(format!("cannot write the visit cache: {err}"));
        }
    }
    warnings
}

/// Records this run's hashes in the memo, unless a file of the graph could
/// not be read (such a run must never be replayed).
fn remember(
    memo: &Memo,
    key: [u8; 32],
    graph: &DepGraph,
    index: &RepoIndex,
    inputs: &[InputResult],
) -> std::io::Result<()> {
    let mut files = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        match (index.id(&node.path), &node.digest) {
            (Some(id), FileDigest::Content(digest)) => files.push((id, *digest)),
            // A name the layout says does not exist: the key covers it.
            (None, FileDigest::Absent) => {}
            _ => return Ok(()),
        }
    }
    let slot = memo::Slot::new(
        key,
        files,
        inputs.iter().map(InputResult::remembered).collect(),
        graph.warnings.clone(),
        graph.nodes.len(),
    );
    memo.save(slot)
}

pub fn default_state_path(root: &Path) -> PathBuf {
    root.join(".dryci").join("state-v1.bin")
}

/// DryCI's other cache files (`visits`, `hashes`) live next to the state cache.
fn cache_path(mode: &StateCacheMode, root: &Path, name: &str) -> Option<PathBuf> {
    match mode {
        StateCacheMode::Default => Some(root.join(".dryci").join(format!("{name}-v1.bin"))),
        StateCacheMode::At(state) => {
            let mut file = state.file_name()?.to_os_string();
            file.push(format!(".{name}"));
            Some(state.with_file_name(file))
        }
        StateCacheMode::Off => None,
    }
}

fn save_state(
    state: &StateCache,
    root: &Path,
    fresh: Vec<(String, FileStamp, Digest)>,
    scans: Vec<(Digest, Arc<ScanResult>)>,
) -> std::io::Result<()> {
    ignored_cache_dir(root)?;
    state.save(fresh, scans)
}

/// Creates `.dryci/` with a `.gitignore`: like pytest's cache folder, it is
/// never committed by accident.
fn ignored_cache_dir(root: &Path) -> std::io::Result<()> {
    let ignore = root.join(".dryci").join(".gitignore");
    if !ignore.exists() {
        write_atomically(&ignore, b"# created by dryci\n*\n")?;
    }
    Ok(())
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
