//! What one pytest run asks of DryCI, as few calls as the run allows:
//! `decide` hashes the test files and asks the cache, once, which of their
//! tests passed under those hashes; `passed` matches the collected node ids
//! against the answers; `publish` stores this run's passes, once.
//!
//! Dependency hashes and keys stay in here: the plugin sees node ids, short
//! hashes for its skip reasons, durations and warnings. A test file is named
//! as pytest names it in node ids (its path relative to the rootdir, with
//! `/`), because that is what the plugin has at hand at every step.
//!
//! Under pytest-xdist the controller decides and publishes; each worker
//! matches its own collection against the controller's answers, which it
//! receives as `Session::export` bytes (opaque to Python).
//!
//! A pass recorded with the inputs its test read at run time is served only
//! while every one of them still holds (`observed`).

use crate::files::FileDigest;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::{
    analyze, dependency_hashes, AnalysisError, FunctionLevel, Request, StateCacheMode,
};
use crate::cache::keys::{FileKey, NodeKey};
use crate::cache::local::{LocalBatch, Outcome, StoredPass};
use crate::cache::{Cache, CacheSettings, Collection, Matchers};
use crate::functions::SESSION_LEVEL;
use crate::hash::{DependencyHash, Salt};
use crate::protocol::v2::PassedTest;
use crate::protocol::RunCounts;
use crate::requirements::{stored_path, Observed, EVERY_FUNCTION};

mod history;
mod observed;
mod reach;

use history::{what_changed, FileHistory, SaltParts, Snapshot};
use observed::Inputs;

/// Where the local store lives below the repository root (v2: passes carry
/// the requirement sets of what their tests read).
const LOCAL_STORE: &str = ".dryci/results-v2.sqlite";

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub root: PathBuf,
    pub config_path: Option<PathBuf>,
    pub salt: Salt,
    pub state_cache: StateCacheMode,
    /// Use the local store (at `<repository root>/.dryci/`).
    pub local_store: bool,
    pub server: Option<crate::cache::ServerSettings>,
    /// Ask the cache what passed (not under `--dryci-no-skip`, which only publishes).
    pub query: bool,
    /// Function-level keys (None: file-level).
    pub function_level: Option<FunctionLevel>,
}

impl SessionSettings {
    /// An analysis of `inputs` under these settings.
    fn request(&self, inputs: Option<Vec<PathBuf>>) -> Request {
        Request {
            root: self.root.clone(),
            config_path: self.config_path.clone(),
            inputs,
            salt: self.salt.clone(),
            state_cache: self.state_cache.clone(),
            function_level: self.function_level.clone(),
        }
    }
}

/// The decision about one test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDecision {
    /// The first characters of its dependency hash, or why it has none (its tests run).
    pub hash: Result<String, String>,
    /// Every node id of the file, when a run that collected the whole file
    /// recorded them under its current hash and each has a result to serve:
    /// it need not be collected.
    pub complete: Option<Vec<String>>,
    /// Of `complete`, the tests served as what they did when that was not
    /// simply passing: node id -> skipped or xfailed, with the reason.
    pub complete_results: BTreeMap<String, Outcome>,
    /// The file's recorded collection, read with its matcher data (by a
    /// `decide` told to read them), when it has any: a run that selects by
    /// name, marker or node id may select from it instead of collecting.
    pub collection: Option<Collection>,
    /// How many tests passed under its hash.
    pub passed_tests: usize,
    /// The durations of the tests that passed under its hash, added up (ms).
    pub passed_ms: u64,
}

#[derive(Debug, Default)]
pub struct Decision {
    /// Keyed by the file's node-id part.
    pub files: BTreeMap<String, FileDecision>,
    /// What the dependency graph could not resolve or read.
    pub graph_warnings: Vec<String>,
    /// Cache failures: the tests they concern run.
    pub cache_warnings: Vec<String>,
}

/// What a publish did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Publication {
    /// Passes sent (0 when a layer failed).
    pub published: usize,
    pub warnings: Vec<String>,
}

/// The counts of a run other than the passes, which `publish` counts itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherCounts {
    /// Every test the run reported, served ones included.
    pub total: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Served from the cache.
    pub served: u64,
}

