//! Requirement sets as they leave the machine: sealed under a key derived
//! from the test file's dependency hash.
//!
//! A set names what a test read (paths, variable names, digests), which
//! the server must not learn. The server knows a file only by its file key,
//! a one-way hash of the dependency hash, so a key derived from the
//! dependency hash itself is one it cannot compute: only a client that has
//! the same tree (and so computes the same dependency hash) can open the
//! set, which is exactly the client that may use it.
//!
//! Sealing is deterministic (the nonce is a keyed hash of the set, as in
//! SIV): the same set of one file seals to the same bytes, so the server
//! stores it once for all the tests that share it. Deterministic sealing
//! shows the server only which tests of a file share a set, which it could
//! tell from their sizes anyway.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::hash::DependencyHash;

const NONCE_LEN: usize = 24;

/// The keys that seal and open the requirement sets of one test file.
#[derive(Clone)]
pub struct SetSeal {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

impl SetSeal {
    pub fn of(dependency_hash: &DependencyHash) -> Self {
        let secret = dependency_hash.as_str().as_bytes();
        let key = blake3::derive_key("dryci 2026 requirement set sealing key", secret);
        SetSeal {
            cipher: XChaCha20Poly1305::new(&key.into()),
            nonce_key: blake3::derive_key("dryci 2026 requirement set nonce key", secret),
        }
    }

    /// The sealed form of `plain` (nonce, then ciphertext and tag) and its
    /// reference on the wire (the blake3 of the sealed bytes, hex).
    pub fn seal(&self, plain: &[u8]) -> (String, Vec<u8>) {
        let tag = blake3::keyed_hash(&self.nonce_key, plain);
        let nonce = XNonce::from_slice(&tag.as_bytes()[..NONCE_LEN]);
        // Encryption fails only past 256 GiB of plaintext.
        let ciphertext = self.cipher.encrypt(nonce, plain).unwrap_or_default();
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(nonce);
        sealed.extend_from_slice(&ciphertext);
        (blake3::hash(&sealed).to_hex().to_string(), sealed)
    }

    /// The set sealed in `sealed`; `None` if it was not sealed under this
    /// file's key or was altered.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_opens_only_under_its_own_file_and_seals_the_same_way_twice() {
        let seal = SetSeal::of(&DependencyHash::from("abc"));
        let (reference, sealed) = seal.seal(b"file res/a.txt");
        assert_eq!(reference, blake3::hash(&sealed).to_hex().to_string());
        assert_eq!(seal.seal(b"file res/a.txt"), (reference, sealed.clone()));
        assert!(!sealed
            .windows(b"res/a.txt".len())
            .any(|w| w == b"res/a.txt"));
        assert_eq!(seal.open(&sealed).as_deref(), Some(&b"file res/a.txt"[..]));

        let other_file = SetSeal::of(&DependencyHash::from("abd"));
        assert_eq!(other_file.open(&sealed), None);
        assert_ne!(other_file.seal(b"file res/a.txt").1, sealed);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(seal.open(&altered), None);
        assert_eq!(seal.open(&sealed[..10]), None);
    }
}
