//! The one way DryCI feeds a variable-length field to blake3, shared by
//! every composite hash (dependency hashes, keys, cache fingerprints).

/// Feeds `bytes` to `hasher` after its length, so that consecutive
/// variable-length fields can never run into each other ("ab" + "c" and
/// "a" + "bc" hash differently).
pub fn hash_field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_change_the_hash() {
        let digest = |fields: &[&str]| {
            let mut hasher = blake3::Hasher::new();
            for field in fields {
                hash_field(&mut hasher, field.as_bytes());
            }
            hasher.finalize()
        };
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_ne!(digest(&["", "a"]), digest(&["a", ""]));
    }
}