/// Why recorded passes were not served although stored under their current
/// key (an observed input changed), for `explain`.
#[derive(Debug, Default)]
struct Unserved(HashMap<DependencyHash, HashMap<NodeKey, String>>);

impl Unserved {
    fn insert(&mut self, hash: DependencyHash, key: NodeKey, why: String) {
        self.0.entry(hash).or_default().insert(key, why);
    }

    /// The unserved passes of the test files with dependency hash `hash`.
    fn of_file(&self, hash: &DependencyHash) -> Option<&HashMap<NodeKey, String>> {
        self.0.get(hash)
    }
}

/// A recorded result that may be served: how long the test took and what
/// it did (passed, skipped, failed as expected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub duration_ms: Option<u64>,
    pub outcome: Outcome,
}

/// What the controller knows after deciding, and what a worker needs of it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Known {
    /// Node-id part of each test file -> its dependency hash.
    hashes: HashMap<String, DependencyHash>,
    /// Dependency hash -> node key -> duration (ms) of each test that passed under it.
    passed: HashMap<DependencyHash, HashMap<NodeKey, Served>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("the controller's decisions could not be decoded: {0}")]
    Decode(String),
    #[error("a worker's session only matches tests; the controller decides and publishes")]
    WorkerOnly,
}

#[derive(Default)]
pub struct Session {
    /// `None` in a worker restored from the controller's decisions.
    settings: Option<SessionSettings>,
    /// The current state of observed inputs, read once per run.
    inputs: Inputs,
    unserved: Unserved,
    /// Node-id part -> why the file has no dependency hash.
    unhashed: HashMap<String, String>,
    /// The graph's files with their digests, and the configuration's
    /// fingerprint, as the decisions saw them (for the history of passes).
    graph_files: Vec<(String, crate::files::Digest)>,
    config_fingerprint: String,
    /// Opened on first use; `None` until then, or when it could not be opened.
    cache: Option<Cache>,
    /// The repository root the configuration settled on (the local store's home).
    store_root: Option<PathBuf>,
    known: Known,
}

impl Session {
    pub fn new(settings: SessionSettings) -> Self {
        Session {
            settings: Some(settings),
            ..Session::default()
        }
    }

    /// A worker's session: it matches tests against the answers `bytes`
    /// (`export` of the controller's) and does nothing else.
    pub fn restore(bytes: &[u8]) -> Result<Self, SessionError> {
        let known = postcard::from_bytes(bytes).map_err(|e| SessionError::Decode(e.to_string()))?;
        Ok(Session {
            known,
            ..Session::default()
        })
    }

    pub fn export(&self) -> Vec<u8> {
        // Maps of strings always encode; an empty answer would only make
        // every test run in the workers.
        postcard::to_stdvec(&self.known).unwrap_or_default()
    }

    /// Hashes `files` (node-id part -> path) and asks the cache about them;
    /// `matchers` says whether to read the matcher data of their recorded
    /// collections too.
    pub fn decide(
        &mut self,
        files: &[(String, PathBuf)],
        matchers: Matchers,
    ) -> Result<Decision, SessionError> {
        let settings = self.settings.clone().ok_or(SessionError::WorkerOnly)?;
        let request = settings.request(Some(files.iter().map(|(_, path)| path.clone()).collect()));
        let run = dependency_hashes(&request)?;
        self.store_root = Some(run.config.root.clone());
        self.config_fingerprint = run.config.fingerprint.clone();
        self.graph_files.extend(run.files);
        let mut decision = Decision {
            graph_warnings: run.warnings,
            ..Decision::default()
        };
        // Inputs come back in the order given, one row each.
        let mut hashed: Vec<(&str, DependencyHash)> = Vec::new();
        for ((part, _), input) in files.iter().zip(run.inputs) {
            let hash = match input.outcome {
                Ok(hash) => {
                    hashed.push((part, hash.clone()));
                    self.known.hashes.insert(part.clone(), hash.clone());
                    Ok(hash.short().to_string())
                }
                Err(why) => {
                    self.unhashed.insert(part.clone(), why.to_string());
                    Err(why.to_string())
                }
            };
            let file = FileDecision {
                hash,
                complete: None,
                complete_results: BTreeMap::new(),
                collection: None,
                passed_tests: 0,
                passed_ms: 0,
            };
            decision.files.insert(part.clone(), file);
        }
        if settings.query && !hashed.is_empty() {
            self.ask_cache(&hashed, matchers, &mut decision);
        }
        Ok(decision)
    }

