//! Wire types shared by the cache client and the server.
//!
//! `v1` is the original DryCI HTTP API, byte-compatible so that unmodified
//! clients and servers keep working. `v2` holds our extensions; a v1 client
//! never sees them. Keys are opaque hex strings to both sides: the server
//! never learns paths, test names or dependency hashes in the clear.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

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
    #[serde(deserialize_with = "json_count")]
    pub total_test_count: u64,
    #[serde(deserialize_with = "json_count")]
    pub passed_test_count: u64,
    #[serde(deserialize_with = "json_count")]
    pub failed_test_count: u64,
    #[serde(deserialize_with = "json_count")]
    pub skipped_test_count: u64,
    #[serde(deserialize_with = "json_count")]
    pub skipped_by_cache_test_count: u64,
}

/// Reads a count: a non-negative integer, written as JSON allows it.
///
/// JSON has one number type, and to JSON Schema (so to our OpenAPI
/// document) `5.0` and `5e0` are the integer 5; Python's `json` writes a
/// count computed as a float that way, and pydantic reads it as 5. serde's
/// `u64` refuses them (a 422 for a body the document calls valid); the
/// schema cannot be narrowed to exclude them, so the server takes them.
/// A fraction, a negative number, a number past `u64::MAX` and `null`
/// are still refused.
pub fn json_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(CountVisitor)
}

/// `json_count` for an optional field: absent is `None` (with
/// `#[serde(default)]`), `null` is refused like any other non-count. A
/// value is either there or not: our client leaves an unknown duration
/// out, and the answers carry it that way.
fn json_count_present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    json_count(deserializer).map(Some)
}

/// An optional string field: absent is `None`, `null` is refused, as for
/// `json_count_present`.
fn string_present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

struct CountVisitor;

impl serde::de::Visitor<'_> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
        // 2^64 is the first float past u64::MAX; `-0.0` is 0.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }
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
        #[serde(deserialize_with = "json_count")]
        pub total_test_count: u64,
        #[serde(deserialize_with = "json_count")]
        pub passed_test_count: u64,
        #[serde(deserialize_with = "json_count")]
        pub failed_test_count: u64,
        #[serde(deserialize_with = "json_count")]
        pub skipped_test_count: u64,
        #[serde(deserialize_with = "json_count")]
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
        /// Wall time of setup + call + teardown when it last passed; left
        /// out when unknown (`null` is refused).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "json_count_present"
        )]
        pub duration_ms: Option<u64>,
        /// The reference of its sealed requirement set (a key of
        /// `requirement_sets` in the same body): the test may be served only
        /// if every requirement in it still holds.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "string_present"
        )]
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

    /// How many ids the publish added (ids already stored are not counted),
    /// and how many tests it left out because the set they require is not
    /// in the body or is not what its key says.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PublishResponse {
        pub stored: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        pub not_stored: u64,
    }

    fn is_zero(n: &u64) -> bool {
        *n == 0
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
    fn counts_are_integers_as_json_writes_them() {
        let counts = |total: &str| {
            serde_json::from_str::<RunCounts>(&format!(
                r#"{{"total_test_count": {total}, "passed_test_count": 0, "failed_test_count": 0,
                    "skipped_test_count": 0, "skipped_by_cache_test_count": 0}}"#
            ))
            .map(|c| c.total_test_count)
        };
        for (text, value) in [("5", 5), ("5.0", 5), ("5e0", 5), ("-0", 0), ("-0.0", 0)] {
            assert_eq!(counts(text).unwrap(), value, "{text}");
        }
        assert_eq!(counts("18446744073709551615").unwrap(), u64::MAX);
        for text in [
            "5.5",
            "-1",
            "-1.0",
            "18446744073709551616",
            "1e20",
            "null",
            "\"5\"",
            "true",
        ] {
            let err = counts(text).unwrap_err().to_string();
            assert!(err.contains("a non-negative integer"), "{text}: {err}");
        }
    }

    #[test]
    fn an_unknown_duration_is_left_out_never_null() {
        let test = |rest: &str| {
            serde_json::from_str::<v2::PassedTest>(&format!(r#"{{"node_id": "ab"{rest}}}"#))
                .map(|t| t.duration_ms)
        };
        assert_eq!(test("").unwrap(), None);
        assert_eq!(test(r#", "duration_ms": 12"#).unwrap(), Some(12));
        assert_eq!(test(r#", "duration_ms": 12.0"#).unwrap(), Some(12));
        assert!(test(r#", "duration_ms": null"#).is_err());
        let requires = |rest: &str| {
            serde_json::from_str::<v2::PassedTest>(&format!(r#"{{"node_id": "ab"{rest}}}"#))
                .map(|t| t.requires)
        };
        assert_eq!(requires("").unwrap(), None);
        assert_eq!(
            requires(r#", "requires": "cd""#).unwrap(),
            Some("cd".into())
        );
        assert!(requires(r#", "requires": null"#).is_err());
        let unknown = v2::PassedTest {
            node_id: "ab".into(),
            duration_ms: None,
            requires: None,
        };
        assert_eq!(
            serde_json::to_string(&unknown).unwrap(),
            r#"{"node_id":"ab"}"#
        );
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
