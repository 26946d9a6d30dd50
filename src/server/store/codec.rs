//! The binary form of a stored entry, shared by every backend: one 20-byte
//! record per passed test, the 16-byte node-id hash then its duration in
//! milliseconds as a little-endian u32 (`u32::MAX` for "unknown"). One row
//! per test-file hash keeps a query of N hashes at N index lookups.
//!
//! The entry's requirements, when it has any, are a second blob (a column
//! of its own, so that counting and decoding ids stays as it is): the sets,
//! each its 32-byte id, its length as a little-endian u32 and its bytes,
//! after their count; then the count of tests and, for each, its 16-byte
//! node key and the index of its set as a little-endian u32.

use std::sync::Arc;

use super::{NodeKey, Requirements, SealedSet, StoreError, StoredId};

const RECORD: usize = 20;
const NO_DURATION: u32 = u32::MAX;

pub fn encode(ids: &[StoredId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * RECORD);
    for id in ids {
        out.extend_from_slice(&id.node_key);
        // Durations at or above u32::MAX ms (49 days) are clamped below the marker.
        let d = id
            .duration_ms
            .map_or(NO_DURATION, |d| d.min(NO_DURATION - 1));
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// How many ids `blob` holds, without decoding it.
pub fn count(blob: &[u8]) -> usize {
    blob.len() / RECORD
}

/// Decodes into any collection: a `Vec` to merge into, or an `Arc<[_]>`
/// to serve (collected in one allocation, the length being known).
pub fn decode<C: FromIterator<StoredId>>(
    table: &'static str,
    blob: &[u8],
) -> Result<C, StoreError> {
    if blob.len() % RECORD != 0 {
        return Err(StoreError::Corrupt {
            table,
            reason: format!(
                "ids blob of {} bytes is not a multiple of {RECORD}",
                blob.len()
            ),
        });
    }
    Ok(blob
        .chunks_exact(RECORD)
        .map(|chunk| {
            let mut node_key = [0u8; 16];
            node_key.copy_from_slice(&chunk[..16]);
            let mut d = [0u8; 4];
            d.copy_from_slice(&chunk[16..]);
            let d = u32::from_le_bytes(d);
            StoredId {
                node_key,
                duration_ms: (d != NO_DURATION).then_some(d),
            }
        })
        .collect())
}

pub fn encode_requirements(requirements: &Requirements) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        8 + requirements.set_bytes() + 36 * requirements.sets.len() + 20 * requirements.tests.len(),
    );
    out.extend_from_slice(&(requirements.sets.len() as u32).to_le_bytes());
    for set in &requirements.sets {
        out.extend_from_slice(&set.id);
        out.extend_from_slice(&(set.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&set.body);
    }
    out.extend_from_slice(&(requirements.tests.len() as u32).to_le_bytes());
    for (node_key, index) in &requirements.tests {
        out.extend_from_slice(node_key);
        out.extend_from_slice(&index.to_le_bytes());
    }
    out
}

/// Decodes what `encode_requirements` wrote; anything else is `Corrupt`.
pub fn decode_requirements(table: &'static str, blob: &[u8]) -> Result<Requirements, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table,
        reason: format!("requirements blob of {} bytes: {reason}", blob.len()),
    };
    let mut reader = Reader(blob);
    let truncated = || corrupt("truncated");
    let set_count = reader.u32().ok_or_else(truncated)?;
    let mut sets = Vec::new();
    for _ in 0..set_count {
        let id = reader.array::<32>().ok_or_else(truncated)?;
        let len = reader.u32().ok_or_else(truncated)? as usize;
        let body: Arc<[u8]> = Arc::from(reader.take(len).ok_or_else(truncated)?);
        sets.push(SealedSet { id, body });
    }
    let test_count = reader.u32().ok_or_else(truncated)?;
    let mut tests = Vec::new();
    for _ in 0..test_count {
        let node_key: NodeKey = reader.array::<16>().ok_or_else(truncated)?;
        let index = reader.u32().ok_or_else(truncated)?;
        if index as usize >= sets.len() {
            return Err(corrupt("a test names a set that is not there"));
        }
        tests.push((node_key, index));
    }
    if !reader.0.is_empty() {
        return Err(corrupt("bytes after the last test"));
    }
    if !tests.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err(corrupt("tests not sorted by node key"));
    }
    Ok(Requirements { sets, tests })
}

/// Reads a blob from its start; `None` past its end.
struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ids = vec![
            StoredId {
                node_key: [7; 16],
                duration_ms: None,
            },
            StoredId {
                node_key: [9; 16],
                duration_ms: Some(1234),
            },
        ];
        assert_eq!(decode::<Vec<_>>("entries", &encode(&ids)).unwrap(), ids);
        assert!(decode::<Vec<_>>("entries", &[1, 2, 3]).is_err());
    }

    #[test]
    fn requirements_round_trip_and_damage_is_corrupt() {
        let set = |b: u8, len: usize| SealedSet {
            id: [b; 32],
            body: vec![b; len].into(),
        };
        let requirements = Requirements::from_pairs([
            ([9; 16], set(1, 3)),
            ([2; 16], set(1, 3)),
            ([5; 16], set(2, 0)),
        ]);
        assert_eq!(requirements.sets.len(), 2);
        assert_eq!(requirements.of(&[2; 16]).map(|s| s.id), Some([1; 32]));
        assert_eq!(requirements.of(&[5; 16]).map(|s| s.id), Some([2; 32]));
        assert_eq!(requirements.of(&[7; 16]), None);
        let blob = encode_requirements(&requirements);
        assert_eq!(decode_requirements("entries", &blob).unwrap(), requirements);
        for cut in 0..blob.len() {
            assert!(
                decode_requirements("entries", &blob[..cut]).is_err(),
                "{cut}"
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode_requirements("entries", &longer).is_err());
        let mut bad_index = blob;
        let at = bad_index.len() - 4;
        bad_index[at] = 7;
        assert!(decode_requirements("entries", &bad_index).is_err());
    }
}
