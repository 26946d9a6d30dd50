//! The keys the cache sees. Like the original, nothing readable leaves the
//! machine: a test file is known by a hash of its dependency hash (its file
//! key), and a test by a salted hash of its node id (its node key),
//! truncated to 32 hex characters, so that a server can neither read test
//! names nor link them across versions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::DependencyHash;
use crate::hashing::hash_field;
use crate::protocol::{NODE_ID_HEX_LEN, TEST_FILE_HASH_HEX_LEN};

/// What a test file's results are stored under: blake3 of its dependency
/// hash, 64 hex characters (the v1 wire calls it a "test file hash").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileKey(String);

/// What a test's pass is stored under: blake3 of its node id salted with its
/// file's dependency hash, 32 hex characters (the wire's "node id").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeKey(String);

impl FileKey {
    pub fn of(dependency_hash: &DependencyHash) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 test-file key");
        hasher.update(dependency_hash.as_str().as_bytes());
        let hex = hasher.finalize().to_hex();
        FileKey(hex[..TEST_FILE_HASH_HEX_LEN].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl NodeKey {
    pub fn of(node_id: &str, dependency_hash: &DependencyHash) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 node key");
        hash_field(&mut hasher, node_id.as_bytes());
        hasher.update(dependency_hash.as_str().as_bytes());
        let hex = hasher.finalize().to_hex();
        NodeKey(hex[..NODE_ID_HEX_LEN].to_string())
    }

    /// A key as a store or the server gave it back.
    pub fn from_stored(hex: String) -> Self {
        NodeKey(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_wire_lengths_and_depend_on_both_parts() {
        let abc = DependencyHash::from("abc");
        let abd = DependencyHash::from("abd");
        assert_eq!(FileKey::of(&abc).as_str().len(), 64);
        assert_eq!(NodeKey::of("t.py::x", &abc).as_str().len(), 32);
        assert_ne!(NodeKey::of("t.py::x", &abc), NodeKey::of("t.py::x", &abd));
        assert_ne!(NodeKey::of("t.py::x", &abc), NodeKey::of("t.py::y", &abc));
        assert_ne!(FileKey::of(&abc).as_str(), "abc");
    }

    #[test]
    fn keys_are_stable_across_versions() {
        // Stored results are found again only if a key never changes for the
        // same inputs: a change here must come with a new key derivation name.
        // Expected values from an independent blake3 (the Python package).
        let hash = DependencyHash::from("0123");
        assert_eq!(
            FileKey::of(&hash).as_str(),
            "06fe2d868d04e7c6182b31165b87eb605446795c904b0b6acec951d9e47c5182"
        );
        assert_eq!(
            NodeKey::of("t.py::x", &hash).as_str(),
            "201bd13dc9668a8f51aa99617b25a7a8"
        );
    }
}
