//! The cache the plugin talks to: the local store, the team server, or the
//! local store in front of the server. It never fails: a layer that cannot
//! be opened or does not answer becomes a warning, and its answer is "no
//! test passed before", so the tests simply run.
//!
//! Its callers speak in typed keys (`FileKey`); the layers below it (the
//! SQLite file, the HTTP client) store and send them as the hex strings of
//! the wire.
//!
//! Requirement sets: the local store keeps them as they are; the server
//! gets them sealed under each file's key (`sealed.rs`), and only when its
//! query answer showed that it keeps them. A set from the server that does
//! not open is no record: its test runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use crate::hash::DependencyHash;
use crate::protocol::v2::{self, PassedTest};
use crate::protocol::{RunCounts, MAX_SEALED_SET_BYTES};

use super::http::HttpClient;
use super::keys::FileKey;
use super::local::{LocalBatch, LocalStore, Outcome, StoredCollection, StoredPass};
use super::sealed::SetSeal;

/// What a run that collected a whole test file found in it, recorded under
/// the file's key: every node id, in collection order, and what `-k` and
/// `-m` match them against (the plugin's encoding, opaque here), when that
/// run could record it. The key covers every input of collection, so the
/// next run may select from the record instead of importing the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Collection {
    pub node_ids: Vec<String>,
    pub matchers: Option<String>,
}

/// Whether reading collections reads their matcher data too (only runs
/// that select by name, marker or node id need it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matchers {
    Read,
    Skip,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub url: String,
    pub token: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    /// The local store's file; `None` for no local layer.
    pub local: Option<PathBuf>,
    pub server: Option<ServerSettings>,
}

pub struct Cache {
    local: Option<LocalStore>,
    remote: Option<HttpClient>,
    /// Set once the server has answered 404 to a v2 call: it speaks v1 only.
    remote_is_v1: bool,
    /// Set when the server's query answer carried requirement sets (it
    /// keeps them): only then are tests with requirements published to it.
    remote_keeps_sets: bool,
    /// The seal of each file key queried (hex), for opening the server's
    /// sets and sealing this run's.
    seals: HashMap<String, SetSeal>,
    /// Sets opened from the server's answer: local set id -> encoded set.
    opened_sets: HashMap<String, Vec<u8>>,
}

/// Something the caller should tell the user; the run goes on.
pub type Warnings = Vec<String>;

impl Cache {
    pub fn open(settings: &CacheSettings) -> (Cache, Warnings) {
        let mut warnings = Vec::new();
        let local = settings
            .local
            .as_ref()
            .and_then(|path| match LocalStore::open(path) {
                Ok((store, warning)) => {
                    warnings.extend(warning);
                    Some(store)
                }
                Err(err) => {
                    warnings.push(format!("{err}; the local cache is off for this run"));
                    None
                }
            });
        let remote = settings.server.as_ref().and_then(|server| {
            if server.token.is_none() {
                warnings.push(format!(
                    "DRYCI_SERVER is {} but DRYCI_TOKEN is not set; the server is not used",
                    server.url
                ));
                return None;
            }
            match HttpClient::new(&server.url, server.token.clone(), server.timeout) {
                Ok(client) => Some(client),
                Err(err) => {
                    warnings.push(format!("{err}; the server is not used"));
                    None
                }
            }
        });
        (
            Cache {
                local,
                remote,
                remote_is_v1: false,
                remote_keeps_sets: false,
                seals: HashMap::new(),
                opened_sets: HashMap::new(),
            },
            warnings,
        )
    }

    pub fn has_layers(&self) -> bool {
        self.local.is_some() || self.remote.is_some()
    }

    /// For each test file's dependency hash, the tests that passed under it
    /// in any layer (the local store's record first). The hashes themselves
    /// stay here: the layers see file keys, and the server's sets are
    /// opened with keys derived from the hashes.
    pub fn query(&mut self, hashes: &[&DependencyHash]) -> (Vec<Vec<StoredPass>>, Warnings) {
        let file_keys: Vec<String> = hashes
            .iter()
            .map(|hash| {
                let key = FileKey::of(hash).as_str().to_string();
                self.seals
                    .entry(key.clone())
                    .or_insert_with(|| SetSeal::of(hash));
                key
            })
            .collect();
        let file_keys = file_keys.as_slice();
        let mut warnings = Vec::new();
        let mut merged: Vec<Vec<StoredPass>> = vec![Vec::new(); file_keys.len()];
        if file_keys.is_empty() {
            return (merged, warnings);
        }
        if let Some(local) = &self.local {
            match local.query(file_keys) {
                Ok(answers) => merge(&mut merged, answers),
                Err(err) => warnings.push(err.to_string()),
            }
        }
        if let Some(remote) = &self.remote {
            match query_remote(remote, file_keys, &mut self.remote_is_v1) {
                Ok(answer) => {
                    self.remote_keeps_sets = answer.requirement_sets.is_some();
                    let opened = self.open_answer(file_keys, answer, &mut warnings);
                    merge(&mut merged, opened);
                }
                Err(err) => warnings.push(format!(
                    "{err}; running the tests the server would have skipped"
                )),
            }
        }
        (merged, warnings)
    }

