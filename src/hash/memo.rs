//! Dependency hashes remembered from recent runs (`.dryci/hashes-v1.bin`),
//! so a re-run where nothing changed needs neither the graph nor closures.
//!
//! The hashes are a function of the visit context (DryCI's version, the
//! effective configuration, the repository's layout, the declared entry
//! points), the inputs, the salt and the content of every file the graph
//! reached. A slot stores the hashes under a key covering all but the
//! contents, plus every file of the graph with the digest it had; a run may
//! reuse the slot only when its key matches and every one of those files
//! still has that digest. Files named but absent are covered by the layout.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fixedbitset::FixedBitSet;
use rustc_hash::FxHashMap;

use crate::files::envelope::Envelope;
use crate::files::{Digest, FileDigest};
use crate::graph::{reaching, DepGraph, NodeId};
use crate::hashing::hash_field;
use crate::walk::{FileId, RepoIndex};

use super::{DependencyHash, HashContext, RequestedInput, Unhashed, ALGORITHM_VERSION};

const FILE: Envelope = Envelope {
    magic: b"DRYCIhm\0",
    version: 2,
};

/// Runs with other inputs or salts (the CLI and pytest, say) each keep a slot.
const SLOTS: usize = 4;

/// One input's outcome: its path, and its hash or why it has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHash {
    pub path: String,
    pub outcome: Result<DependencyHash, Unhashed>,
}

impl InputHash {
    pub fn hash(&self) -> Option<&DependencyHash> {
        self.outcome.as_ref().ok()
    }

    pub fn problem(&self) -> Option<&Unhashed> {
        self.outcome.as_ref().err()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    key: [u8; 32],
    /// Every file of the graph, with the digest its content had.
    pub files: Vec<(FileId, Digest)>,
    pub inputs: Vec<InputHash>,
    /// The graph's warnings (parse fallbacks, missing global dependencies...).
    pub warnings: Vec<String>,
    /// Nodes in the graph, for reports.
    pub node_count: usize,
}

#[derive(Debug, Default)]
pub struct Memo {
    path: Option<PathBuf>,
    slots: Vec<Slot>,
    /// Why the stored memo was not used, if it was not.
    pub load_warning: Option<String>,
}

/// The key of a run: everything its hashes depend on besides file contents.
/// `inputs` are the requested inputs as resolved (a path relative to the
/// root, or a path with why it cannot be hashed).
pub fn key(
    visit_context: &[u8; 32],
    context: &HashContext<'_>,
    inputs: &[RequestedInput],
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 hash memo key");
    hasher.update(&ALGORITHM_VERSION.to_le_bytes());
    hasher.update(visit_context);
    hash_field(&mut hasher, context.config_fingerprint.as_bytes());
    hasher.update(&context.salt);
    hasher.update(&(inputs.len() as u64).to_le_bytes());
    for input in inputs {
        match input {
            RequestedInput::InRepository(path) => {
                hasher.update(b"o");
                hash_field(&mut hasher, path.as_bytes());
            }
            RequestedInput::Rejected { path, why } => {
                hasher.update(b"e");
                hash_field(&mut hasher, path.as_bytes());
                hash_field(&mut hasher, why.to_string().as_bytes());
            }
        }
    }
    *hasher.finalize().as_bytes()
}

impl Slot {
    pub fn new(
        key: [u8; 32],
        files: Vec<(FileId, Digest)>,
        inputs: Vec<InputHash>,
        warnings: Vec<String>,
        node_count: usize,
    ) -> Self {
        Slot {
            key,
            files,
            inputs,
            warnings,
            node_count,
        }
    }
}

/// What a slot of the same key still answers after some files changed: the
/// hash of every input whose closure holds no changed file. Under one key a
/// file's direct dependencies depend only on its content, so a closure made
/// of unchanged files is the closure the slot was computed from.
pub struct Reuse<'s> {
    slot: &'s Slot,
    /// Nodes whose closure holds a file that is new or whose content changed.
    affected: FixedBitSet,
}

