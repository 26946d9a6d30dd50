//! What earlier runs learned about each file's direct dependencies, so a
//! re-run does not apply rules and resolve imports again for files whose
//! content did not change (`.dryci/visits-v1.bin`).
//!
//! A file's direct dependencies are a function of its path, its content and
//! a context: DryCI's version, the effective configuration (inferred
//! defaults included), the declared entry points, and the set of files and
//! folders of the repository (resolution asks which files exist). The cache
//! is keyed by a fingerprint of that context, and each entry by the file's
//! content digest; when the context changes (a file added or removed, the
//! configuration edited) the whole cache is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::files::envelope::Envelope;
use crate::files::Digest;
use crate::hashing::hash_field;
use crate::walk::{FileId, RepoIndex};

use super::entry_points::EntryPoint;
use super::{Reason, RuleAction, Target, Unresolved};

/// The version is bumped whenever what a visit derives from a file changes
/// (rules, resolution, scanning), or the format.
const FILE: Envelope = Envelope {
    magic: b"DRYCIvi\0",
    version: 1,
};

/// What a visit derived from one file, besides its digest.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub edges: Vec<(Target, Reason)>,
    /// Imports that name no file (the file field is the visited file).
    pub unresolved: Vec<Unresolved>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default)]
pub struct VisitCache {
    path: Option<PathBuf>,
    context: [u8; 32],
    entries: HashMap<FileId, (Digest, Arc<Derived>)>,
    /// Why the stored cache was not used, if it was not.
    pub load_warning: Option<String>,
}

/// The fingerprint of everything besides a file's own content that its visit depends on.
pub fn context(config: &Config, index: &RepoIndex, entry_points: &[EntryPoint]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 visit context");
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&FILE.version.to_le_bytes());
    let effective = serde_json::to_vec(&config.effective).unwrap_or_default();
    hash_field(&mut hasher, &effective);
    hash_field(&mut hasher, config.fingerprint.as_bytes());
    hasher.update(index.layout_fingerprint().as_bytes());
    hasher.update(&(entry_points.len() as u64).to_le_bytes());
    for entry_point in entry_points {
        hash_field(&mut hasher, entry_point.group.as_bytes());
        hash_field(&mut hasher, entry_point.spec.as_bytes());
        hash_field(&mut hasher, entry_point.module.as_bytes());
        hash_field(&mut hasher, entry_point.declared_in.as_bytes());
    }
    *hasher.finalize().as_bytes()
}

impl VisitCache {
    /// A cache that remembers nothing (no file).
    pub fn disabled() -> Self {
        VisitCache::default()
    }

    /// The cache at `path`, or an empty one when it is missing, unusable,
    /// or was written under another context.
    pub fn load(path: &Path, context: [u8; 32], index: &RepoIndex) -> Self {
        let mut cache = VisitCache {
            path: Some(path.to_path_buf()),
            context,
            ..VisitCache::default()
        };
        match FILE.load::<Stored>(path) {
            Ok(Some(stored)) if stored.context == context => match stored.restore(index) {
                Ok(entries) => cache.entries = entries,
                Err(reason) => {
                    cache.load_warning =
                        Some(format!("{}: {reason}; starting afresh", path.display()))
                }
            },
            Ok(_) => {}
            Err(warning) => cache.load_warning = Some(warning),
        }
        cache
    }

    /// What a visit of `file` derived when its content had `digest`.
    pub fn get(&self, file: FileId, digest: &Digest) -> Option<Arc<Derived>> {
        self.entries
            .get(&file)
            .filter(|(stored, _)| stored == digest)
            .map(|(_, derived)| derived.clone())
    }

    /// The digest of `file` when it was last visited.
    pub fn digest_of(&self, file: FileId) -> Option<&Digest> {
        self.entries.get(&file).map(|(digest, _)| digest)
    }