    fn ask_cache(
        &mut self,
        hashed: &[(&str, DependencyHash)],
        matchers: Matchers,
        decision: &mut Decision,
    ) {
        let mut unique: Vec<&DependencyHash> = hashed.iter().map(|(_, hash)| hash).collect();
        unique.sort_unstable();
        unique.dedup();
        let file_keys: Vec<FileKey> = unique.iter().map(|hash| FileKey::of(hash)).collect();
        let Some(settings) = self.settings.as_ref() else {
            return;
        };
        let root = self.store_root.as_deref().unwrap_or(&settings.root);
        let Some(cache) = open_cache(
            &mut self.cache,
            settings,
            root,
            &mut decision.cache_warnings,
        ) else {
            return;
        };
        let (mut answers, warnings) = cache.query(&unique);
        decision.cache_warnings.extend(warnings);
        let (collections, warnings) = cache.collections(&file_keys, matchers);
        decision.cache_warnings.extend(warnings);
        let context = observed::Context { settings, root };
        let unmet = self
            .inputs
            .unmet_sets(cache, &context, &answers, &mut decision.cache_warnings);
        let mut collection_by_hash = HashMap::new();
        for ((hash, answer), collection) in unique.iter().zip(answers.iter_mut()).zip(collections) {
            if let Some(collection) = collection {
                collection_by_hash.insert(*hash, collection);
            }
            let mut held = Vec::with_capacity(answer.len());
            for pass in answer.drain(..) {
                match pass.requirements.as_ref().and_then(|id| unmet.get(id)) {
                    None => held.push(pass),
                    Some(why) => {
                        let key = NodeKey::from_stored(pass.test.node_id);
                        self.unserved.insert((*hash).clone(), key, why.clone());
                    }
                }
            }
            if held.is_empty() {
                continue;
            }
            let passed: HashMap<NodeKey, Served> = held
                .into_iter()
                .map(|pass| {
                    let served = Served {
                        duration_ms: pass.test.duration_ms,
                        outcome: pass.outcome,
                    };
                    (NodeKey::from_stored(pass.test.node_id), served)
                })
                .collect();
            self.known.passed.insert((*hash).clone(), passed);
        }
        for (part, hash) in hashed {
            let Some(file) = decision.files.get_mut(*part) else {
                continue;
            };
            let collection = collection_by_hash.get(hash);
            // Only a run that selects reads matcher data: the others need the ids alone.
            if matchers == Matchers::Read {
                file.collection = collection.filter(|c| c.matchers.is_some()).cloned();
            }
            let Some(passed) = self.known.passed.get(hash) else {
                continue;
            };
            file.passed_tests = passed.len();
            file.passed_ms = passed
                .values()
                .map(|served| served.duration_ms.unwrap_or(0))
                .sum();
            // A complete file: every test its collection produced has a result to serve.
            let Some(collection) = collection else {
                continue;
            };
            let mut results = BTreeMap::new();
            let complete = collection.node_ids.iter().all(|node_id| {
                let Some(served) = passed.get(&NodeKey::of(node_id, hash)) else {
                    return false;
                };
                if served.outcome != Outcome::Passed {
                    results.insert(node_id.clone(), served.outcome.clone());
                }
                true
            });
            if complete {
                file.complete = Some(collection.node_ids.clone());
                file.complete_results = results;
            }
        }
    }

    /// Of `node_ids`, those with a result to serve under their file's
    /// current hash (a pass, a skip, an expected failure), with it.
    pub fn passed(&self, node_ids: &[String]) -> Vec<(String, Served)> {
        let mut found = Vec::new();
        for node_id in node_ids {
            let part = file_part(node_id);
            let Some(hash) = self.known.hashes.get(part) else {
                continue;
            };
            let Some(passed) = self.known.passed.get(hash) else {
                continue;
            };
            if let Some(served) = passed.get(&NodeKey::of(node_id, hash)) {
                found.push((node_id.clone(), served.clone()));
            }
        }
        found
    }

