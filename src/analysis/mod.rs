//! One analysis run, composed from the core: load the configuration, index
//! the repository, build the graph from the inputs, compute closures and
//! dependency hashes, and update the caches under `.dryci/`. `analyze`
//! returns the graph too (the CLI's pictures and reports);
//! `dependency_hashes` only the hashes, and replays them from the hash memo
//! when nothing they depend on changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::{self, Config, ConfigError, FrontEnd};
use crate::files::state::StateCache;
use crate::files::{Digest, FileDigest};
use crate::graph::entry_points::EntryPoint;
use crate::graph::{self, BuildInput, Closures, DepGraph, NodeId};
use crate::hash::memo::{self, InputHash, Memo};
use crate::hash::{
    dependency_hash, node_entries, DependencyHash, HashContext, RequestedInput, Salt, Unhashed,
};
use crate::walk::{relative, RepoIndex};

mod caches;
mod skeletons;

use caches::{
    ignored_cache_dir, load_memo, load_state, load_visits, remember, remembered_run, save_learned,
    LearnedFiles,
};

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
    /// Function-level keys; None: every file is keyed by its whole content.
    pub function_level: Option<FunctionLevel>,
}

/// Function-level keys: each Python file of a closure contributes its
/// module-level code only (`skeletons`), except `whole_files` (absolute),
/// whose functions may have run before they could be seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionLevel {
    pub whole_files: Vec<PathBuf>,
}