impl<'s> Reuse<'s> {
    pub fn new(slot: &'s Slot, graph: &DepGraph, index: &RepoIndex) -> Self {
        let recorded: FxHashMap<FileId, Digest> = slot.files.iter().copied().collect();
        let changed: Vec<NodeId> = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| match (index.id(&node.path), &node.digest) {
                (Some(id), FileDigest::Content(digest)) => recorded.get(&id) != Some(digest),
                // Absent names are covered by the key (the repository's layout).
                (None, FileDigest::Absent) => false,
                _ => true,
            })
            .map(|(node, _)| node as NodeId)
            .collect();
        Reuse {
            slot,
            affected: reaching(graph, &changed),
        }
    }

    /// Whether `node`'s closure holds a changed file.
    pub fn is_affected(&self, node: NodeId) -> bool {
        self.affected.contains(node as usize)
    }

    /// The remembered outcome of the input at `position` of the request
    /// (its path is `path`, its node `node`), when it still holds.
    pub fn outcome(&self, position: usize, path: &str, node: NodeId) -> Option<&'s InputHash> {
        if self.is_affected(node) {
            return None;
        }
        self.slot
            .inputs
            .get(position)
            .filter(|remembered| remembered.path == path && remembered.outcome.is_ok())
    }
}

impl Memo {
    pub fn disabled() -> Self {
        Memo::default()
    }

    pub fn load(path: &Path) -> Self {
        let mut memo = Memo {
            path: Some(path.to_path_buf()),
            ..Memo::default()
        };
        match FILE.load::<Vec<Slot>>(path) {
            Ok(slots) => memo.slots = slots.unwrap_or_default(),
            Err(warning) => memo.load_warning = Some(warning),
        }
        memo
    }

    /// The slot stored under `key`, if its files all exist in `index`.
    pub fn find(&self, key: &[u8; 32], index: &RepoIndex) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|slot| &slot.key == key)
            .filter(|slot| {
                slot.files
                    .iter()
                    .all(|(id, _)| (*id as usize) < index.len())
            })
    }

    /// Stores `slot` first, replacing a slot with its key and dropping the
    /// oldest; writes nothing when the same slot is already stored.
    pub fn save(&self, slot: Slot) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.slots.contains(&slot) {
            return Ok(());
        }
        let older = self.slots.iter().filter(|old| old.key != slot.key);
        let slots: Vec<&Slot> = std::iter::once(&slot).chain(older).take(SLOTS).collect();
        FILE.save(path, &slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(path: &str) -> InputHash {
        InputHash {
            path: path.into(),
            outcome: Ok("h".into()),
        }
    }

    #[test]
    fn keys_cover_inputs_salt_and_context_and_slots_rotate() {
        let context = HashContext {
            config_fingerprint: "c",
            salt: [1; 32],
        };
        let inputs = vec![RequestedInput::InRepository("t/test_a.py".to_string())];
        let base = key(&[0; 32], &context, &inputs);
        assert_ne!(base, key(&[9; 32], &context, &inputs));
        let salted = HashContext {
            config_fingerprint: "c",
            salt: [2; 32],
        };
        assert_ne!(base, key(&[0; 32], &salted, &inputs));
        assert_ne!(
            base,
            key(
                &[0; 32],
                &context,
                &[RequestedInput::InRepository("t/test_b.py".to_string())]
            )
        );
        assert_ne!(
            base,
            key(
                &[0; 32],
                &context,
                &[RequestedInput::Rejected {
                    path: "t/test_a.py".into(),
                    why: Unhashed::NotInRepository
                }]
            )
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.bin");
        let index = RepoIndex::from_relative_paths(dir.path(), vec!["t/test_a.py".into()]);
        for n in 0..(SLOTS as u8 + 2) {
            let memo = Memo::load(&path);
            let slot = Slot::new(
                [n; 32],
                vec![(0, Digest([n; 32]))],
                vec![remembered("x")],
                vec![],
                1,
            );
            memo.save(slot).unwrap();
        }
        let memo = Memo::load(&path);
        assert!(memo.load_warning.is_none());
        assert_eq!(memo.slots.len(), SLOTS);
        let newest = SLOTS as u8 + 1;
        assert!(memo.find(&[newest; 32], &index).is_some());
        assert!(
            memo.find(&[0; 32], &index).is_none(),
            "the oldest slot is dropped"
        );
        let out_of_range = RepoIndex::from_relative_paths(dir.path(), vec![]);
        assert!(memo.find(&[newest; 32], &out_of_range).is_none());
    }
}
