//! Observed inputs as requirements: what a test read at run time (files,
//! directory listings, modules imported by name, environment variables),
//! with what it found, so that a later run can check that all of it still
//! holds before the test is served.
//!
//! A test's requirements form a set, identified by the blake3 of its
//! encoding, so that the many tests that read the same inputs share one
//! stored set. A requirement that cannot be established when the run
//! publishes (the file is gone, say) keeps the test from being recorded at
//! all; one that cannot be checked later fails, and the test runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::state::StateCache;
use crate::files::{read_facts, Digest, FileDigest, Needs};
use crate::hash::DependencyHash;
use crate::hashing::hash_field;

/// What the plugin saw one test read (paths absolute, as the test named them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub files: Vec<String>,
    pub listings: Vec<String>,
    /// Files of the modules it imported at run time.
    pub modules: Vec<String>,
    /// Variable -> value when read (`None`: not set).
    pub env: BTreeMap<String, Option<String>>,
}

impl Observed {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.listings.is_empty()
            && self.modules.is_empty()
            && self.env.is_empty()
    }
}

/// One input and what it was. Paths are relative to the repository root
/// when inside it (so a record holds wherever the repository is checked
/// out), absolute otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Requirement {
    File {
        path: String,
        digest: Digest,
    },
    /// The names in a folder (sorted), so adding or removing one counts.
    Listing {
        path: String,
        names: Digest,
    },
    /// A module imported at run time: its file's dependency hash covers its
    /// own static closure.
    Module {
        path: String,
        hash: DependencyHash,
    },
    Env {
        name: String,
        value: Option<Digest>,
    },
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::File { path, .. } => write!(f, "file {path}"),
            Requirement::Listing { path, .. } => write!(f, "listing of {path}"),
            Requirement::Module { path, .. } => write!(f, "module {path}"),
            Requirement::Env { name, .. } => write!(f, "environment variable {name}"),
        }
    }
}

/// A test's requirements, sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementSet(pub Vec<Requirement>);

impl RequirementSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        // A Vec of plain enums always encodes.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// What the set is stored under: blake3 of its encoding, hex.
    pub fn id(&self) -> String {
        blake3::hash(&self.encode()).to_hex().to_string()
    }
}

/// Reads the current state of inputs, each at most once per run.
pub struct Probe<'a> {
    root: PathBuf,
    state: &'a StateCache,
    /// Module file (relative to the root) -> its current dependency hash.
    module_hashes: &'a HashMap<String, DependencyHash>,
    files: HashMap<String, Option<Digest>>,
    listings: HashMap<String, Option<Digest>>,
}

impl<'a> Probe<'a> {
    pub fn new(
        root: &Path,
        state: &'a StateCache,
        module_hashes: &'a HashMap<String, DependencyHash>,
    ) -> Self {
        Probe {
            root: root.to_path_buf(),
            state,
            module_hashes,
            files: HashMap::new(),
            listings: HashMap::new(),
        }
    }

    fn stored_path(&self, path: &str) -> String {
        stored_path(&self.root, path)
    }

    fn absolute(&self, stored: &str) -> PathBuf {
        self.root.join(stored) // an absolute `stored` replaces the root
    }

    fn file(&mut self, stored: &str) -> Option<Digest> {
        if let Some(known) = self.files.get(stored) {
            return *known;
        }
        let facts = read_facts(&self.absolute(stored), stored, Needs::default(), self.state);
        let digest = match facts.digest {
            FileDigest::Content(digest) => Some(digest),
            FileDigest::Absent | FileDigest::Unreadable(_) => None,
        };
        self.files.insert(stored.to_string(), digest);
        digest
    }

    fn listing(&mut self, stored: &str) -> Option<Digest> {
        if let Some(known) = self.listings.get(stored) {
            return *known;
        }
        let names = std::fs::read_dir(self.absolute(stored))
            .ok()
            .and_then(|entries| {
                let names: Result<BTreeSet<_>, _> = entries
                    .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.ok()
            });
        let digest = names.map(|names| {
            let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 directory listing");
            for name in names {
                hash_field(&mut hasher, name.as_bytes());
            }
            Digest(*hasher.finalize().as_bytes())
        });
        self.listings.insert(stored.to_string(), digest);
        digest
    }

    fn env(name: &str) -> Option<Digest> {
        std::env::var(name).ok().map(|value| env_digest(&value))
    }

