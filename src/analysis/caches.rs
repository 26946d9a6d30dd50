//! The caches under `.dryci/` for one run, loaded and saved here and nowhere
//! else: where they live, loading them, writing what a run learned, and
//! replaying a run from the hash memo.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::files::envelope::write_atomically;
use crate::files::state::{FileStamp, StateCache};
use crate::files::{read_facts, Digest, FileDigest, Needs};
use crate::functions::FunctionsOutcome;
use crate::graph::visit_cache::{Derived, VisitCache};
use crate::graph::DepGraph;
use crate::hash::memo::{self, InputHash, Memo};
use crate::imports::scan::ScanResult;
use crate::walk::{FileId, RepoIndex};

use super::{HashRun, InputResult, Prepared, Request, StateCacheMode};

/// The per-file state cache (stamps, digests, scans).
pub(super) fn load_state(mode: &StateCacheMode, root: &Path) -> StateCache {
    match mode {
        StateCacheMode::Default => StateCache::load(&root.join(".dryci").join("state-v1.bin")),
        StateCacheMode::At(path) => StateCache::load(path),
        StateCacheMode::Off => StateCache::disabled(),
    }
}

/// The dependency hashes remembered from recent runs.
pub(super) fn load_memo(mode: &StateCacheMode, root: &Path) -> Memo {
    match cache_path(mode, root, "hashes") {
        Some(path) => Memo::load(&path),
        None => Memo::disabled(),
    }
}

/// What each file's visit derived, for files whose content and `context` did not change.
pub(super) fn load_visits(
    mode: &StateCacheMode,
    root: &Path,
    context: [u8; 32],
    index: &RepoIndex,
) -> VisitCache {
    match cache_path(mode, root, "visits") {
        Some(path) => VisitCache::load(&path, context, index),
        None => VisitCache::disabled(),
    }
}

/// The memo's answer, when every file its slot was computed from still
/// has the same content (read again if its stamp changed).
pub(super) fn remembered_run(
    request: &Request,
    prepared: &Prepared,
    key: &[u8; 32],
) -> Option<HashRun> {
    let started = Instant::now();
    let slot = prepared.memo.find(key, &prepared.index)?;
    let index = &prepared.index;
    let fresh: Vec<Option<(String, FileStamp, Digest)>> = slot
        .files
        .par_iter()
        .map(|(id, digest)| {
            let rel = index.path(*id);
            let facts = read_facts(&index.absolute(*id), rel, Needs::default(), &prepared.state);
            match facts.digest {
                FileDigest::Content(now) if now == *digest => {
                    Ok(facts.fresh.map(|(stamp, d)| (rel.to_string(), stamp, d)))
                }
                _ => Err(()),
            }
        })
        .collect::<Result<_, ()>>()
        .ok()?;
    let mut warnings = prepared.index.warnings.clone();
    warnings.extend(prepared.state.load_warning());
    warnings.extend(slot.warnings.iter().cloned());
    let fresh: Vec<_> = fresh.into_iter().flatten().collect();
    let mut timings = prepared.timings;
    timings.hashes = started.elapsed();
    if request.state_cache != StateCacheMode::Off && !fresh.is_empty() {
        // Files touched without a change: remember their new stamps.
        if let Err(err) = save_state(
            &prepared.state,
            &prepared.config.root,
            fresh,
            Vec::new(),
            Vec::new(),
        ) {
            warnings.push(format!("cannot write the state cache: {err}"));
        }
    }
    Some(HashRun {
        config: prepared.config.clone(),
        inputs: slot.inputs.clone(),
        node_count: slot.node_count,
        warnings,
        files_indexed: prepared.index.len(),
        timings,
        remembered: true,
        files: slot
            .files
            .iter()
            .map(|(id, digest)| (index.path(*id).to_string(), *digest))
            .collect(),
    })
}

/// What a run learned of files, for the state cache: the files read with
/// their stamp and digest, their scanned imports, their delimited functions.
pub(super) struct LearnedFiles {
    pub fresh: Vec<(String, FileStamp, Digest)>,
    pub scans: Vec<(Digest, Arc<ScanResult>)>,
    pub functions: Vec<(Digest, FunctionsOutcome)>,
}

/// Writes the state cache and the visit cache with what this run learned;
/// returns a warning for each that could not be written.
pub(super) fn save_learned(
    root: &Path,
    index: &RepoIndex,
    state: &StateCache,
    files: LearnedFiles,
    visit_cache: &VisitCache,
    fresh_visits: Vec<(FileId, Digest, Arc<Derived>)>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !files.fresh.is_empty() || !files.functions.is_empty() {
        if let Err(err) = save_state(state, root, files.fresh, files.scans, files.functions) {
            warnings.push(format!("cannot write the state cache: {err}"));
        }
    }
    if !fresh_visits.is_empty() {
        let saved = ignored_cache_dir(root).and_then(|()| visit_cache.save(index, fresh_visits));
        if let Err(err) = saved {
            warnings.push(format!("cannot write the visit cache: {err}"));
        }
    }
    warnings
}

/// Records this run's hashes in the memo, unless a file of the graph could
/// not be read (such a run must never be replayed).
pub(super) fn remember(
    memo: &Memo,
    key: [u8; 32],
    graph: &DepGraph,
    index: &RepoIndex,
    inputs: &[InputResult],
) -> std::io::Result<()> {
    let mut files = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        match (index.id(&node.path), &node.digest) {
            (Some(id), FileDigest::Content(digest)) => files.push((id, *digest)),
            // A name the layout says does not exist: the key covers it.
            (None, FileDigest::Absent) => {}
            _ => return Ok(()),
        }
    }
    let slot = memo::Slot::new(
        key,
        files,
        inputs.iter().map(InputHash::from).collect(),
        graph.warnings.clone(),
        graph.nodes.len(),
    );
    memo.save(slot)
}

/// DryCI's other cache files (`visits`, `hashes`) live next to the state cache.
fn cache_path(mode: &StateCacheMode, root: &Path, name: &str) -> Option<PathBuf> {
    match mode {
        StateCacheMode::Default => Some(root.join(".dryci").join(format!("{name}-v1.bin"))),
        StateCacheMode::At(state) => {
            let mut file = state.file_name()?.to_os_string();
            file.push(format!(".{name}"));
            Some(state.with_file_name(file))
        }
        StateCacheMode::Off => None,
    }
}

fn save_state(
    state: &StateCache,
    root: &Path,
    fresh: Vec<(String, FileStamp, Digest)>,
    scans: Vec<(Digest, Arc<ScanResult>)>,
    functions: Vec<(Digest, FunctionsOutcome)>,
) -> std::io::Result<()> {
    ignored_cache_dir(root)?;
    state.save_with_functions(fresh, scans, functions)
}

/// Creates `.dryci/` with a `.gitignore`: like pytest's cache folder, it is
/// never committed by accident.
pub(super) fn ignored_cache_dir(root: &Path) -> std::io::Result<()> {
    let ignore = root.join(".dryci").join(".gitignore");
    if !ignore.exists() {
        write_atomically(&ignore, b"# created by dryci\n*\n")?;
    }
    Ok(())
}
