//! The functions of the files delimited in this process, by content: the
//! analysis delimits the files of a test file's closure to key it, and the
//! profiler then names what runs in the same files; each content is parsed
//! once per process. The state cache keeps them across runs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::{FunctionIndex, FunctionsOutcome};
use crate::files::Digest;

static RECENT: LazyLock<Mutex<HashMap<Digest, FunctionsOutcome>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn recent() -> std::sync::MutexGuard<'static, HashMap<Digest, FunctionsOutcome>> {
    RECENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers what delimiting the content whose digest is `digest` gave.
pub fn remember(digest: Digest, outcome: &FunctionsOutcome) {
    recent().entry(digest).or_insert_with(|| outcome.clone());
}

/// The functions of `source`, parsed unless this process saw its content.
pub fn index(source: &[u8]) -> FunctionsOutcome {
    let digest = Digest::of(source);
    if let Some(known) = recent().get(&digest) {
        return known.clone();
    }
    let outcome = FunctionIndex::parse(source).map(Arc::new);
    remember(digest, &outcome);
    outcome
}