    /// Stores what was loaded plus `fresh` (what this run visited afresh,
    /// replacing older entries of the same files). Entries of files this run
    /// did not reach stay: another run may reach them under the same context.
    pub fn save(
        &self,
        index: &RepoIndex,
        fresh: Vec<(FileId, Digest, Arc<Derived>)>,
    ) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut entries = self.entries.clone();
        for (file, digest, derived) in fresh {
            entries.insert(file, (digest, derived));
        }
        FILE.save(path, &Stored::new(self.context, index, entries))
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    context: [u8; 32],
    /// Every distinct reason once; edges refer to them by index.
    reasons: Vec<StoredReason>,
    visits: Vec<StoredVisit>,
}

#[derive(Serialize, Deserialize)]
struct StoredVisit {
    file: FileId,
    digest: Digest,
    edges: Vec<(StoredTarget, u32)>,
    unresolved: Vec<(String, u32)>,
    warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum StoredTarget {
    File(FileId),
    Absent(String),
}

/// `Reason` in a form postcard can read back (it has no internal tag).
#[derive(Serialize, Deserialize)]
enum StoredReason {
    Import(Arc<str>, u32),
    ModuleString(Arc<str>, u32),
    EntryPoint(Arc<str>, Arc<str>),
    Rule(Arc<str>, RuleAction, Option<Arc<str>>),
    Submodules(Arc<str>),
    GlobalDep(Arc<str>),
}

impl Stored {
    fn new(
        context: [u8; 32],
        index: &RepoIndex,
        entries: HashMap<FileId, (Digest, Arc<Derived>)>,
    ) -> Self {
        let mut reason_ids: HashMap<&Reason, u32> = HashMap::default();
        let mut reasons = Vec::new();
        let mut visits = Vec::with_capacity(entries.len());
        for (file, (digest, derived)) in &entries {
            let edges = derived
                .edges
                .iter()
                .map(|(target, reason)| {
                    let id = *reason_ids.entry(reason).or_insert_with(|| {
                        reasons.push(StoredReason::from(reason));
                        (reasons.len() - 1) as u32
                    });
                    let target = match target {
                        Target::File(id) => StoredTarget::File(*id),
                        Target::Absent(path) => StoredTarget::Absent(path.clone()),
                    };
                    (target, id)
                })
                .collect();
            debug_assert!(derived
                .unresolved
                .iter()
                .all(|u| u.file == index.path(*file)));
            visits.push(StoredVisit {
                file: *file,
                digest: *digest,
                edges,
                unresolved: derived
                    .unresolved
                    .iter()
                    .map(|u| (u.module.clone(), u.line))
                    .collect(),
                warnings: derived.warnings.clone(),
            });
        }
        visits.sort_by_key(|v| v.file);
        Stored {
            context,
            reasons,
            visits,
        }
    }

