//! Turns validated wire types (`crate::protocol`) into store keys, and
//! stored entries into answers: every response body is shaped here, none
//! in the handlers.
//! Every rejection is a `FieldError` naming the JSON path at fault, so a
//! malformed hash or id is a 422 that says which one, never a 500.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use base64::Engine as _;
use serde::de::DeserializeOwned;

use crate::protocol::{
    check_hex, v2, FieldError, MAX_SEALED_SET_BYTES, NODE_ID_HEX_LEN, TEST_FILE_HASH_HEX_LEN,
};

use super::store::{Entry, FileKey, NodeKey, Published, Requirements, SealedSet, StoredId};

/// What the server accepts; also reported by `/api/v2/capabilities`
/// (except `max_ids_per_answer`, which a client learns from the 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_hashes_per_query: usize,
    pub max_ids_per_hash: usize,
    /// Most node ids one query answer may carry, summed over its hashes.
    pub max_ids_per_answer: usize,
}

/// The default of `Limits::max_ids_per_answer`. An answer costs about 35
/// bytes per id in v1 and at most 48 in v2 (with a duration), written into
/// one buffer: 500,000 ids are 17-24 MB, which keeps a server holding a
/// million hashes (80 MB of RSS measured) near its 100 MB budget while it
/// answers. Without a cap, one 102 KB query naming a hash of 32,768 ids
/// 1,500 times asked for a 1.72 GB answer. A real query asks about one
/// commit's test files, each once: its answer is at most the test count of
/// the suite; a larger one is refused with a 422 and our client then asks
/// in parts (`HttpClient::in_parts`), an unmodified v1 client runs its
/// tests, and the operator can raise the flag.
pub const DEFAULT_MAX_IDS_PER_ANSWER: usize = 500_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_hashes_per_query: 50_000,
            max_ids_per_hash: crate::protocol::MAX_IDS_PER_HASH,
            max_ids_per_answer: DEFAULT_MAX_IDS_PER_ANSWER,
        }
    }
}

/// Longest text of a client's quoted in an error message: a bad key or an
/// unknown field of a megabyte must not come back as a megabyte (twice,
/// in `field` and `detail`). A hash is 64 characters and stays whole.
const MAX_QUOTED_CHARS: usize = 100;

/// `text` if it is short; otherwise its start and end around a marker
/// saying how much was left out, so a path keeps its root and its index
/// (`passed.<key>[3]`) and a serde message its "expected ..." part.
pub fn excerpt(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    let total = text.chars().count();
    if total <= max_chars {
        return std::borrow::Cow::Borrowed(text);
    }
    let tail = max_chars / 3;
    let head = max_chars - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(total - tail).collect();
    std::borrow::Cow::Owned(format!(
        "{start}...({} characters left out)...{end}",
        total - head - tail
    ))
}

/// Parses a JSON body into `T`, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        FieldError {
            field: if path == "." {
                "body".to_string()
            } else {
                excerpt(&path, 2 * MAX_QUOTED_CHARS).into_owned()
            },
            // serde quotes an unknown field or a bad string whole.
            reason: excerpt(&e.into_inner().to_string(), 3 * MAX_QUOTED_CHARS).into_owned(),
        }
    })
}

fn decode_hex<const N: usize>(
    field: impl FnOnce() -> String,
    s: &str,
) -> Result<[u8; N], FieldError> {
    // One pass that decodes and validates; `check_hex` words the error.
    let mut out = [0u8; N];
    let mut valid = s.len() == N * 2;
    if valid {
        for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let (high, low) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
            valid &= (high | low) < 16;
            *byte = (high << 4) | (low & 15);
        }
    }
    if !valid {
        check_hex(field, s, N * 2)?;
    }
    Ok(out)
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const NIBBLE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX_DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 15]];
        i += 1;
    }
    table
};

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| HEX_PAIRS[b as usize])
        .map(char::from)
        .collect()
}

