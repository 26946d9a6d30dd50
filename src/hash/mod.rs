//! Dependency hashes: one per input, over an algorithm version, the
//! configuration's fingerprint, the salt, the input's path and every
//! (path, content digest) of its closure in path order. Every field is
//! length-prefixed, so no two different inputs feed the same bytes.

pub mod salt;

use crate::files::FileDigest;
use crate::graph::{DepGraph, NodeId};

pub use salt::{Platform, Salt};

/// Bumped whenever what goes into a hash changes.
pub const ALGORITHM_VERSION: u32 = 1;

/// Everything a hash depends on besides the closure.
pub struct HashContext<'a> {
    pub config_fingerprint: &'a str,
    pub salt: [u8; 32],
}

/// The dependency hash of `input`, or why it cannot be computed (a file of
/// its closure could not be read: such a test must run).
pub fn dependency_hash(
    context: &HashContext<'_>,
    graph: &DepGraph,
    input: NodeId,
    closure: &[NodeId],
) -> Result<String, String> {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 test-file dependency hash");
    hasher.update(&ALGORITHM_VERSION.to_le_bytes());
    field(&mut hasher, context.config_fingerprint.as_bytes());
    hasher.update(&context.salt);
    field(&mut hasher, graph.path(input).as_bytes());
    hasher.update(&(closure.len() as u64).to_le_bytes());
    for node in closure {
        let node = &graph.nodes[*node as usize];
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
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