    /// The entries, checked against `index` (a file id out of range means a
    /// corrupt or mismatched file, never a wrong graph).
    fn restore(self, index: &RepoIndex) -> Result<HashMap<FileId, (Digest, Arc<Derived>)>, String> {
        let reasons: Vec<Reason> = self.reasons.into_iter().map(Reason::from).collect();
        let in_range = |id: FileId| -> Result<FileId, String> {
            ((id as usize) < index.len())
                .then_some(id)
                .ok_or_else(|| format!("file id {id} out of range"))
        };
        let mut entries = HashMap::default();
        entries.reserve(self.visits.len());
        for visit in self.visits {
            let file = in_range(visit.file)?;
            let edges = visit
                .edges
                .into_iter()
                .map(|(target, reason)| {
                    let target = match target {
                        StoredTarget::File(id) => Target::File(in_range(id)?),
                        StoredTarget::Absent(path) => Target::Absent(path),
                    };
                    let reason = reasons
                        .get(reason as usize)
                        .cloned()
                        .ok_or_else(|| format!("reason {reason} out of range"))?;
                    Ok((target, reason))
                })
                .collect::<Result<_, String>>()?;
            let path = index.path(file);
            let derived = Derived {
                edges,
                unresolved: visit
                    .unresolved
                    .into_iter()
                    .map(|(module, line)| Unresolved {
                        file: path.to_string(),
                        module,
                        line,
                    })
                    .collect(),
                warnings: visit.warnings,
            };
            entries.insert(file, (visit.digest, Arc::new(derived)));
        }
        Ok(entries)
    }
}

impl From<&Reason> for StoredReason {
    fn from(reason: &Reason) -> Self {
        match reason {
            Reason::Import { module, line } => StoredReason::Import(module.clone(), *line),
            Reason::ModuleString { value, line } => {
                StoredReason::ModuleString(value.clone(), *line)
            }
            Reason::EntryPoint { spec, declared_in } => {
                StoredReason::EntryPoint(spec.clone(), declared_in.clone())
            }
            Reason::Rule {
                rule,
                action,
                regex,
            } => StoredReason::Rule(rule.clone(), *action, regex.clone()),
            Reason::Submodules { package } => StoredReason::Submodules(package.clone()),
            Reason::GlobalDep { pattern } => StoredReason::GlobalDep(pattern.clone()),
        }
    }
}

impl From<StoredReason> for Reason {
    fn from(stored: StoredReason) -> Self {
        match stored {
            StoredReason::Import(module, line) => Reason::Import { module, line },
            StoredReason::ModuleString(value, line) => Reason::ModuleString { value, line },
            StoredReason::EntryPoint(spec, declared_in) => Reason::EntryPoint { spec, declared_in },
            StoredReason::Rule(rule, action, regex) => Reason::Rule {
                rule,
                action,
                regex,
            },
            StoredReason::Submodules(package) => Reason::Submodules { package },
            StoredReason::GlobalDep(pattern) => Reason::GlobalDep { pattern },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_reason() -> Vec<Reason> {
        vec![
            Reason::Import {
                module: "..pkg.mod".into(),
                line: 3,
            },
            Reason::ModuleString {
                value: "pkg.plugins:load".into(),
                line: 9,
            },
            Reason::EntryPoint {
                spec: "pkg.cli:main".into(),
                declared_in: "pyproject.toml".into(),
            },
            Reason::Rule {
                rule: "**/*.py".into(),
                action: RuleAction::VisitGrandSiblings,
                regex: None,
            },
            Reason::Rule {
                rule: "pkg/data.py".into(),
                action: RuleAction::VisitSiblings,
                regex: Some("DATA = \"([^\"]+)\"".into()),
            },
            Reason::Submodules {
                package: "pkg.plugins".into(),
            },
            Reason::GlobalDep {
                pattern: "*.lock".into(),
            },
        ]
    }

    #[test]
    fn visits_round_trip_and_another_context_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let index =
            RepoIndex::from_relative_paths(dir.path(), vec!["pkg/a.py".into(), "pkg/b.py".into()]);
        let reasons = every_reason();
        let derived = Derived {
            edges: reasons
                .iter()
                .enumerate()
                .map(|(i, reason)| {
                    let target = if i % 2 == 0 {
                        Target::File(1)
                    } else {
                        Target::Absent("pkg/conftest.py".into())
                    };
                    (target, reason.clone())
                })
                .collect(),
            unresolved: vec![Unresolved {
                file: "pkg/a.py".into(),
                module: "pkg.gone".into(),
                line: 2,
            }],
            warnings: vec!["pkg/a.py:1: cannot tokenize".into()],
        };
        let path = dir.path().join("visits.bin");
        let digest = Digest::of(b"a");
        let empty = VisitCache::load(&path, [7; 32], &index);
        empty
            .save(&index, vec![(0, digest, Arc::new(derived.clone()))])
            .unwrap();

        let loaded = VisitCache::load(&path, [7; 32], &index);
        assert!(loaded.load_warning.is_none());
        let got = loaded.get(0, &digest).expect("the visit is remembered");
        assert_eq!(got.edges, derived.edges);
        assert_eq!(got.unresolved, derived.unresolved);
        assert_eq!(got.warnings, derived.warnings);
        assert!(loaded.get(0, &Digest::of(b"changed")).is_none());
        assert!(loaded.get(1, &digest).is_none());

        let other_context = VisitCache::load(&path, [8; 32], &index);
        assert!(other_context.get(0, &digest).is_none());
    }
}
