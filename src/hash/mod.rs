//! Dependency hashes: one per input, over an algorithm version, the
//! configuration's fingerprint, the salt, the input's path and every
//! (path, content digest) of its closure in path order.
//!
//! Each node's (path, digest) entry is hashed once (`node_entries`); an
//! input's hash then feeds its closure's 32-byte entries to blake3 as one
//! contiguous buffer, which blake3 hashes with SIMD. Feeding every path and
//! digest again for each of thousands of inputs was most of the run time.

pub mod memo;
pub mod salt;

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::files::{Digest, FileDigest, ReadProblem};
use crate::graph::{DepGraph, NodeId};
use crate::hashing::hash_field;

pub use salt::{Platform, Salt};

/// Bumped whenever what goes into a hash changes.
pub const ALGORITHM_VERSION: u32 = 2;

/// Everything a hash depends on besides the closure.
pub struct HashContext<'a> {
    pub config_fingerprint: &'a str,
    pub salt: [u8; 32],
}

/// The dependency hash of a test file: 64 hex characters of blake3 over
/// everything its tests depend on. It never leaves the machine: the cache
/// sees only keys derived from it (`cache::keys`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DependencyHash(String);

impl DependencyHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, enough to tell hashes apart in a report.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for DependencyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
impl From<&str> for DependencyHash {
    fn from(text: &str) -> Self {
        DependencyHash(text.to_string())
    }
}

/// Why a test file has no dependency hash: its tests always run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unhashed {
    /// A file of its closure could not be read.
    UnreadableDependency {
        path: String,
        problem: ReadProblem,
    },
    /// The path given is outside the repository root.
    OutsideRoot {
        root: String,
    },
    /// Missing, excluded by the configuration, or not a regular file.
    NotInRepository,
    NotInGraph,
}

impl fmt::Display for Unhashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhashed::UnreadableDependency { path, problem } => {
                write!(f, "cannot read {path}: {problem}")
            }
            Unhashed::OutsideRoot { root } => write!(f, "outside the repository root {root}"),
            Unhashed::NotInRepository => {
                f.write_str("not in the repository (missing, excluded or not a file)")
            }
            Unhashed::NotInGraph => f.write_str("not in the dependency graph"),
        }
    }
}

/// A test file as requested, before any graph: its path relative to the
/// root, or (the path as given) why it cannot be hashed at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedInput {
    InRepository(String),
    Rejected { path: String, why: Unhashed },
}

impl RequestedInput {
    /// The path relative to the root, for one in the repository.
    pub fn relative(&self) -> Option<&str> {
        match self {
            RequestedInput::InRepository(rel) => Some(rel),
            RequestedInput::Rejected { .. } => None,
        }
    }
}

/// One node's contribution to every hash that includes it: blake3 of its
/// length-prefixed path, a tag (content or absent) and its digest; or why
/// it cannot contribute (unreadable).
pub type NodeEntry = Result<[u8; 32], Unhashed>;

/// The entry of every node of `graph`, computed in parallel. Under
/// function-level keys, `skeletons` gives the digest of a node's
/// module-level code, which then stands for it (None: its whole content).
pub fn node_entries(graph: &DepGraph, skeletons: Option<&[Option<Digest>]>) -> Vec<NodeEntry> {
    graph
        .nodes
        .par_iter()
        .enumerate()
        .map(|(id, node)| {
            let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 closure entry");
            hash_field(&mut hasher, node.path.as_bytes());
            let skeleton = skeletons.and_then(|skeletons| skeletons[id]);
            match (&node.digest, skeleton) {
                (FileDigest::Content(_), Some(skeleton)) => {
                    hasher.update(b"S");
                    hasher.update(&skeleton.0);
                }
                (FileDigest::Content(digest), None) => {
                    hasher.update(b"C");
                    hasher.update(&digest.0);
                }
                (FileDigest::Absent, _) => {
                    hasher.update(b"A");
                }
                (FileDigest::Unreadable(problem), _) => {
                    return Err(Unhashed::UnreadableDependency {
                        path: node.path.clone(),
                        problem: problem.clone(),
                    })
                }
            }
            Ok(*hasher.finalize().as_bytes())
        })
        .collect()
}

/// The dependency hash of `input` whose closure is `closure` (node ids in
/// increasing, that is path, order), or why it cannot be computed (a file of
/// its closure could not be read: such a test must run). `buffer` is scratch
/// space, reused across calls so that large closures cost no fresh pages.
pub fn dependency_hash(
    context: &HashContext<'_>,
    graph: &DepGraph,
    entries: &[NodeEntry],
    input: NodeId,
    closure: impl Iterator<Item = NodeId>,
    buffer: &mut Vec<u8>,
) -> Result<DependencyHash, Unhashed> {
    buffer.clear();
    for node in closure {
        match &entries[node as usize] {
            Ok(entry) => buffer.extend_from_slice(entry),
            Err(problem) => return Err(problem.clone()),
        }
    }
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 test-file dependency hash");
    hasher.update(&ALGORITHM_VERSION.to_le_bytes());
    hash_field(&mut hasher, context.config_fingerprint.as_bytes());
    hasher.update(&context.salt);
    hash_field(&mut hasher, graph.path(input).as_bytes());
    hasher.update(&((buffer.len() / 32) as u64).to_le_bytes());
    hasher.update(buffer);
    Ok(DependencyHash(hasher.finalize().to_hex().to_string()))
}
