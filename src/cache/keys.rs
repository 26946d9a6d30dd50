//! The keys the cache sees. Like the original, nothing readable leaves the
//! machine: a test file is known by a hash of its dependency hash, and a test
//! by a salted hash of its node id, truncated to 32 hex characters, so that a
//! server can neither read test names nor link them across versions.

use crate::protocol::{NODE_ID_HEX_LEN, TEST_FILE_HASH_HEX_LEN};

/// The key of a test file: blake3 of its dependency hash (64 hex).
pub fn file_key(dep_hash: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 test-file key");
    hasher.update(dep_hash.as_bytes());
    let hex = hasher.finalize().to_hex();
    hex[..TEST_FILE_HASH_HEX_LEN].to_string()
}

/// The key of a test: blake3 of its node id salted with its file's dependency hash (32 hex).
pub fn node_key(node_id: &str, dep_hash: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 node key");
    hasher.update(&(node_id.len() as u64).to_le_bytes());
    hasher.update(node_id.as_bytes());
    hasher.update(dep_hash.as_bytes());
    let hex = hasher.finalize().to_hex();
    hex[..NODE_ID_HEX_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_wire_lengths_and_depend_on_both_parts() {
        assert_eq!(file_key("abc").len(), 64);
        assert_eq!(node_key("t.py::x", "abc").len(), 32);
        assert_ne!(node_key("t.py::x", "abc"), node_key("t.py::x", "abd"));
        assert_ne!(node_key("t.py::x", "abc"), node_key("t.py::y", "abc"));
        assert_ne!(file_key("abc"), "abc");
    }
}