    /// The requirements `observed` makes, with what each input is now; or
    /// the first input that cannot be established (the test is not recorded).
    pub fn establish(&mut self, observed: &Observed) -> Result<RequirementSet, String> {
        let mut set = BTreeSet::new();
        for path in &observed.files {
            let path = self.stored_path(path);
            let digest = self.file(&path).ok_or_else(|| format!("file {path}"))?;
            set.insert(Requirement::File { path, digest });
        }
        for path in &observed.listings {
            let path = self.stored_path(path);
            let names = self
                .listing(&path)
                .ok_or_else(|| format!("listing of {path}"))?;
            set.insert(Requirement::Listing { path, names });
        }
        for path in &observed.modules {
            let path = self.stored_path(path);
            let hash = self
                .module_hashes
                .get(&path)
                .cloned()
                .ok_or_else(|| format!("module {path}"))?;
            set.insert(Requirement::Module { path, hash });
        }
        for (name, value) in &observed.env {
            let value = value.as_deref().map(env_digest);
            set.insert(Requirement::Env {
                name: name.clone(),
                value,
            });
        }
        Ok(RequirementSet(set.into_iter().collect()))
    }

    /// The first requirement of `set` that no longer holds, if any.
    pub fn first_unmet<'s>(&mut self, set: &'s RequirementSet) -> Option<&'s Requirement> {
        set.0.iter().find(|requirement| !self.holds(requirement))
    }

    fn holds(&mut self, requirement: &Requirement) -> bool {
        match requirement {
            Requirement::File { path, digest } => self.file(path) == Some(*digest),
            Requirement::Listing { path, names } => self.listing(path) == Some(*names),
            Requirement::Module { path, hash } => self.module_hashes.get(path) == Some(hash),
            Requirement::Env { name, value } => Self::env(name) == *value,
        }
    }
}

/// `path` as stored: relative to the root when inside it, else as given.
pub fn stored_path(root: &Path, path: &str) -> String {
    match Path::new(path).strip_prefix(root) {
        Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
        Err(_) => path.to_string(),
    }
}

fn env_digest(value: &str) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 environment value");
    hasher.update(value.as_bytes());
    Digest(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_until_an_input_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("res")).unwrap();
        std::fs::write(root.join("res/a.txt"), "a").unwrap();
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let observed = Observed {
            files: vec![root.join("res/a.txt").display().to_string()],
            listings: vec![root.join("res").display().to_string()],
            modules: vec![],
            env: BTreeMap::from([("DRYCI_REQUIREMENTS_TEST_UNSET".to_string(), None)]),
        };
        let set = Probe::new(&root, &state, &modules)
            .establish(&observed)
            .unwrap();
        assert_eq!(set.0.len(), 3);
        assert!(matches!(&set.0[0], Requirement::File { path, .. } if path == "res/a.txt"));
        assert_eq!(RequirementSet::decode(&set.encode()), Some(set.clone()));
        assert_eq!(Probe::new(&root, &state, &modules).first_unmet(&set), None);

        std::fs::write(root.join("res/b.txt"), "b").unwrap();
        let unmet = Probe::new(&root, &state, &modules)
            .first_unmet(&set)
            .cloned();
        assert!(
            matches!(unmet, Some(Requirement::Listing { .. })),
            "{unmet:?}"
        );
        std::fs::remove_file(root.join("res/b.txt")).unwrap();
        std::fs::write(root.join("res/a.txt"), "changed").unwrap();
        let unmet = Probe::new(&root, &state, &modules)
            .first_unmet(&set)
            .cloned();
        assert!(matches!(unmet, Some(Requirement::File { .. })), "{unmet:?}");
        std::fs::remove_file(root.join("res/a.txt")).unwrap();
        let unmet = Probe::new(&root, &state, &modules)
            .first_unmet(&set)
            .cloned();
        assert!(matches!(unmet, Some(Requirement::File { .. })), "{unmet:?}");
    }

    #[test]
    fn an_input_that_is_gone_cannot_be_established() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let observed = Observed {
            files: vec![dir.path().join("gone.txt").display().to_string()],
            ..Observed::default()
        };
        let mut probe = Probe::new(dir.path(), &state, &modules);
        assert!(probe.establish(&observed).is_err());
        let module = Observed {
            modules: vec![dir.path().join("pkg/mod.py").display().to_string()],
            ..Observed::default()
        };
        assert_eq!(
            probe.establish(&module),
            Err("module pkg/mod.py".to_string())
        );
    }

    #[test]
    fn an_environment_variable_is_checked_by_value() {
        let state = StateCache::disabled();
        let modules = HashMap::new();
        let mut probe = Probe::new(Path::new("/"), &state, &modules);
        let path_value = std::env::var("PATH").ok();
        let observed = Observed {
            env: BTreeMap::from([("PATH".to_string(), path_value.clone())]),
            ..Observed::default()
        };
        let set = probe.establish(&observed).unwrap();
        assert_eq!(probe.first_unmet(&set), None);
        let other = Observed {
            env: BTreeMap::from([("PATH".to_string(), Some("/elsewhere".to_string()))]),
            ..Observed::default()
        };
        let set = probe.establish(&other).unwrap();
        assert!(probe.first_unmet(&set).is_some());
    }
}