    /// Records, for each test file with passes in `batch`, the key they
    /// passed under (for explaining a later re-run).
    fn add_history<'p>(
        &self,
        settings: &SessionSettings,
        parts: impl Iterator<Item = &'p String>,
        batch: &mut LocalBatch,
    ) {
        if self.graph_files.is_empty() {
            return;
        }
        let snapshot = Snapshot::new(self.graph_files.clone());
        let encoded = snapshot.encode();
        let id = snapshot.id(&encoded);
        let salt = SaltParts::of(&settings.salt, &self.config_fingerprint);
        for part in parts {
            let Some(hash) = self.known.hashes.get(part) else {
                continue;
            };
            let history = FileHistory {
                dependency_hash: hash.clone(),
                snapshot: id.clone(),
                salt: salt.clone(),
            };
            batch
                .history
                .insert(part.clone(), (id.clone(), history.encode()));
        }
        if !batch.history.is_empty() {
            batch.snapshot = Some((id, encoded));
        }
    }

    /// Why the key of each of `parts` differs from the one its tests last
    /// passed under here (one full analysis of those files).
    fn static_changes(&self, parts: &[&str]) -> HashMap<String, String> {
        let mut reasons = HashMap::new();
        let (Some(settings), Some(cache)) = (self.settings.as_ref(), self.cache.as_ref()) else {
            return reasons;
        };
        let mut changed: Vec<(String, FileHistory)> = Vec::new();
        for (part, body) in cache.file_history(parts) {
            let Some(history) = FileHistory::decode(&body) else {
                continue;
            };
            if self.known.hashes.get(&part) == Some(&history.dependency_hash) {
                reasons.insert(
                    part,
                    "its test file's key is unchanged since its tests last passed here: \
                     a new test, or one that did not pass last time"
                        .to_string(),
                );
            } else {
                changed.push((part, history));
            }
        }
        if changed.is_empty() {
            return reasons;
        }
        let request = settings.request(Some(
            changed
                .iter()
                .map(|(part, _)| settings.root.join(part))
                .collect(),
        ));
        let Ok(analysis) = analyze(&request) else {
            return reasons;
        };
        let salt_now = SaltParts::of(&settings.salt, &analysis.config.fingerprint);
        let mut snapshots: HashMap<String, Option<Snapshot>> = HashMap::new();
        for ((part, history), input) in changed.into_iter().zip(&analysis.inputs) {
            let snapshot = snapshots
                .entry(history.snapshot.clone())
                .or_insert_with(|| {
                    cache
                        .snapshot(&history.snapshot)
                        .and_then(|b| Snapshot::decode(&b))
                });
            let Some(before) = snapshot.as_ref() else {
                continue;
            };
            let closure: Vec<(String, Option<crate::files::Digest>)> = analysis
                .closure(input)
                .into_iter()
                .map(|node| {
                    let node = &analysis.graph.nodes[node as usize];
                    let digest = match node.digest {
                        crate::files::FileDigest::Content(digest) => Some(digest),
                        _ => None,
                    };
                    (node.path.clone(), digest)
                })
                .collect();
            reasons.insert(
                part,
                what_changed(&closure, before, &history.salt, &salt_now),
            );
        }
        reasons
    }

    /// Why each of `node_ids` (tests that ran) was not served.
    pub fn explain(&self, node_ids: &[String]) -> Vec<(String, String)> {
        let unexplained: Vec<&str> = node_ids
            .iter()
            .map(|node_id| file_part(node_id))
            .filter(|part| self.known.hashes.contains_key(*part))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let static_changes = self.static_changes(&unexplained);
        node_ids
            .iter()
            .map(|node_id| {
                let part = file_part(node_id);
                let why = match self.known.hashes.get(part) {
                    None => match self.unhashed.get(part) {
                        Some(problem) => format!("its test file could not be hashed: {problem}"),
                        None => "its test file was not hashed".to_string(),
                    },
                    Some(hash) => {
                        let unserved = self.unserved.of_file(hash);
                        let passed = self.known.passed.get(hash);
                        // A key (a hash per test) is made only for a file with
                        // results recorded under its hash: on a first run, none.
                        let key = (unserved.is_some() || passed.is_some())
                            .then(|| NodeKey::of(node_id, hash));
                        let unserved_why = key.as_ref().and_then(|key| unserved?.get(key));
                        let passed_before = key
                            .as_ref()
                            .is_some_and(|key| passed.is_some_and(|p| p.contains_key(key)));
                        match unserved_why {
                            Some(why) => why.clone(),
                            None if passed_before => {
                                "it passed before under its current key, but was run anyway \
                                 (--dryci-no-skip, or a selection that collects it)"
                                    .to_string()
                            }
                            None => match static_changes.get(part) {
                                Some(change) => change.clone(),
                                None => {
                                    "no pass of its test file recorded on this machine".to_string()
                                }
                            },
                        }
                    }
                };
                (node_id.clone(), why)
            })
            .collect()
    }

    /// Publishes this run's passes (node-id part -> node id -> duration ms),
    /// each with what its test was observed to read (when observed) and
    /// what it did when it did not simply pass (`outcomes`: skipped or
    /// xfailed, with the reason), and records `collections` (node-id part ->
    /// what a whole collection of the file produced) for the next run. Files
    /// without a hash are left out, and so is a test whose observed inputs
    /// cannot be established now.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        passes: &BTreeMap<String, BTreeMap<String, Option<u64>>>,
        outcomes: &BTreeMap<String, Outcome>,
        observed: &BTreeMap<String, Observed>,
        calls: &[(String, String)],
        collections: &BTreeMap<String, Collection>,
        counts: OtherCounts,
    ) -> Result<Publication, SessionError> {
        let Some(settings) = self.settings.clone() else {
            return Err(SessionError::WorkerOnly);
        };
        let mut publication = Publication::default();
        let root = self
            .store_root
            .clone()
            .unwrap_or_else(|| settings.root.clone());
        let context = observed::Context {
            settings: &settings,
            root: &root,
        };
        let code = match settings.function_level {
            Some(_) => Some(self.code_requirements(&settings, &root, passes, observed, calls)?),
            None => None,
        };
        let no_code = BTreeMap::new();
        let mut batch = LocalBatch::default();
        for (part, tests) in passes {
            let Some(hash) = self.known.hashes.get(part) else {
                continue;
            };
            let mut stored = Vec::with_capacity(tests.len());
            for (node_id, duration_ms) in tests {
                let (inputs, test_code) = match &code {
                    // Under function-level keys a pass is recorded only with its code.
                    Some(code) => match (observed.get(node_id), code.get(node_id)) {
                        (Some(inputs), Some(test_code)) => (Some(inputs), test_code),
                        _ => continue,
                    },
                    None => (observed.get(node_id).filter(|o| !o.is_empty()), &no_code),
                };
                let requirements = match inputs {
                    None => None,
                    Some(inputs) => {
                        match self
                            .inputs
                            .establish(&context, inputs, test_code, &mut batch)
                        {
                            Ok(id) => Some(id),
                            Err(_) => continue, // an input is gone: the test runs next time
                        }
                    }
                };
                let test = PassedTest {
                    node_id: NodeKey::of(node_id, hash).into_string(),
                    duration_ms: *duration_ms,
                    requires: None,
                };
                let outcome = outcomes.get(node_id).cloned().unwrap_or(Outcome::Passed);
                stored.push(StoredPass {
                    test,
                    requirements,
                    outcome,
                });
            }
            stored.sort_by(|a, b| a.test.node_id.cmp(&b.test.node_id));
            batch
                .passed
                .entry(FileKey::of(hash).as_str().to_string())
                .or_default()
                .extend(stored);
        }
        publication.warnings.extend(self.inputs.take_warnings());
        self.add_history(&settings, passes.keys(), &mut batch);
        let collections: BTreeMap<FileKey, Collection> = collections
            .iter()
            .filter_map(|(part, collection)| {
                Some((
                    FileKey::of(self.known.hashes.get(part)?),
                    collection.clone(),
                ))
            })
            .collect();
        if batch.passed.is_empty() && collections.is_empty() {
            return Ok(publication);
        }
        let Some(cache) = open_cache(&mut self.cache, &settings, &root, &mut publication.warnings)
        else {
            return Ok(publication);
        };
        if !batch.passed.is_empty() {
            let passed: usize = batch.passed.values().map(Vec::len).sum();
            let run_counts = RunCounts {
                total_test_count: counts.total,
                passed_test_count: passed as u64,
                failed_test_count: counts.failed,
                skipped_test_count: counts.skipped,
                skipped_by_cache_test_count: counts.served,
            };
            let (sent, warnings) = cache.publish(&batch, run_counts);
            publication.published = if warnings.is_empty() { sent } else { 0 };
            publication.warnings.extend(warnings);
        }
        publication
            .warnings
            .extend(cache.record_collections(&collections));
        Ok(publication)
    }
}

