//! Wire types shared by the cache client and the server.
//!
//! `v1` is the original DryCI HTTP API, byte-compatible so that unmodified
//! clients and servers keep working. `v2` holds our extensions; a v1 client
//! never sees them. Keys are opaque hex strings to both sides: the server
//! never learns paths, test names or dependency hashes in the clear.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Length in hex characters of a (re-hashed) test-file dependency hash.
pub const TEST_FILE_HASH_HEX_LEN: usize = 64;
/// Length in hex characters of a salted, truncated node-id hash.
pub const NODE_ID_HEX_LEN: usize = 32;
/// The original server's cap on stored ids per test-file hash.
pub const MAX_IDS_PER_HASH: usize = 32_768;
/// Length in hex characters of a sealed requirement set's reference.
pub const SET_REF_HEX_LEN: usize = 64;
/// Largest sealed requirement set a v2 publish may carry (the bytes, before
/// base64). A test that read so much that its record is larger (about
/// 2,500 files) is kept in the local store only: the server never sees it.
pub const MAX_SEALED_SET_BYTES: usize = 256 * 1024;

/// Counters a client reports with every publish (v1 field names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCounts {
    pub total_test_count: u64,
    pub passed_test_count: u64,
    pub failed_test_count: u64,
    pub skipped_test_count: u64,
    pub skipped_by_cache_test_count: u64,
}

pub mod v1 {
    use super::*;

    /// `POST /api/v1/query-passed`
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct QueryPassedRequest {
        pub test_file_hashes: Vec<String>,
    }

    /// One list of node-id hashes per requested test-file hash, in order.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct QueryPassedResponse {
        pub node_ids: Vec<Vec<String>>,
    }

    /// `POST /api/v1/publish`
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PublishRequest {
        pub passed_node_ids_per_test_file: BTreeMap<String, Vec<String>>,
        // Spelled out rather than `#[serde(flatten)] RunCounts`: serde cannot
        // combine flatten with deny_unknown_fields, and v1 rejects unknown fields.
        pub total_test_count: u64,
        pub passed_test_count: u64,
        pub failed_test_count: u64,
        pub skipped_test_count: u64,
        pub skipped_by_cache_test_count: u64,
    }

    impl PublishRequest {
        pub fn new(passed: BTreeMap<String, Vec<String>>, counts: RunCounts) -> Self {
            Self {
                passed_node_ids_per_test_file: passed,
                total_test_count: counts.total_test_count,
                passed_test_count: counts.passed_test_count,
                failed_test_count: counts.failed_test_count,
                skipped_test_count: counts.skipped_test_count,
                skipped_by_cache_test_count: counts.skipped_by_cache_test_count,
            }
        }

        pub fn counts(&self) -> RunCounts {
            RunCounts {
                total_test_count: self.total_test_count,
                passed_test_count: self.passed_test_count,
                failed_test_count: self.failed_test_count,
                skipped_test_count: self.skipped_test_count,
                skipped_by_cache_test_count: self.skipped_by_cache_test_count,
            }
        }
    }

    /// The v1 publish answer is an empty object.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PublishResponse {}
}

pub mod v2 {
    use super::*;

    /// `GET /api/v2/capabilities`: what this server supports and accepts.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Capabilities {
        pub server_version: String,
        pub api_versions: Vec<u32>,
        pub max_body_bytes: u64,
        pub max_hashes_per_query: u64,
        pub max_ids_per_hash: u64,
    }

    /// A passed test as v2 stores it: its node-id hash, how long it took,
    /// and the record of what it read at run time, if it read anything the
    /// static key does not cover.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PassedTest {
        pub node_id: String,
        /// Wall time of setup + call + teardown when it last passed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub duration_ms: Option<u64>,
        /// The reference of its sealed requirement set (a key of
        /// `requirement_sets` in the same body): the test may be served only
        /// if every requirement in it still holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub requires: Option<String>,
    }

    /// Sealed requirement sets by reference: the base64 of the sealed bytes,
    /// whose blake3 (hex) is the reference. Only a client that knows the
    /// test file's dependency hash can open one (`crate::cache::sealed`).
    pub type SealedSets = BTreeMap<String, String>;

    /// `POST /api/v2/query-passed`
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct QueryPassedRequest {
        pub test_file_hashes: Vec<String>,
        /// The client checks requirement sets: answer the tests recorded
        /// with one too. Without it (an older client) they are left out of
        /// the answer, since such a client would serve them unchecked.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub with_requirements: bool,
    }

    /// One list per requested hash, in order.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct QueryPassedResponse {
        pub passed: Vec<Vec<PassedTest>>,
        /// The sets the answered tests require, each once; present (maybe
        /// empty) exactly when the query asked `with_requirements` and the
        /// server keeps them, which tells the client it may publish them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub requirement_sets: Option<SealedSets>,
    }

    /// `POST /api/v2/publish`
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PublishRequest {
        pub passed: BTreeMap<String, Vec<PassedTest>>,
        pub counts: RunCounts,
        /// Every set a test of `passed` requires.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub requirement_sets: SealedSets,
    }

    /// How many ids the publish added (ids already stored are not counted).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PublishResponse {
        pub stored: u64,
    }
}

/// A field of a request that does not have the required form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// JSON path of the field, e.g. `test_file_hashes[3]`.
    pub field: String,
    pub reason: String,
}

/// Checks that `value` is exactly `len` lowercase hex characters.
pub fn check_hex(
    field: impl FnOnce() -> String,
    value: &str,
    len: usize,
) -> Result<(), FieldError> {
    let ok = value.len() == len
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: field(),
            reason: format!(
                "must be {len} lowercase hex characters, got {:?}",
                truncate(value)
            ),
        })
    }
}

fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_publish_matches_the_original_shape() {
        let body = r#"{"passed_node_ids_per_test_file": {"aa": ["bb"]},
            "total_test_count": 3, "passed_test_count": 1, "failed_test_count": 1,
            "skipped_test_count": 0, "skipped_by_cache_test_count": 1}"#;
        let req: v1::PublishRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.counts().total_test_count, 3);
        assert_eq!(
            req.passed_node_ids_per_test_file["aa"],
            vec!["bb".to_string()]
        );
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["skipped_by_cache_test_count"], 1);
    }

    #[test]
    fn v1_rejects_unknown_fields() {
        let err =
            serde_json::from_str::<v1::QueryPassedRequest>(r#"{"test_file_hashes": [], "x": 1}"#);
        assert!(err.is_err());
    }

    #[test]
    fn check_hex_names_the_field() {
        let good = "a".repeat(64);
        assert!(check_hex(|| "h".into(), &good, 64).is_ok());
        let err = check_hex(|| "test_file_hashes[2]".into(), "ABC", 64).unwrap_err();
        assert_eq!(err.field, "test_file_hashes[2]");
        assert!(err.to_string().contains("64 lowercase hex"));
    }
}
