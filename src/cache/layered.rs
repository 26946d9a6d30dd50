//! The cache the plugin talks to: the local store, the team server, or the
//! local store in front of the server. It never fails: a layer that cannot
//! be opened or does not answer becomes a warning, and its answer is "no
//! test passed before", so the tests simply run.
//!
//! Its callers speak in typed keys (`FileKey`); the layers below it (the
//! SQLite file, the HTTP client) store and send them as the hex strings of
//! the wire.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::v2::PassedTest;
use crate::protocol::RunCounts;

use super::http::HttpClient;
use super::keys::FileKey;
use super::local::{LocalBatch, LocalStore, Outcome, StoredPass};

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
            },
            warnings,
        )
    }

    pub fn has_layers(&self) -> bool {
        self.local.is_some() || self.remote.is_some()
    }

    /// For each file key, the tests that passed under it in any layer (the
    /// local store's first: only it keeps requirement sets).
    pub fn query(&mut self, file_keys: &[FileKey]) -> (Vec<Vec<StoredPass>>, Warnings) {
        let file_keys = hex_keys(file_keys);
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
                Ok(answers) => merge(&mut merged, unobserved(answers)),
                Err(err) => warnings.push(format!(
                    "{err}; running the tests the server would have skipped"
                )),
            }
        }
        (merged, warnings)
    }

    /// The node ids of the complete files recorded locally, per file key.
    /// A record that cannot be decoded is no record (its tests run).
    pub fn complete_files(&self, file_keys: &[FileKey]) -> (Vec<Option<Vec<String>>>, Warnings) {
        let none = || vec![None; file_keys.len()];
        let Some(local) = &self.local else {
            return (none(), Vec::new());
        };
        match local.complete_files(&hex_keys(file_keys)) {
            Ok(found) => {
                let decoded = found
                    .into_iter()
                    .map(|ids| ids.and_then(|json| serde_json::from_str(&json).ok()))
                    .collect();
                (decoded, Vec::new())
            }
            Err(err) => (none(), vec![err.to_string()]),
        }
    }

    /// Records complete files in the local store (plain ids stay on this machine).
    pub fn record_complete_files(&self, complete: &BTreeMap<FileKey, Vec<String>>) -> Warnings {
        let Some(local) = &self.local else {
            return Vec::new();
        };
        if complete.is_empty() {
            return Vec::new();
        }
        let encoded: BTreeMap<String, String> = complete
            .iter()
            .map(|(key, ids)| {
                let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_string());
                (key.as_str().to_string(), json)
            })
            .collect();
        local
            .record_complete_files(&encoded)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect()
    }

    /// The encoded requirement sets stored locally under `ids`.
    pub fn requirement_sets(&self, ids: &[&str]) -> (Vec<(String, Vec<u8>)>, Warnings) {
        match self.local.as_ref().map(|local| local.requirement_sets(ids)) {
            Some(Ok(found)) => (found, Vec::new()),
            Some(Err(err)) => (Vec::new(), vec![err.to_string()]),
            None => (Vec::new(), Vec::new()),
        }
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

    /// Publishes `batch` to the local store and, of its passes, those
    /// without requirements to the server (which can neither check them nor
    /// keep a skip or an expected failure);
    /// returns how many tests were published and the warnings.
    pub fn publish(&mut self, batch: &LocalBatch, counts: RunCounts) -> (usize, Warnings) {
        let passed: BTreeMap<String, Vec<PassedTest>> = batch
            .passed
            .iter()
            .map(|(key, passes)| {
                let shared = passes
                    .iter()
                    .filter(|p| p.requirements.is_none() && p.outcome == Outcome::Passed);
                (key.clone(), shared.map(|p| p.test.clone()).collect())
            })
            .filter(|(_, tests): &(String, Vec<PassedTest>)| !tests.is_empty())
            .collect();
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
                match remote.publish_v2(passed.clone(), counts) {
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

fn query_remote(
    remote: &HttpClient,
    file_keys: &[String],
    is_v1: &mut bool,
) -> Result<Vec<Vec<PassedTest>>, super::http::HttpError> {
    if !*is_v1 {
        match remote.query_passed_v2(file_keys) {
            Err(err) if err.status() == Some(404) => *is_v1 = true,
            other => return other,
        }
    }
    let answers = remote.query_passed_v1(file_keys)?;
    Ok(answers
        .into_iter()
        .map(|ids| {
            ids.into_iter()
                .map(|node_id| PassedTest {
                    node_id,
                    duration_ms: None,
                })
                .collect()
        })
        .collect())
}

fn publish_v1(
    remote: &HttpClient,
    passed: &BTreeMap<String, Vec<PassedTest>>,
    counts: RunCounts,
) -> Result<(), super::http::HttpError> {
    let ids = passed
        .iter()
        .map(|(k, tests)| (k.clone(), tests.iter().map(|t| t.node_id.clone()).collect()))
        .collect();
    remote.publish_v1(ids, counts).map(|_| ())
}

fn hex_keys(file_keys: &[FileKey]) -> Vec<String> {
    file_keys
        .iter()
        .map(|key| key.as_str().to_string())
        .collect()
}

/// The server's answers: passes with no requirements.
fn unobserved(answers: Vec<Vec<PassedTest>>) -> Vec<Vec<StoredPass>> {
    answers
        .into_iter()
        .map(|tests| {
            tests
                .into_iter()
                .map(|test| StoredPass {
                    test,
                    requirements: None,
                    outcome: Outcome::Passed,
                })
                .collect()
        })
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
