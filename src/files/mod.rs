//! Reading the files of a closure: each file is read at most once per run,
//! its blake3 digest taken and, where a rule needs them, its imports scanned
//! from the same bytes. A persistent state cache (`state`) answers for files
//! whose metadata has not changed, so a no-change re-run reads nothing.

pub mod envelope;
pub mod state;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::imports::scan::{scan, ScanResult};

use state::{FileStamp, StateCache};

/// A blake3 digest of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadProblem {
    /// It exists but is a folder, a pipe, a socket...
    NotAFile,
    /// The operating system's error message.
    Io(String),
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::NotAFile => f.write_str("not a regular file"),
            ReadProblem::Io(message) => f.write_str(message),
        }
    }
}

/// What a dependency contributes to a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDigest {
    Content(Digest),
    /// A configured dependency that does not exist: hashed as "absent", so
    /// creating it later changes the hash.
    Absent,
    /// Could not be read: whoever depends on it cannot be hashed, and so is never skipped.
    Unreadable(ReadProblem),
}

/// What a visit needs from a file besides its digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub imports: bool,
    /// The raw bytes, for regex rules.
    pub text: bool,
}

#[derive(Debug, Clone)]
pub struct FileFacts {
    pub digest: FileDigest,
    pub scan: Option<Arc<ScanResult>>,
    pub text: Option<Arc<Vec<u8>>>,
    /// A fresh entry for the state cache, when the file was read this run.
    pub fresh: Option<(FileStamp, Digest)>,
}

impl FileFacts {
    /// A file whose digest the state cache vouched for, and nothing else.
    pub fn known(digest: Digest) -> Self {
        FileFacts {
            digest: FileDigest::Content(digest),
            scan: None,
            text: None,
            fresh: None,
        }
    }

    fn unreadable(problem: ReadProblem) -> Self {
        FileFacts {
            digest: FileDigest::Unreadable(problem),
            scan: None,
            text: None,
            fresh: None,
        }
    }
}

/// The digest of `rel` when the state cache vouches for it (its stamp is
/// unchanged), without reading the file.
pub fn known_digest(absolute: &Path, rel: &str, state: &StateCache) -> Option<Digest> {
    let meta = std::fs::metadata(absolute).ok()?;
    if !meta.is_file() {
        return None;
    }
    state.digest(rel, &FileStamp::of(&meta))
}

/// Digest (and scan, and text, as `needs` says) of the file `rel` at `absolute`.
pub fn read_facts(absolute: &Path, rel: &str, needs: Needs, state: &StateCache) -> FileFacts {
    let meta = match std::fs::metadata(absolute) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return FileFacts {
                digest: FileDigest::Absent,
                scan: None,
                text: None,
                fresh: None,
            }
        }
        Err(err) => return FileFacts::unreadable(ReadProblem::Io(err.to_string())),
    };
    if !meta.is_file() {
        return FileFacts::unreadable(ReadProblem::NotAFile);
    }
    let stamp = FileStamp::of(&meta);
    if !needs.text {
        if let Some(digest) = state.digest(rel, &stamp) {
            let cached_scan = if needs.imports {
                state.scan(&digest)
            } else {
                None
            };
            if !needs.imports || cached_scan.is_some() {
                return FileFacts {
                    digest: FileDigest::Content(digest),
                    scan: cached_scan,
                    text: None,
                    fresh: None,
                };
            }
        }
    }
    let bytes = match read_all(absolute, meta.len()) {
        Ok(bytes) => bytes,
        Err(err) => return FileFacts::unreadable(ReadProblem::Io(err.to_string())),
    };
    let digest = Digest::of(&bytes);
    let scan = needs.imports.then(|| {
        state
            .scan(&digest)
            .unwrap_or_else(|| Arc::new(scan(&bytes)))
    });
    FileFacts {
        digest: FileDigest::Content(digest),
        scan,
        text: needs.text.then(|| Arc::new(bytes)),
        fresh: Some((stamp, digest)),
    }
}

fn read_all(path: &Path, size_hint: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0).saturating_add(1));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