impl Request {
    /// The salt's digest, with the key's precision: a function-level hash
    /// never equals a file-level one.
    fn salt_digest(&self) -> [u8; 32] {
        let salt = self.salt.digest();
        let Some(level) = &self.function_level else {
            return salt;
        };
        let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 function-level salt");
        hasher.update(&salt);
        let mut whole: Vec<&PathBuf> = level.whole_files.iter().collect();
        whole.sort();
        for path in whole {
            crate::hashing::hash_field(&mut hasher, path.to_string_lossy().as_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}

#[derive(Debug, Clone)]
pub struct InputResult {
    /// Relative to the repo root (or as given, when outside it).
    pub path: String,
    pub node: Option<NodeId>,
    /// The hash, or why the input could not be fully hashed.
    pub outcome: Result<DependencyHash, Unhashed>,
}

impl From<&InputResult> for InputHash {
    fn from(result: &InputResult) -> Self {
        InputHash {
            path: result.path.clone(),
            outcome: result.outcome.clone(),
        }
    }
}

impl InputResult {
    pub fn hash(&self) -> Option<&DependencyHash> {
        self.outcome.as_ref().ok()
    }

    pub fn problem(&self) -> Option<&Unhashed> {
        self.outcome.as_ref().err()
    }

    fn unhashed(path: String, why: Unhashed) -> Self {
        InputResult {
            path,
            node: None,
            outcome: Err(why),
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
    /// Every file of the graph with the digest its content had (in the
    /// graph's order), for telling later which of them changed.
    pub files: Vec<(String, Digest)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("repository root {0} is not a folder")]
    Root(PathBuf),
}

impl AnalysisError {
    /// A hint for `front_end`'s user, naming its settings in its own words.
    pub fn hint(&self, front_end: FrontEnd) -> Option<String> {
        match self {
            AnalysisError::Config(err) => err.hint(front_end),
            AnalysisError::Root(_) => Some(
                match front_end {
                    FrontEnd::Cli => "pass the repository's root with --root",
                    FrontEnd::Plugin => "run pytest from inside the repository (its rootdir)",
                }
                .to_string(),
            ),
        }
    }
}

/// Everything both kinds of run need before the graph: the configuration,
/// the index, the inputs and the caches.
struct Prepared {
    config: Config,
    index: RepoIndex,
    requested: Vec<RequestedInput>,
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
    let state = load_state(&request.state_cache, &root);
    let entry_points = graph::entry_points::for_config(&config);
    let visit_context = graph::visit_cache::context(&config, &index, &entry_points);
    let memo = load_memo(&request.state_cache, &root);
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

/// The per-file state cache a run with `mode` uses, for reading other files
/// through it (the inputs tests were observed to read).
pub fn state_cache(mode: &StateCacheMode, root: &Path) -> StateCache {
    load_state(mode, root)
}

/// Builds the graph and hashes every input.
pub fn analyze(request: &Request) -> Result<Analysis, AnalysisError> {
    let prepared = prepare(request)?;
    let key = memo_key(request, &prepared);
    Ok(analyze_prepared(request, prepared, key))
}

/// The dependency hashes of the inputs: remembered ones when nothing they
/// depend on changed since a recent run, else from a full analysis.
pub fn dependency_hashes(request: &Request) -> Result<HashRun, AnalysisError> {
    let prepared = prepare(request)?;
    let key = memo_key(request, &prepared);
    if let Some(run) = remembered_run(request, &prepared, &key) {
        return Ok(run);
    }
    let analysis = analyze_prepared(request, prepared, key);
    let files = analysis
        .graph
        .nodes
        .iter()
        .filter_map(|node| match node.digest {
            FileDigest::Content(digest) => Some((node.path.clone(), digest)),
            _ => None,
        })
        .collect();
    Ok(HashRun {
        files,
        inputs: analysis.inputs.iter().map(InputHash::from).collect(),
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
        salt: request.salt_digest(),
    };
    memo::key(&prepared.visit_context, &context, &prepared.requested)
}

/// `key` is `memo_key(request, &prepared)`, which the caller has already.
fn analyze_prepared(request: &Request, prepared: Prepared, key: [u8; 32]) -> Analysis {
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
        .filter_map(|r| r.relative().map(str::to_string))
        .collect();
    let visit_cache = load_visits(&request.state_cache, &root, visit_context, &index);
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
    let skeletons = request
        .function_level
        .as_ref()
        .map(|level| skeletons::skeletons(&root, &graph, &state, level));
    let (skeletons, fresh_functions) = match skeletons {
        Some(found) => (Some(found.digests), found.fresh),
        None => (None, Vec::new()),
    };
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
                LearnedFiles {
                    fresh: built.fresh,
                    scans: built.scans,
                    functions: fresh_functions,
                },
                &built.visit_cache,
                built.fresh_visits,
            )
        });
        let started = Instant::now();
        let previous = memo.find(&key, &index);
        let (inputs, closures) = hash_inputs(
            request,
            &config,
            &graph,
            &index,
            previous,
            requested,
            skeletons.as_deref(),
        );
        timings.hashes = started.elapsed();
        let started = Instant::now();
        let warnings = learned
            .join()
            .unwrap_or_else(|_| vec!["writing the caches failed".to_string()]);
        timings.state_save = started.elapsed();
        (inputs, closures, warnings)
    });

    let mut all_warnings = index.warnings.clone();
    all_warnings.extend(state.load_warning());
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
    requested: Vec<RequestedInput>,
    skeletons: Option<&[Option<Digest>]>,
) -> (Vec<InputResult>, Closures) {
    let reuse = previous.map(|slot| memo::Reuse::new(slot, graph, index));
    let to_hash = requested
        .iter()
        .filter_map(|r| r.relative().and_then(|rel| graph.node(rel)))
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
        salt: request.salt_digest(),
    };
    let entries = node_entries(graph, skeletons);
    let inputs = requested
        .into_par_iter()
        .enumerate()
        .map_init(Vec::new, |buffer, (position, entry)| {
            let rel = match entry {
                RequestedInput::InRepository(rel) => rel,
                RequestedInput::Rejected { path, why } => return InputResult::unhashed(path, why),
            };
            let Some(node) = graph.node(&rel) else {
                return InputResult::unhashed(rel, Unhashed::NotInGraph);
            };
            if let Some(remembered) = reuse.as_ref().and_then(|r| r.outcome(position, &rel, node)) {
                return InputResult {
                    path: rel,
                    node: Some(node),
                    outcome: remembered.outcome.clone(),
                };
            }
            let closure = closures.of_input(node);
            let closure = closure.ones().map(|i| i as NodeId);
            InputResult {
                path: rel,
                node: Some(node),
                outcome: dependency_hash(&context, graph, &entries, node, closure, buffer),
            }
        })
        .collect();
    (inputs, closures)
}

/// Each requested input relative to the root, or (as given, why not).
fn resolve_inputs(
    root: &Path,
    index: &RepoIndex,
    config: &Config,
    given: Option<&[PathBuf]>,
) -> Vec<RequestedInput> {
    let Some(given) = given else {
        return index
            .paths()
            .filter(|(_, path)| config.rules.inputs_set.is_match(path))
            .map(|(_, path)| RequestedInput::InRepository(path.to_string()))
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
                Some(rel) if index.id(&rel).is_some() => RequestedInput::InRepository(rel),
                Some(rel) => RequestedInput::Rejected {
                    path: rel,
                    why: Unhashed::NotInRepository,
                },
                None => RequestedInput::Rejected {
                    path: path.display().to_string(),
                    why: Unhashed::OutsideRoot {
                        root: root.display().to_string(),
                    },
                },
            }
        })
        .collect()
}
