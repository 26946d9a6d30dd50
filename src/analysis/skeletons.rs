//! Under function-level keys, what each Python file of the graph
//! contributes to the hashes: its module-level code (`crate::functions`),
//! the bodies of its functions being left to each test's record of what it
//! ran. A file keyed whole instead: one imported before the plugin could
//! watch (its functions may have run unseen), one whose functions cannot be
//! delimited, one that changed since it was hashed, and every other file.

use std::collections::HashSet;
use std::path::Path;

use rayon::prelude::*;

use crate::files::state::StateCache;
use crate::files::{Digest, FileDigest};
use crate::functions::{recent, FunctionsOutcome};
use crate::graph::DepGraph;
use crate::walk::relative;

use super::FunctionLevel;

/// What `skeletons` found: node id -> the digest of its module-level code
/// (None where the node is keyed by its whole content), and the functions
/// delimited this run, for the state cache.
pub(super) struct Skeletons {
    pub digests: Vec<Option<Digest>>,
    pub fresh: Vec<(Digest, FunctionsOutcome)>,
}

pub(super) fn skeletons(
    root: &Path,
    graph: &DepGraph,
    state: &StateCache,
    level: &FunctionLevel,
) -> Skeletons {
    let whole: HashSet<String> = level
        .whole_files
        .iter()
        .filter_map(|path| {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            relative(root, &path)
        })
        .collect();
    // Per node: its skeleton, and its functions when delimited this run.
    type Found = (Option<Digest>, Option<(Digest, FunctionsOutcome)>);
    let found: Vec<Found> = graph
        .nodes
        .par_iter()
        .map(|node| {
            if !node.path.ends_with(".py") || whole.contains(&node.path) {
                return (None, None);
            }
            let FileDigest::Content(digest) = node.digest else {
                return (None, None);
            };
            if let Some(known) = state.functions(&digest) {
                recent::remember(digest, &known);
                return (known.ok().map(|index| index.skeleton), None);
            }
            let Ok(bytes) = std::fs::read(root.join(&node.path)) else {
                return (None, None);
            };
            if Digest::of(&bytes) != digest {
                return (None, None); // changed since it was hashed
            }
            let outcome = recent::index(&bytes);
            let skeleton = outcome.as_ref().ok().map(|index| index.skeleton);
            (skeleton, Some((digest, outcome)))
        })
        .collect();
    let mut skeletons = Skeletons {
        digests: Vec::with_capacity(found.len()),
        fresh: Vec::new(),
    };
    for (digest, fresh) in found {
        skeletons.digests.push(digest);
        skeletons.fresh.extend(fresh);
    }
    skeletons
}