    /// The collections recorded locally, per file key; their matcher data
    /// only when `read` asks for it. A record whose node ids cannot be
    /// decoded is no record (its file is collected).
    pub fn collections(
        &self,
        file_keys: &[FileKey],
        read: Matchers,
    ) -> (Vec<Option<Collection>>, Warnings) {
        let none = || vec![None; file_keys.len()];
        let Some(local) = &self.local else {
            return (none(), Vec::new());
        };
        match local.collections(&hex_keys(file_keys), read == Matchers::Read) {
            Ok(found) => {
                let decoded = found
                    .into_iter()
                    .map(|stored| {
                        let stored = stored?;
                        let node_ids = serde_json::from_str(&stored.node_ids).ok()?;
                        Some(Collection {
                            node_ids,
                            matchers: stored.matchers,
                        })
                    })
                    .collect();
                (decoded, Vec::new())
            }
            Err(err) => (none(), vec![err.to_string()]),
        }
    }

    /// Records collections in the local store (plain ids stay on this machine).
    pub fn record_collections(&self, collections: &BTreeMap<FileKey, Collection>) -> Warnings {
        let Some(local) = &self.local else {
            return Vec::new();
        };
        if collections.is_empty() {
            return Vec::new();
        }
        let encoded: BTreeMap<String, StoredCollection> = collections
            .iter()
            .map(|(key, collection)| {
                let node_ids = serde_json::to_string(&collection.node_ids)
                    .unwrap_or_else(|_| "[]".to_string());
                let stored = StoredCollection {
                    node_ids,
                    matchers: collection.matchers.clone(),
                };
                (key.as_str().to_string(), stored)
            })
            .collect();
        local
            .record_collections(&encoded)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect()
    }

