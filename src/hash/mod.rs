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

use rayon::prelude::*;

use crate::files::FileDigest;
use crate::graph::{DepGraph, NodeId};

pub use salt::{Platform, Salt};

/// Bumped whenever what goes into a hash changes.
pub const ALGORITHM_VERSION: u32 = 2;

/// Everything a hash depends on besides the closure.
pub struct HashContext<'a> {
    pub config_fingerprint: &'a str,
    pub salt: [u8; 32],
}

/// One node's contribution to every hash that includes it: blake3 of its
/// length-prefixed path, a tag (content or absent) and its digest; or why
/// it cannot contribute (unreadable).
pub type NodeEntry = Result<[u8; 32], String>;

/// The entry of every node of `graph`, computed in parallel.
pub fn node_entries(graph: &DepGraph) -> Vec<NodeEntry> {
    graph
        .nodes
        .par_iter()
        .map(|node| {
            let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 closure entry");
            field(&mut hasher, node.path.as_bytes());
            match &node.digest {
                FileDigest::Content(digest) => {
                    hasher.update(b"C");
                    hasher.update(&digest.0);
                }
                FileDigest::Absent => {
                    hasher.update(b"A");
                }
                FileDigest::Unreadable(reason) => return Err(format!("cannot read {reason}")),
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
) -> Result<String, String> {
    buffer.clear();
    for node in closure {
        match &entries[node as usize] {
            Ok(entry) => buffer.extend_from_slice(entry),
            Err(problem) => return Err(problem.clone()),
        }
    }
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 test-file dependency hash");
    hasher.update(&ALGORITHM_VERSION.to_le_bytes());
    field(&mut hasher, context.config_fingerprint.as_bytes());
    hasher.update(&context.salt);
    field(&mut hasher, graph.path(input).as_bytes());
    hasher.update(&((buffer.len() / 32) as u64).to_le_bytes());
    hasher.update(buffer);
    Ok(hasher.finalize().to_hex().to_string())
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