/// Under function-level keys, test node id -> the code it depends on.
type CodeByTest = HashMap<String, BTreeMap<String, BTreeSet<String>>>;

impl Session {
    /// Under function-level keys, the code each test of `passes` depends on
    /// (`reach`), for the tests whose functions were all seen: path ->
    /// qualnames, paths relative to `root`. The closures of their test files
    /// come from one more analysis.
    fn code_requirements(
        &self,
        settings: &SessionSettings,
        root: &Path,
        passes: &BTreeMap<String, BTreeMap<String, Option<u64>>>,
        observed: &BTreeMap<String, Observed>,
        calls: &[(String, String)],
    ) -> Result<CodeByTest, SessionError> {
        // The plugin names functions relative to pytest's rootdir; the
        // records, relative to the configuration's root.
        let rebase = |name: &str| match name.split_once("::") {
            Some((path, qualname)) => {
                let absolute = settings.root.join(path);
                format!(
                    "{}::{qualname}",
                    stored_path(root, &absolute.to_string_lossy())
                )
            }
            None => name.to_string(),
        };
        let calls: Vec<(String, String)> = calls
            .iter()
            .map(|(caller, callee)| (rebase(caller), rebase(callee)))
            .collect();
        let graph = reach::CallGraph::new(&calls);
        let parts: Vec<&String> = passes
            .keys()
            .filter(|part| self.known.hashes.contains_key(*part))
            .collect();
        let mut code = HashMap::new();
        if parts.is_empty() {
            return Ok(code);
        }
        // One analysis gives the closures of the test files and of the
        // modules their tests imported by name at run time: the module-level
        // code of each may have run in another test, first.
        let modules: BTreeSet<&String> = parts
            .iter()
            .flat_map(|part| passes[*part].keys())
            .filter_map(|node_id| observed.get(node_id))
            .flat_map(|inputs| &inputs.modules)
            .collect();
        let mut inputs: Vec<PathBuf> = parts.iter().map(|part| settings.root.join(part)).collect();
        inputs.extend(modules.iter().map(PathBuf::from));
        let analysis = analyze(&settings.request(Some(inputs)))?;
        let closures: Vec<HashSet<&str>> = analysis
            .inputs
            .iter()
            .map(|input| {
                analysis
                    .closure(input)
                    .into_iter()
                    // A file that does not exist (an `__init__.py` the key
                    // holds the absence of) has no code.
                    .filter(|node| {
                        matches!(
                            analysis.graph.nodes[*node as usize].digest,
                            FileDigest::Content(_)
                        )
                    })
                    .map(|node| analysis.graph.path(node))
                    .filter(|path| path.ends_with(".py"))
                    .collect()
            })
            .collect();
        let (file_closures, module_closures) = closures.split_at(parts.len());
        let module_closures: HashMap<&String, &HashSet<&str>> =
            modules.into_iter().zip(module_closures).collect();
        for (part, file_closure) in parts.into_iter().zip(file_closures) {
            for node_id in passes[part].keys() {
                let Some(inputs) = observed.get(node_id) else {
                    continue;
                };
                let Some(functions) = inputs.functions.as_ref() else {
                    continue; // not all seen: not recorded at function level
                };
                let mut closure = Cow::Borrowed(file_closure);
                for module in &inputs.modules {
                    if let Some(more) = module_closures.get(module) {
                        closure.to_mut().extend(more.iter());
                    }
                }
                let ran: Vec<String> = functions.iter().map(|name| rebase(name)).collect();
                let module_level: Vec<String> = closure
                    .iter()
                    .map(|path| reach::module_level(path))
                    .collect();
                let seeds = ran
                    .iter()
                    .chain(&module_level)
                    .map(String::as_str)
                    .chain([SESSION_LEVEL]);
                let reached = graph.reach(seeds);
                let mut test_code = reach::code_requirements(&reached, &closure);
                if !inputs.subprocesses.is_empty() {
                    // What it started may have run any of its closure's code, unseen.
                    for path in closure.iter() {
                        test_code
                            .entry(path.to_string())
                            .or_default()
                            .insert(EVERY_FUNCTION.to_string());
                    }
                }
                code.insert(node_id.clone(), test_code);
            }
        }
        Ok(code)
    }

