//! The persistent per-file state cache: (size, mtime, ctime, inode) -> content
//! digest, content digest -> scanned imports, and content digest -> delimited
//! functions (or why they could not be). It makes a no-change re-run nearly
//! free. Like git's index it distrusts "racily clean" entries: a file
//! whose timestamps are within `RACY_WINDOW` of the moment the cache is
//! written may still change without its stamp changing, so it is not stored.
//! Concurrent runs are safe: the file is replaced atomically, last writer wins,
//! and a corrupt or foreign file is ignored (the cache starts afresh).

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::functions::{FunctionIndex, FunctionsError, FunctionsOutcome};
use crate::imports::scan::{ImportKind, ImportRef, ModuleString, ScanFallback, ScanResult};

use super::envelope::{decode_body, Body, Envelope};
use super::Digest;

/// The version is bumped whenever the format, the scanner's output or the
/// functions' delimitation changes (2: the functions were added).
const FILE: Envelope = Envelope {
    magic: b"DRYCIst\0",
    version: 2,
};
/// Timestamps closer than this to the write time are not trusted.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The metadata that must be unchanged for a cached digest to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileStamp {
                size: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                inode: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let nanos = |t: std::io::Result<SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128)
            };
            FileStamp {
                size: meta.len(),
                mtime_ns: nanos(meta.modified()),
                ctime_ns: nanos(meta.created()),
                inode: 0,
            }
        }
    }

    fn is_racy(&self, written_at_ns: i128) -> bool {
        let window = RACY_WINDOW.as_nanos() as i128;
        self.mtime_ns.max(self.ctime_ns) >= written_at_ns - window
    }
}

#[derive(Debug, Default)]
pub struct StateCache {
    path: Option<PathBuf>,
    files: HashMap<String, (FileStamp, Digest)>,
    /// Scans and functions, decoded on first use: a re-run replayed from the
    /// hash memo needs only `files`, and decoding every file's scanned
    /// imports cost such a run on Django's sdist 6 of its 47 ms of CPU (much
    /// of it the kernel zeroing the pages they filled).
    analyses: LazyAnalyses,
    /// Why the stored cache was not used, if it was not.
    load_warning: Option<String>,
}

/// What the cache knows by content digest.
#[derive(Debug, Default)]
struct Analyses {
    scans: HashMap<Digest, Arc<ScanResult>>,
    functions: HashMap<Digest, FunctionsOutcome>,
    /// Why the stored analyses could not be decoded, if they could not.
    decode_warning: Option<String>,
}

/// The stored analyses as postcard bytes (`body` from `at`) until first needed.
#[derive(Debug, Default)]
struct LazyAnalyses {
    body: Body,
    at: usize,
    decoded: OnceLock<Analyses>,
}

impl LazyAnalyses {
    fn get(&self) -> &Analyses {
        self.decoded.get_or_init(|| {
            let Some(encoded) = self.body.bytes().get(self.at..).filter(|b| !b.is_empty()) else {
                return Analyses::default();
            };
            match decode_body::<StoredAnalyses>(encoded) {
                Ok(stored) => Analyses {
                    scans: stored
                        .scans
                        .into_iter()
                        .map(|(d, s)| (d, Arc::new(s.into())))
                        .collect(),
                    functions: stored.functions.into_iter().collect(),
                    decode_warning: None,
                },
                // Its checksum held, so only a bug gets here: scans and
                // functions are recomputed, as for a file never seen.
                Err(reason) => Analyses {
                    decode_warning: Some(format!("state cache: {reason}; scanning afresh")),
                    ..Analyses::default()
                },
            }
        })
    }
}

impl StateCache {
    /// A cache that remembers nothing (no file).
    pub fn disabled() -> Self {
        StateCache::default()
    }