    /// The encoded requirement sets stored under `ids`: opened from the
    /// server's answer, or kept locally.
    pub fn requirement_sets(&self, ids: &[&str]) -> (Vec<(String, Vec<u8>)>, Warnings) {
        let mut found: Vec<(String, Vec<u8>)> = ids
            .iter()
            .filter_map(|id| Some((id.to_string(), self.opened_sets.get(*id)?.clone())))
            .collect();
        let local_ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !self.opened_sets.contains_key(*id))
            .collect();
        if local_ids.is_empty() {
            return (found, Vec::new());
        }
        match self
            .local
            .as_ref()
            .map(|local| local.requirement_sets(&local_ids))
        {
            Some(Ok(local)) => {
                found.extend(local);
                (found, Vec::new())
            }
            Some(Err(err)) => (found, vec![err.to_string()]),
            None => (found, Vec::new()),
        }
    }

    /// The server's answer as stored passes: a test recorded with a set
    /// names it by its local id once opened; one whose set is missing or
    /// does not open is left out (it runs).
    fn open_answer(
        &mut self,
        file_keys: &[String],
        answer: v2::QueryPassedResponse,
        warnings: &mut Warnings,
    ) -> Vec<Vec<StoredPass>> {
        let sets = answer.requirement_sets.unwrap_or_default();
        let mut unreadable = 0;
        let mut out = Vec::with_capacity(answer.passed.len());
        for (key, tests) in file_keys.iter().zip(answer.passed) {
            let mut passes = Vec::with_capacity(tests.len());
            for mut test in tests {
                let requirements = match test.requires.take() {
                    None => None,
                    Some(reference) => match self.open_set(key, sets.get(&reference)) {
                        Some(id) => Some(id),
                        None => {
                            unreadable += 1;
                            continue;
                        }
                    },
                };
                passes.push(StoredPass {
                    test,
                    requirements,
                    outcome: Outcome::Passed,
                });
            }
            out.push(passes);
        }
        if unreadable > 0 {
            warnings.push(format!(
                "{unreadable} records of observed inputs from the server could not be read; \
                 their tests run"
            ));
        }
        out
    }

    /// Opens one sealed set of file `key`, keeps it, and returns its local id.
    fn open_set(&mut self, key: &str, sealed: Option<&String>) -> Option<String> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed?)
            .ok()?;
        let plain = self.seals.get(key)?.open(&sealed)?;
        let id = blake3::hash(&plain).to_hex().to_string();
        self.opened_sets.insert(id.clone(), plain);
        Some(id)
    }

    /// The encoded histories of `parts` kept locally (for reports: a
    /// failure to read them is no history).
    pub fn file_history(&self, parts: &[&str]) -> Vec<(String, Vec<u8>)> {
        match &self.local {
            Some(local) => local.file_history(parts).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// The encoded snapshot stored locally under `id`.
    pub fn snapshot(&self, id: &str) -> Option<Vec<u8>> {
        self.local.as_ref()?.snapshot(id).ok().flatten()
    }

    /// The module files the local store's requirement sets name.
    pub fn observed_modules(&self) -> (Vec<String>, Warnings) {
        match self.local.as_ref().map(LocalStore::observed_modules) {
            Some(Ok(found)) => (found, Vec::new()),
            Some(Err(err)) => (Vec::new(), vec![err.to_string()]),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Publishes `batch` to the local store and its passes to the server
    /// (which keeps no skip or expected failure): those with requirements
    /// with their sets sealed, if the server keeps sets; returns how many
    /// tests were published and the warnings.
    pub fn publish(&mut self, batch: &LocalBatch, counts: RunCounts) -> (usize, Warnings) {
        let (passed, sealed_sets) = self.shared_passes(batch);
        let passed = &passed;
        let mut warnings = Vec::new();
        let total: usize = batch.passed.values().map(Vec::len).sum();
        if let Some(local) = &self.local {
            if let Err(err) = local.publish(batch) {
                warnings.push(err.to_string());
            }
        }
        if let Some(remote) = self.remote.as_ref().filter(|_| !passed.is_empty()) {
            let result = if self.remote_is_v1 {
                publish_v1(remote, passed, counts)
            } else {
                match remote.publish_v2(passed.clone(), sealed_sets, counts) {
                    Err(err) if err.status() == Some(404) => {
                        self.remote_is_v1 = true;
                        publish_v1(remote, passed, counts)
                    }
                    other => other.map(|_| ()),
                }
            };
            if let Err(err) = result {
                warnings.push(format!("{err}; this run's passes were not shared"));
            }
        }
        (total, warnings)
    }
}

impl Cache {
    /// The passes of `batch` the server may have, per file key, and the
    /// sealed sets they require. A pass with requirements goes only to a
    /// server that keeps sets, sealed under its file's key; without a seal
    /// or its set, or with a set too large to send, it stays local.
    fn shared_passes(
        &self,
        batch: &LocalBatch,
    ) -> (BTreeMap<String, Vec<PassedTest>>, v2::SealedSets) {
        let mut sealed_sets = v2::SealedSets::new();
        let mut passed = BTreeMap::new();
        for (key, passes) in &batch.passed {
            let mut shared = Vec::new();
            for pass in passes.iter().filter(|p| p.outcome == Outcome::Passed) {
                let mut test = pass.test.clone();
                if let Some(id) = &pass.requirements {
                    let sealed = self
                        .seals
                        .get(key)
                        .filter(|_| self.remote_keeps_sets && !self.remote_is_v1)
                        .zip(batch.requirement_sets.get(id))
                        .map(|(seal, plain)| seal.seal(plain))
                        .filter(|(_, sealed)| sealed.len() <= MAX_SEALED_SET_BYTES);
                    let Some((reference, sealed)) = sealed else {
                        continue;
                    };
                    sealed_sets.entry(reference.clone()).or_insert_with(|| {
                        base64::engine::general_purpose::STANDARD.encode(sealed)
                    });
                    test.requires = Some(reference);
                }
                shared.push(test);
            }
            if !shared.is_empty() {
                passed.insert(key.clone(), shared);
            }
        }
        (passed, sealed_sets)
    }
}

fn query_remote(
    remote: &HttpClient,
    file_keys: &[String],
    is_v1: &mut bool,
) -> Result<v2::QueryPassedResponse, super::http::HttpError> {
    if !*is_v1 {
        match remote.query_passed_v2(file_keys) {
            Err(err) if err.status() == Some(404) => *is_v1 = true,
            other => return other,
        }
    }
    let answers = remote.query_passed_v1(file_keys)?;
    let passed = answers
        .into_iter()
        .map(|ids| {
            ids.into_iter()
                .map(|node_id| PassedTest {
                    node_id,
                    duration_ms: None,
                    requires: None,
                })
                .collect()
        })
        .collect();
    Ok(v2::QueryPassedResponse {
        passed,
        requirement_sets: None,
    })
}

/// v1 has no requirement sets: only the passes without one go.
fn publish_v1(
    remote: &HttpClient,
    passed: &BTreeMap<String, Vec<PassedTest>>,
    counts: RunCounts,
) -> Result<(), super::http::HttpError> {
    let ids = passed
        .iter()
        .map(|(k, tests)| {
            let unconditional = tests.iter().filter(|t| t.requires.is_none());
            (
                k.clone(),
                unconditional.map(|t| t.node_id.clone()).collect(),
            )
        })
        .collect();
    remote.publish_v1(ids, counts).map(|_| ())
}

fn hex_keys(file_keys: &[FileKey]) -> Vec<String> {
    file_keys
        .iter()
        .map(|key| key.as_str().to_string())
        .collect()
}

/// Adds `answers` to `merged`, keeping the first record seen for a test.
fn merge(merged: &mut [Vec<StoredPass>], answers: Vec<Vec<StoredPass>>) {
    for (slot, answer) in merged.iter_mut().zip(answers) {
        let known: HashSet<String> = slot.iter().map(|p| p.test.node_id.clone()).collect();
        slot.extend(
            answer
                .into_iter()
                .filter(|p| !known.contains(&p.test.node_id)),
        );
    }
}
