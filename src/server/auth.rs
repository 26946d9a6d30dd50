//! Bearer tokens: their format, generation, hashing and checking.
//!
//! A token is `dryci-` plus 26 base32 characters (128 random bits). Only its
//! blake3 hash is stored: with 128 bits of entropy a fast hash is enough (no
//! password KDF needed), and a leaked database reveals no usable token.

use axum::http::HeaderMap;

use super::store::{Store, StoreError, TokenAuth};

pub const TOKEN_PREFIX: &str = "dryci-";
const TOKEN_BODY_LEN: usize = 26;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a request is not authenticated (all answered with 401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header (expected `Authorization: Bearer dryci-...`)")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("cannot check the token: {0}")]
    Store(#[from] StoreError),
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// A new random token.
pub fn generate() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", base32(&bytes)))
}

/// RFC 4648 base32 without padding, lowercase: 16 bytes give 26 characters.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// Checks the shape of a token without touching the database.
pub fn check_format(token: &str) -> Result<(), AuthError> {
    let Some(body) = token.strip_prefix(TOKEN_PREFIX) else {
        return Err(AuthError::Malformed(
            "the token does not start with `dryci-`",
        ));
    };
    // Upper case is accepted too: RFC 4648 base32 is usually written in capitals.
    if body.len() != TOKEN_BODY_LEN
        || !body
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'2'..=b'7'))
    {
        return Err(AuthError::Malformed(
            "the token is not `dryci-` followed by 26 base32 characters",
        ));
    }
    Ok(())
}

/// Extracts the token from `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the header is not ASCII"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("the scheme is not `Bearer`"));
    }
    let token = token.trim();
    check_format(token)?;
    Ok(token)
}

/// Finds the token of a request and checks that it is valid at `now`.
pub async fn authenticate(
    store: &dyn Store,
    headers: &HeaderMap,
    now: i64,
) -> Result<TokenAuth, AuthError> {
    let token = bearer(headers)?;
    let digest = hash(token);
    let found = store.find_token(digest).await?.ok_or(AuthError::Unknown)?;
    // The lookup went through the hash index; compare again in constant time
    // (blake3::Hash's `==` is constant-time) so no code path branches early
    // on secret bytes.
    if blake3::Hash::from(found.token_hash) != blake3::Hash::from(digest) {
        return Err(AuthError::Unknown);
    }
    if found.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if found.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_original_format() {
        let t = generate().unwrap();
        assert_eq!(t.len(), TOKEN_PREFIX.len() + TOKEN_BODY_LEN);
        check_format(&t).unwrap();
        assert_ne!(t, generate().unwrap());
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn bearer_rejects_malformed_headers() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Err(AuthError::Missing)));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&h), Err(AuthError::Malformed(_))));
        h.insert("authorization", "Bearer dryci-short".parse().unwrap());
        assert!(matches!(bearer(&h), Err(AuthError::Malformed(_))));
        let good = generate().unwrap();
        h.insert("authorization", format!("Bearer {good}").parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), good);
    }
}