    /// For each test file (node-id part -> paths its tests were observed to
    /// read, absolute), those of the paths its static closure does not hold.
    /// A path that is none of the files of the graph the decisions built is
    /// outside the closure of every test file they hashed: only the files
    /// whose tests read one of the graph's files (or that were not hashed)
    /// need their closure, from one full analysis. On a first run of the
    /// plugin benchmark, none of 385 does (the analysis took 0.16 s).
    pub fn outside_static_graph(
        &self,
        observed: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, Vec<String>>, SessionError> {
        let settings = self.settings.as_ref().ok_or(SessionError::WorkerOnly)?;
        let mut outside = BTreeMap::new();
        let mut parts: Vec<&String> = Vec::new();
        match self.store_root.as_deref() {
            Some(root) => {
                let graph: HashSet<&str> = self
                    .graph_files
                    .iter()
                    .map(|(path, _)| path.as_str())
                    .collect();
                for (part, paths) in observed {
                    let hashed = self.known.hashes.contains_key(part);
                    if hashed
                        && !paths
                            .iter()
                            .any(|p| graph.contains(stored_path(root, p).as_str()))
                    {
                        outside.insert(part.clone(), paths.clone());
                    } else {
                        parts.push(part);
                    }
                }
            }
            None => parts.extend(observed.keys()), // nothing decided
        }
        if parts.is_empty() {
            return Ok(outside);
        }
        let request = settings.request(Some(
            parts.iter().map(|part| settings.root.join(part)).collect(),
        ));
        let analysis = analyze(&request)?;
        let root = analysis.config.root.clone();
        for (part, input) in parts.into_iter().zip(&analysis.inputs) {
            let closure: HashSet<&str> = analysis
                .closure(input)
                .into_iter()
                .map(|node| analysis.graph.path(node))
                .collect();
            let paths: Vec<String> = observed[part]
                .iter()
                .filter(|path| !closure.contains(stored_path(&root, path).as_str()))
                .cloned()
                .collect();
            outside.insert(part.clone(), paths);
        }
        Ok(outside)
    }
}

/// The cache in `slot`, opened on first use with the local store below
/// `root`; its opening warnings go to `warnings`. None without any layer.
fn open_cache<'c>(
    slot: &'c mut Option<Cache>,
    settings: &SessionSettings,
    root: &Path,
    warnings: &mut Vec<String>,
) -> Option<&'c mut Cache> {
    if slot.is_none() {
        let cache_settings = CacheSettings {
            local: settings.local_store.then(|| root.join(LOCAL_STORE)),
            server: settings.server.clone(),
        };
        let (cache, opened) = Cache::open(&cache_settings);
        warnings.extend(opened);
        *slot = Some(cache);
    }
    slot.as_mut().filter(|cache| cache.has_layers())
}

/// `tests/test_a.py::TestX::test_y[1]` -> `tests/test_a.py`
fn file_part(node_id: &str) -> &str {
    node_id.split("::").next().unwrap_or(node_id)
}