    /// Loads the cache at `path`; a missing file is an empty cache, a corrupt
    /// one a warning. Only the stamps are decoded here (see `analyses`).
    pub fn load(path: &Path) -> Self {
        let mut cache = StateCache {
            path: Some(path.to_path_buf()),
            ..StateCache::default()
        };
        let body = match FILE.load_body(path) {
            Ok(Some(body)) => body,
            Ok(None) => return cache,
            Err(warning) => {
                cache.load_warning = Some(warning);
                return cache;
            }
        };
        match postcard::take_from_bytes::<Vec<(String, FileStamp, Digest)>>(body.bytes()) {
            Ok((files, rest)) => {
                cache.files = files.into_iter().map(|(p, s, d)| (p, (s, d))).collect();
                let at = body.bytes().len() - rest.len();
                cache.analyses = LazyAnalyses {
                    body,
                    at,
                    decoded: OnceLock::new(),
                };
            }
            Err(err) => {
                cache.load_warning = Some(format!(
                    "{}: cannot decode: {err}; starting afresh",
                    path.display()
                ))
            }
        }
        cache
    }

    /// Why the stored cache, or the part of it used so far, was not used.
    pub fn load_warning(&self) -> Option<String> {
        let decoded = self.analyses.decoded.get();
        self.load_warning
            .clone()
            .or_else(|| decoded.and_then(|a| a.decode_warning.clone()))
    }

    pub fn digest(&self, rel: &str, stamp: &FileStamp) -> Option<Digest> {
        self.files
            .get(rel)
            .filter(|(stored, _)| stored == stamp)
            .map(|(_, digest)| *digest)
    }

    pub fn scan(&self, digest: &Digest) -> Option<Arc<ScanResult>> {
        self.analyses.get().scans.get(digest).cloned()
    }

    /// The functions of the file whose content has `digest`, as
    /// `FunctionIndex::parse` gave them (an `Err` is remembered too, so an
    /// unparseable file is not parsed again).
    pub fn functions(&self, digest: &Digest) -> Option<FunctionsOutcome> {
        self.analyses.get().functions.get(digest).cloned()
    }

    /// Records what this run learned (`fresh`: files read this run with their
    /// stamp and digest; `scans`: their scanned imports) and writes the cache
    /// atomically.
    pub fn save(
        &self,
        fresh: impl IntoIterator<Item = (String, FileStamp, Digest)>,
        scans: impl IntoIterator<Item = (Digest, Arc<ScanResult>)>,
    ) -> std::io::Result<()> {
        self.save_with_functions(fresh, scans, std::iter::empty())
    }

    /// `save`, with the functions delimited this run (`functions`: by content
    /// digest). Errors that are not about the source (a parser failure) are
    /// not remembered.
    pub fn save_with_functions(
        &self,
        fresh: impl IntoIterator<Item = (String, FileStamp, Digest)>,
        scans: impl IntoIterator<Item = (Digest, Arc<ScanResult>)>,
        functions: impl IntoIterator<Item = (Digest, FunctionsOutcome)>,
    ) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        // Borrowed views of the old entries and the new ones: nothing is cloned.
        let fresh: HashMap<String, (FileStamp, Digest)> = fresh
            .into_iter()
            .map(|(rel, stamp, digest)| (rel, (stamp, digest)))
            .collect();
        let kept = self
            .files
            .iter()
            .filter(|(rel, _)| !fresh.contains_key(*rel))
            .chain(fresh.iter().filter(|(_, (stamp, _))| !stamp.is_racy(now)));
        let files: Vec<(&str, &FileStamp, &Digest)> = kept
            .map(|(rel, (stamp, digest))| (rel.as_str(), stamp, digest))
            .collect();
        // Keep only scans and functions of digests still referenced, so the
        // file does not grow forever.
        let live: std::collections::HashSet<&Digest> = files.iter().map(|(_, _, d)| *d).collect();
        let analyses = self.analyses.get();
        let new_scans: HashMap<Digest, Arc<ScanResult>> = scans.into_iter().collect();
        let scans = analyses
            .scans
            .iter()
            .filter(|(digest, _)| !new_scans.contains_key(*digest))
            .chain(new_scans.iter())
            .filter(|(digest, _)| live.contains(digest))
            .map(|(digest, scan)| (digest, StoredScanRef::from(scan.as_ref())))
            .collect();
        let new_functions: HashMap<Digest, FunctionsOutcome> = functions.into_iter().collect();
        let functions = analyses
            .functions
            .iter()
            .filter(|(digest, _)| !new_functions.contains_key(*digest))
            .chain(new_functions.iter())
            .filter(|(digest, outcome)| {
                live.contains(digest)
                    && outcome
                        .as_ref()
                        .err()
                        .is_none_or(FunctionsError::is_about_the_source)
            })
            .map(|(digest, outcome)| (digest, outcome.as_deref()))
            .collect();
        FILE.save(
            path,
            &StoredRef {
                files,
                scans,
                functions,
            },
        )
    }
}