/// A node id as a JSON string, built on the stack and copied out at once.
fn quoted_hex(id: &NodeKey) -> [u8; 34] {
    let mut out = [b'"'; 34];
    for (pair, &b) in out[1..33].chunks_exact_mut(2).zip(id) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
    out
}

/// The v1 query answer written straight into one buffer of bytes: the hot
/// path of the server, where building a `Vec<Vec<String>>` for serde cost
/// one allocation per id, and pushing `char`s cost a UTF-8 encoding each.
/// Byte-identical to serde_json's compact output of
/// `v1::QueryPassedResponse` (pinned by a test below).
/// Tests recorded with a requirement set are left out: a v1 client would
/// serve them without checking it.
pub fn v1_query_response(entries: &[Option<Entry>]) -> Vec<u8> {
    let ids: usize = entries.iter().flatten().map(|e| e.ids.len()).sum();
    let mut out = Vec::with_capacity(16 + 3 * entries.len() + 35 * ids);
    out.extend_from_slice(b"{\"node_ids\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, id) in entry.iter().flat_map(Entry::unconditional_ids).enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&quoted_hex(&id.node_key));
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Appends `n` in decimal, without the allocation of `to_string`.
fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Most bytes of sealed sets one v2 answer carries. Each entry holds at
/// most `MAX_SET_BYTES_PER_ENTRY`, but a query names up to 50,000 entries:
/// past this budget, a test whose set is not in the answer yet is left out
/// of it (it runs, which is always sound), so the answer stays within the
/// server's memory budget whatever the query names.
pub const MAX_SET_BYTES_PER_ANSWER: usize = 16 * 1024 * 1024;

/// The v2 query answer: per requested key, its passed tests with their
/// durations (an empty list where nothing is stored), written straight into
/// one buffer like v1's. Building `v2::QueryPassedResponse` for serde cost
/// about 70 bytes per id (a `String` each) on top of the answer itself.
/// Byte-identical to serde_json's compact output (pinned by a test below).
///
/// With `with_requirements`, tests recorded with a requirement set come
/// with its reference, and the sets follow, each once; without it (a
/// client that cannot check them) such tests are left out.
pub fn v2_query_response(entries: &[Option<Entry>], with_requirements: bool) -> Vec<u8> {
    let ids: usize = entries.iter().flatten().map(|e| e.ids.len()).sum();
    let mut out = Vec::with_capacity(16 + 3 * entries.len() + 48 * ids);
    let mut sets: BTreeMap<[u8; 32], &SealedSet> = BTreeMap::new();
    let mut set_bytes = 0;
    out.extend_from_slice(b"{\"passed\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        let mut first = true;
        if let Some(entry) = entry {
            let requirements = entry.requirements.as_deref();
            for id in entry.ids.iter() {
                let set = requirements.and_then(|r| r.of(&id.node_key));
                if let Some(set) = set {
                    let known = sets.contains_key(&set.id);
                    if !with_requirements
                        || (!known && set_bytes + set.body.len() > MAX_SET_BYTES_PER_ANSWER)
                    {
                        continue;
                    }
                    if !known {
                        set_bytes += set.body.len();
                        sets.insert(set.id, set);
                    }
                }
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                push_passed_test(&mut out, id, set);
            }
        }
        out.push(b']');
    }
    out.push(b']');
    if with_requirements {
        out.extend_from_slice(b",\"requirement_sets\":{");
        for (i, set) in sets.values().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(hex(&set.id).as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&set.body)
                    .as_bytes(),
            );
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

/// One `v2::PassedTest` as compact JSON.
fn push_passed_test(out: &mut Vec<u8>, id: &StoredId, set: Option<&SealedSet>) {
    out.extend_from_slice(b"{\"node_id\":");
    out.extend_from_slice(&quoted_hex(&id.node_key));
    if let Some(ms) = id.duration_ms {
        out.extend_from_slice(b",\"duration_ms\":");
        push_decimal(out, ms);
    }
    if let Some(set) = set {
        out.extend_from_slice(b",\"requires\":\"");
        out.extend_from_slice(hex(&set.id).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

pub fn query_hashes(hashes: &[String], limits: &Limits) -> Result<Vec<FileKey>, FieldError> {
    if hashes.len() > limits.max_hashes_per_query {
        return Err(FieldError {
            field: "test_file_hashes".into(),
            reason: format!(
                "{} hashes, at most {} per query",
                hashes.len(),
                limits.max_hashes_per_query
            ),
        });
    }
    debug_assert_eq!(TEST_FILE_HASH_HEX_LEN, 64);
    let keys = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| decode_hex::<32>(|| format!("test_file_hashes[{i}]"), h))
        .collect::<Result<Vec<FileKey>, _>>()?;
    reject_repeats(&keys)?;
    Ok(keys)
}

/// Refuses a query that names a hash twice, naming the first repeat.
///
/// Answering repeats is how one 102 KB query asked for a 1.72 GB answer
/// (a hash of 32,768 ids, 1,500 times). v1 must answer one list per
/// requested hash, in order, so a repeat cannot be "answered once" without
/// changing the shape an unmodified client reads; and no client has a
/// reason to repeat one: ours asks about each distinct dependency hash once
/// (`Session::ask_cache` deduplicates), the original asks once per test
/// file, and a file key hashes the file's path. So a repeat is refused
/// before the store is touched, with a 422 that names it.
/// std's `HashMap` hashes with SipHash keyed at random per process, so
/// keys a client chose cannot be made to collide; 50,000 keys take 3 ms
/// (sorting their positions took 5 ms, measured with `rustc -O`).
fn reject_repeats(keys: &[FileKey]) -> Result<(), FieldError> {
    let mut seen: HashMap<&FileKey, usize> = HashMap::with_capacity(keys.len());
    for (j, key) in keys.iter().enumerate() {
        if let Some(i) = seen.insert(key, j) {
            return Err(FieldError {
                field: format!("test_file_hashes[{j}]"),
                reason: format!("repeats test_file_hashes[{i}]: ask about each hash once"),
            });
        }
    }
    Ok(())
}

/// The refusal of a query whose answer would carry more than
/// `max_ids_per_answer` ids: the store counts them as it reads
/// (`ResultStore::query`) and stops there, so neither the entries nor the
/// answer of such a query are ever built in full.
pub fn too_many_ids(at_least: usize, max: usize) -> FieldError {
    FieldError {
        field: "test_file_hashes".into(),
        reason: format!(
            "the answer would carry at least {at_least} node ids, at most {max} per answer: \
             ask about fewer hashes per query"
        ),
    }
}

/// A publish as the store takes it, and how many of its tests were left
/// out because the set they require is missing or invalid.
#[derive(Debug)]
pub struct PublishBatch {
    pub entries: Vec<(FileKey, Published)>,
    pub not_stored: u64,
}

/// Validates a publish map and turns it into store batches; `each` gives
/// an item's node id, duration and required set (v2 only). A test whose
/// set is not in `sets` is left out: stored without it, it would be served
/// unchecked; refusing the body instead would refuse what the document
/// calls valid, since no schema can say that a reference names a key.
fn publish_entries<T>(
    root: &str,
    map: &BTreeMap<String, Vec<T>>,
    limits: &Limits,
    sets: &HashMap<&str, SealedSet>,
    each: impl Fn(&T) -> (&str, Option<u64>, Option<&str>),
) -> Result<PublishBatch, FieldError> {
    debug_assert_eq!(NODE_ID_HEX_LEN, 32);
    let mut entries = Vec::with_capacity(map.len());
    let mut not_stored = 0;
    for (key, ids) in map {
        let field = || format!("{root}.{}", excerpt(key, MAX_QUOTED_CHARS));
        let hash = decode_hex::<32>(field, key)?;
        if ids.len() > limits.max_ids_per_hash {
            return Err(FieldError {
                field: field(),
                reason: format!(
                    "{} ids, at most {} per hash",
                    ids.len(),
                    limits.max_ids_per_hash
                ),
            });
        }
        let mut stored = Vec::with_capacity(ids.len());
        let mut required = Vec::new();
        for (i, item) in ids.iter().enumerate() {
            let (id, duration, requires) = each(item);
            let node_key: NodeKey = decode_hex::<16>(|| format!("{}[{i}]", field()), id)?;
            if let Some(reference) = requires {
                decode_hex::<32>(|| format!("{}[{i}].requires", field()), reference)?;
                let Some(set) = sets.get(reference) else {
                    not_stored += 1;
                    continue;
                };
                required.push((node_key, set.clone()));
            }
            let duration_ms = duration.map(|d| u32::try_from(d).unwrap_or(u32::MAX - 1));
            stored.push(StoredId {
                node_key,
                duration_ms,
            });
        }
        let published = Published {
            ids: stored,
            requirements: Requirements::from_pairs(required),
        };
        entries.push((hash, published));
    }
    Ok(PublishBatch {
        entries,
        not_stored,
    })
}

pub fn publish_v1(
    map: &BTreeMap<String, Vec<String>>,
    limits: &Limits,
) -> Result<PublishBatch, FieldError> {
    publish_entries(
        "passed_node_ids_per_test_file",
        map,
        limits,
        &HashMap::new(),
        |id| (id.as_str(), None, None),
    )
}

pub fn publish_v2(
    request: &v2::PublishRequest,
    limits: &Limits,
) -> Result<PublishBatch, FieldError> {
    let sets = sealed_sets(&request.requirement_sets)?;
    publish_entries("passed", &request.passed, limits, &sets, |t| {
        (t.node_id.as_str(), t.duration_ms, t.requires.as_deref())
    })
}

/// The sets whose reference is the blake3 of their bytes (so a stored set
/// is exactly what its reference names); the others are left out, and the
/// tests that require them with them. A key that is not 64 lowercase hex,
/// or a set over `MAX_SEALED_SET_BYTES`, is a 422, as the document says.
fn sealed_sets(sets: &v2::SealedSets) -> Result<HashMap<&str, SealedSet>, FieldError> {
    let mut out = HashMap::with_capacity(sets.len());
    for (reference, body) in sets {
        let field = || format!("requirement_sets.{}", excerpt(reference, MAX_QUOTED_CHARS));
        let id = decode_hex::<32>(field, reference)?;
        if body.len() > MAX_SEALED_SET_BYTES.div_ceil(3) * 4 {
            return Err(FieldError {
                field: field(),
                reason: format!("a sealed set of over {MAX_SEALED_SET_BYTES} bytes"),
            });
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body) else {
            continue;
        };
        if *blake3::hash(&bytes).as_bytes() != id {
            continue;
        }
        let body: Arc<[u8]> = bytes.into();
        out.insert(reference.as_str(), SealedSet { id, body });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v1;

    #[test]
    fn hex_round_trip() {
        let h: [u8; 16] = decode_hex(|| "x".into(), "00ff10a0000000000000000000000001").unwrap();
        assert_eq!(hex(&h), "00ff10a0000000000000000000000001");
        let all: Vec<u8> = (0..=255).collect();
        let mut back = [0u8; 256];
        for (i, pair) in hex(&all).as_bytes().chunks(32).enumerate() {
            let chunk: [u8; 16] =
                decode_hex(|| "x".into(), std::str::from_utf8(pair).unwrap()).unwrap();
            back[i * 16..(i + 1) * 16].copy_from_slice(&chunk);
        }
        assert_eq!(back.to_vec(), all);
    }

    #[test]
    fn hex_rejects_name_the_field() {
        for bad in [
            "00FF10A0000000000000000000000001",  // uppercase
            "00ff10a000000000000000000000001",   // one short
            "00ff10a00000000000000000000000011", // one long
            "00ff10a0000000000000000000000g01",  // not hex
            "00ff10a0000000000000000000000é1",   // multi-byte
        ] {
            let err = decode_hex::<16>(|| "ids[3]".into(), bad).unwrap_err();
            assert_eq!(err.field, "ids[3]", "{bad}");
            assert!(
                err.reason.contains("lowercase hex"),
                "{bad}: {}",
                err.reason
            );
        }
    }

    #[test]
    fn handwritten_v1_answer_matches_serde() {
        let entry = |ids: &[u8]| {
            Some(Entry {
                requirements: None,
                ids: ids
                    .iter()
                    .map(|&b| StoredId {
                        node_key: [b; 16],
                        duration_ms: None,
                    })
                    .collect(),
                last_read_at: 0,
            })
        };
        let entries = vec![entry(&[1, 2]), None, entry(&[]), entry(&[255])];
        let expected = v1::QueryPassedResponse {
            node_ids: entries
                .iter()
                .map(|e| {
                    e.iter()
                        .flat_map(|e| e.ids.iter())
                        .map(|i| hex(&i.node_key))
                        .collect()
                })
                .collect(),
        };
        assert_eq!(
            String::from_utf8(v1_query_response(&entries)).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(v1_query_response(&[]), br#"{"node_ids":[]}"#);
    }

    #[test]
    fn v2_answer_has_one_list_per_key_with_durations() {
        let stored = |b: u8, d: Option<u32>| StoredId {
            node_key: [b; 16],
            duration_ms: d,
        };
        let entries = vec![
            Some(Entry {
                requirements: None,
                ids: vec![stored(1, Some(7)), stored(2, None)].into(),
                last_read_at: 0,
            }),
            None,
        ];
        let answer: serde_json::Value =
            serde_json::from_slice(&v2_query_response(&entries, false)).unwrap();
        let one = "01".repeat(16);
        let two = "02".repeat(16);
        assert_eq!(
            answer,
            serde_json::json!({"passed": [
                [{"node_id": one, "duration_ms": 7}, {"node_id": two}],
                []
            ]})
        );
    }

    fn sealed(b: u8, len: usize) -> SealedSet {
        SealedSet {
            id: [b; 32],
            body: vec![b; len].into(),
        }
    }

    /// Entries with durations of every width, one with no id, one absent,
    /// and one whose tests 1 and 3 share a set and 4 has its own.
    fn varied_entries() -> Vec<Option<Entry>> {
        let durations = [None, Some(0), Some(9), Some(10), Some(1234), Some(u32::MAX)];
        let ids: Vec<StoredId> = durations
            .iter()
            .enumerate()
            .map(|(i, &duration_ms)| StoredId {
                node_key: [i as u8 * 40; 16],
                duration_ms,
            })
            .collect();
        let requirements = Requirements::from_pairs([
            ([40; 16], sealed(7, 5)),
            ([120; 16], sealed(7, 5)),
            ([160; 16], sealed(3, 2)),
        ]);
        vec![
            Some(Entry {
                requirements: None,
                ids: ids.clone().into(),
                last_read_at: 0,
            }),
            None,
            Some(Entry {
                requirements: None,
                ids: Vec::new().into(),
                last_read_at: 0,
            }),
            Some(Entry {
                requirements: Some(Arc::new(requirements)),
                ids: ids.into(),
                last_read_at: 0,
            }),
        ]
    }

    /// What serde writes for `entries`, built the slow way.
    fn serde_answer(entries: &[Option<Entry>], with_requirements: bool) -> String {
        let mut sets = v2::SealedSets::new();
        let passed = entries
            .iter()
            .map(|e| {
                let Some(e) = e else { return Vec::new() };
                let requirements = e.requirements.as_deref();
                e.ids
                    .iter()
                    .filter_map(|id| {
                        let set = requirements.and_then(|r| r.of(&id.node_key));
                        if set.is_some() && !with_requirements {
                            return None;
                        }
                        if let Some(set) = set {
                            let body = base64::engine::general_purpose::STANDARD.encode(&set.body);
                            sets.insert(hex(&set.id), body);
                        }
                        Some(v2::PassedTest {
                            node_id: hex(&id.node_key),
                            duration_ms: id.duration_ms.map(u64::from),
                            requires: set.map(|set| hex(&set.id)),
                        })
                    })
                    .collect()
            })
            .collect();
        let expected = v2::QueryPassedResponse {
            passed,
            requirement_sets: with_requirements.then_some(sets),
        };
        serde_json::to_string(&expected).unwrap()
    }

    #[test]
    fn handwritten_v2_answer_matches_serde() {
        let entries = varied_entries();
        for with_requirements in [false, true] {
            assert_eq!(
                String::from_utf8(v2_query_response(&entries, with_requirements)).unwrap(),
                serde_answer(&entries, with_requirements),
                "with_requirements: {with_requirements}"
            );
        }
        assert_eq!(v2_query_response(&[], false), br#"{"passed":[]}"#);
        assert_eq!(
            v2_query_response(&[], true),
            br#"{"passed":[],"requirement_sets":{}}"#
        );
    }

    #[test]
    fn tests_with_sets_are_hidden_from_clients_that_cannot_check_them() {
        let entries = varied_entries();
        let v1: v1::QueryPassedResponse =
            serde_json::from_slice(&v1_query_response(&entries)).unwrap();
        let v2: v2::QueryPassedResponse =
            serde_json::from_slice(&v2_query_response(&entries, false)).unwrap();
        let with: v2::QueryPassedResponse =
            serde_json::from_slice(&v2_query_response(&entries, true)).unwrap();
        assert_eq!(v1.node_ids[3].len(), 3);
        assert_eq!(v2.passed[3].len(), 3);
        assert_eq!(with.passed[3].len(), 6);
        let required: Vec<_> = with.passed[3]
            .iter()
            .filter_map(|t| t.requires.clone())
            .collect();
        assert_eq!(required, vec![hex(&[7; 32]), hex(&[7; 32]), hex(&[3; 32])]);
        assert_eq!(with.requirement_sets.unwrap().len(), 2);
        assert!(v2.requirement_sets.is_none());
    }

    #[test]
    fn an_answer_carries_sets_up_to_its_budget_and_leaves_out_their_tests_beyond() {
        let entry = |b: u8| {
            let node_key = [b; 16];
            let requirements = Requirements::from_pairs([(node_key, sealed(b, 6 * 1024 * 1024))]);
            Some(Entry {
                requirements: Some(Arc::new(requirements)),
                ids: vec![StoredId {
                    node_key,
                    duration_ms: None,
                }]
                .into(),
                last_read_at: 0,
            })
        };
        let entries = vec![entry(1), entry(2), entry(3), entry(4)];
        let answer: v2::QueryPassedResponse =
            serde_json::from_slice(&v2_query_response(&entries, true)).unwrap();
        let answered: Vec<usize> = answer.passed.iter().map(Vec::len).collect();
        assert_eq!(answered, vec![1, 1, 0, 0]);
        assert_eq!(answer.requirement_sets.unwrap().len(), 2);
    }

    #[test]
    fn a_test_is_stored_only_with_a_set_that_is_in_the_body_under_its_own_hash() {
        let body = b"sealed".to_vec();
        let reference = hex(blake3::hash(&body).as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
        let request = |requires: &str, sets: &[(&str, &str)]| v2::PublishRequest {
            passed: BTreeMap::from([(
                "a".repeat(64),
                vec![
                    v2::PassedTest {
                        node_id: node_hex(),
                        duration_ms: None,
                        requires: Some(requires.to_string()),
                    },
                    v2::PassedTest {
                        node_id: "1".repeat(32),
                        duration_ms: None,
                        requires: None,
                    },
                ],
            )]),
            counts: Default::default(),
            requirement_sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let limits = Limits::default();
        let batch = publish_v2(&request(&reference, &[(&reference, &encoded)]), &limits).unwrap();
        assert_eq!(batch.not_stored, 0);
        let published = &batch.entries[0].1;
        assert_eq!(published.ids.len(), 2);
        assert_eq!(published.requirements.sets[0].body.as_ref(), b"sealed");

        let other = "b".repeat(64);
        for bad in [
            request(&reference, &[]),
            request(&other, &[(&other, &encoded)]),
            request(&reference, &[(&reference, "%%%")]),
        ] {
            let batch = publish_v2(&bad, &limits).unwrap();
            assert_eq!(batch.not_stored, 1);
            let published = &batch.entries[0].1;
            assert_eq!(published.ids.len(), 1, "the test without a set is stored");
            assert!(published.requirements.is_empty());
        }
        let err = publish_v2(&request("XY", &[]), &limits).unwrap_err();
        assert!(err.field.ends_with("[0].requires"), "{err}");
        let huge = "A".repeat(MAX_SEALED_SET_BYTES / 3 * 4 + 8);
        let err = publish_v2(&request(&reference, &[(&reference, &huge)]), &limits).unwrap_err();
        assert!(err.reason.contains("over"), "{err}");
    }

    #[test]
    fn a_repeated_hash_is_refused_naming_its_first_repeat() {
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let query = [c.clone(), a.clone(), b.clone(), b, a, c];
        let err = query_hashes(&query, &Limits::default()).unwrap_err();
        assert_eq!(err.field, "test_file_hashes[3]");
        assert!(err.reason.contains("repeats test_file_hashes[2]"), "{err}");
        let distinct = ["a".repeat(64), "b".repeat(64)];
        assert_eq!(
            query_hashes(&distinct, &Limits::default()).unwrap().len(),
            2
        );
    }

    #[test]
    fn long_keys_and_fields_are_quoted_in_part() {
        let long = "x".repeat(1_000_000);
        let mut map = BTreeMap::new();
        map.insert(long.clone(), vec![node_hex()]);
        let err = publish_v1(&map, &Limits::default()).unwrap_err();
        assert!(err.to_string().len() < 400, "{}", err.to_string().len());
        assert!(err.field.starts_with("passed_node_ids_per_test_file.xxx"));
        let body = format!(r#"{{"test_file_hashes": [], "{long}": 1}}"#);
        let err = parse_json::<v1::QueryPassedRequest>(&Bytes::from(body)).unwrap_err();
        assert!(err.to_string().len() < 1000, "{}", err.to_string().len());
        assert!(err.reason.contains("expected `test_file_hashes`"), "{err}");
        assert_eq!(excerpt("short", 10), "short");
        let cut = excerpt("abcdefghijklmnopqrstuvwxyz", 9);
        assert_eq!(cut, "abcdef...(17 characters left out)...xyz");
    }

    fn node_hex() -> String {
        "0".repeat(32)
    }

    #[test]
    fn bad_json_names_the_field() {
        let body = Bytes::from_static(br#"{"test_file_hashes": ["a", 3]}"#);
        let err = parse_json::<v1::QueryPassedRequest>(&body).unwrap_err();
        assert_eq!(err.field, "test_file_hashes[1]");
    }

    #[test]
    fn wrong_id_length_names_hash_and_index() {
        let mut map = BTreeMap::new();
        map.insert("a".repeat(64), vec!["b".repeat(32), "c".repeat(31)]);
        let err = publish_v1(&map, &Limits::default()).unwrap_err();
        assert_eq!(
            err.field,
            format!("passed_node_ids_per_test_file.{}[1]", "a".repeat(64))
        );
    }
}
