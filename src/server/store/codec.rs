//! The binary form of a stored entry, shared by every backend: one 20-byte
//! record per passed test, the 16-byte node-id hash then its duration in
//! milliseconds as a little-endian u32 (`u32::MAX` for "unknown"). One row
//! per test-file hash keeps a query of N hashes at N index lookups.

use super::{StoreError, StoredId};

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
}