/// The cache as written. postcard writes a struct as its fields one after
/// the other, so this reads back as the files (decoded on load) followed by
/// `StoredAnalyses` (decoded when first needed).
#[derive(Serialize)]
struct StoredRef<'a> {
    files: Vec<(&'a str, &'a FileStamp, &'a Digest)>,
    scans: Vec<(&'a Digest, StoredScanRef<'a>)>,
    functions: Vec<(&'a Digest, Result<&'a FunctionIndex, &'a FunctionsError>)>,
}

#[derive(Serialize)]
struct StoredScanRef<'a> {
    imports: Vec<(&'a str, u32, &'a [String], u32, u8)>,
    strings: Vec<(&'a str, u32)>,
    fallback: Option<(u32, &'a str)>,
}

/// The part of `StoredRef` after the files.
#[derive(Deserialize)]
struct StoredAnalyses {
    scans: Vec<(Digest, StoredScan)>,
    functions: Vec<(Digest, FunctionsOutcome)>,
}

/// ScanResult in a serializable form (the scanner's types stay serde-free).
#[derive(Deserialize)]
struct StoredScan {
    imports: Vec<(String, u32, Vec<String>, u32, u8)>,
    strings: Vec<(String, u32)>,
    fallback: Option<(u32, String)>,
}

impl<'a> From<&'a ScanResult> for StoredScanRef<'a> {
    fn from(scan: &'a ScanResult) -> Self {
        StoredScanRef {
            imports: scan
                .imports
                .iter()
                .map(|i| {
                    let kind = match i.kind {
                        ImportKind::Import => 0,
                        ImportKind::From => 1,
                        ImportKind::Dynamic => 2,
                    };
                    (i.module.as_str(), i.level, i.names.as_slice(), i.line, kind)
                })
                .collect(),
            strings: scan
                .module_strings
                .iter()
                .map(|s| (s.value.as_str(), s.line))
                .collect(),
            fallback: scan.fallback.as_ref().map(|f| (f.line, f.reason.as_str())),
        }
    }
}

impl From<StoredScan> for ScanResult {
    fn from(stored: StoredScan) -> Self {
        ScanResult {
            imports: stored
                .imports
                .into_iter()
                .map(|(module, level, names, line, kind)| ImportRef {
                    module,
                    level,
                    names,
                    line,
                    kind: match kind {
                        0 => ImportKind::Import,
                        1 => ImportKind::From,
                        _ => ImportKind::Dynamic,
                    },
                })
                .collect(),
            module_strings: stored
                .strings
                .into_iter()
                .map(|(value, line)| ModuleString { value, line })
                .collect(),
            fallback: stored
                .fallback
                .map(|(line, reason)| ScanFallback { line, reason }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_s: i128) -> FileStamp {
        FileStamp {
            size: 1,
            mtime_ns: mtime_s * 1_000_000_000,
            ctime_ns: mtime_s * 1_000_000_000,
            inode: 7,
        }
    }

    #[test]
    fn round_trip_and_racy_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let cache = StateCache::load(&path);
        assert!(cache.load_warning().is_none());
        let old = stamp(1_000_000);
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i128;
        let racy = stamp(now_s);
        let scan = Arc::new(ScanResult::default());
        let d1 = Digest::of(b"one");
        let d2 = Digest::of(b"two");
        cache
            .save(
                vec![("a.py".into(), old, d1), ("b.py".into(), racy, d2)],
                vec![(d1, scan)],
            )
            .unwrap();
        let loaded = StateCache::load(&path);
        assert_eq!(loaded.digest("a.py", &old), Some(d1));
        assert_eq!(
            loaded.digest("b.py", &racy),
            None,
            "racily clean entry must not be trusted"
        );
        assert!(loaded.scan(&d1).is_some());
        assert_eq!(loaded.digest("a.py", &stamp(1_000_001)), None);
    }

    #[test]
    fn functions_round_trip_while_their_digest_is_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let source = b"import os\n\nclass A:\n    @property\n    def x(self):\n        return 1\n";
        let index = Arc::new(FunctionIndex::parse(source).unwrap());
        let (parsed, broken, unreferenced, parser_failed) = (
            Digest::of(source),
            Digest::of(b"def f(:\n"),
            Digest::of(b"gone"),
            Digest::of(b"parser"),
        );
        let syntax = FunctionsError::Syntax { line: 1 };
        StateCache::load(&path)
            .save_with_functions(
                vec![
                    ("a.py".into(), stamp(10), parsed),
                    ("b.py".into(), stamp(10), broken),
                    ("c.py".into(), stamp(10), parser_failed),
                ],
                vec![],
                vec![
                    (parsed, Ok(index.clone())),
                    (broken, Err(syntax.clone())),
                    (unreferenced, Ok(index.clone())),
                    (parser_failed, Err(FunctionsError::Parser("test".into()))),
                ],
            )
            .unwrap();
        let loaded = StateCache::load(&path);
        assert!(loaded.load_warning().is_none());
        let found = loaded.functions(&parsed).unwrap().unwrap();
        assert_eq!(*found, *index);
        assert_eq!(found.function_at(5), Some("A.x"));
        assert_eq!(loaded.functions(&broken), Some(Err(syntax)));
        assert_eq!(loaded.functions(&unreferenced), None, "no file has it");
        assert_eq!(
            loaded.functions(&parser_failed),
            None,
            "a parser failure is not the file's"
        );

        // A save without functions keeps those still referenced.
        loaded
            .save(
                vec![("b.py".into(), stamp(11), Digest::of(b"fixed"))],
                vec![],
            )
            .unwrap();
        let loaded = StateCache::load(&path);
        assert!(loaded.functions(&parsed).is_some());
        assert_eq!(loaded.functions(&broken), None, "b.py changed");
    }

    #[test]
    fn stamps_are_answered_without_decoding_the_scans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let digest = Digest::of(b"import os\n");
        let scan = Arc::new(ScanResult {
            imports: vec![ImportRef {
                module: "os".into(),
                level: 0,
                names: vec![],
                line: 1,
                kind: ImportKind::Import,
            }],
            ..ScanResult::default()
        });
        StateCache::load(&path)
            .save(
                vec![("a.py".into(), stamp(5), digest)],
                vec![(digest, scan)],
            )
            .unwrap();
        let loaded = StateCache::load(&path);
        assert_eq!(loaded.digest("a.py", &stamp(5)), Some(digest));
        assert!(loaded.analyses.decoded.get().is_none(), "decoded too early");
        let found = loaded.scan(&digest).unwrap();
        assert_eq!(found.imports[0].module, "os");
        assert!(loaded.load_warning().is_none());
    }

    #[test]
    fn corrupt_cache_starts_afresh_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let cache = StateCache::load(&path);
        cache
            .save(vec![("a.py".into(), stamp(5), Digest::of(b"x"))], vec![])
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let loaded = StateCache::load(&path);
        assert!(loaded.load_warning().unwrap().contains("checksum"));
        assert_eq!(loaded.digest("a.py", &stamp(5)), None);
    }
}
