//! Buffers the small writes that reads cause, so a query costs no write:
//! which entries were read (for retention) and per-user usage counters.
//! A background task flushes both every few seconds and once more at
//! shutdown; a crash loses at most one interval of these counters, never
//! a published result.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::store::{FileKey, Store, StoreError, UsageDelta};

#[derive(Default)]
pub struct Tracker {
    reads: Mutex<HashSet<(String, FileKey)>>,
    usage: Mutex<HashMap<i64, UsageDelta>>,
    /// Held for a whole flush, so a reader who flushes first (the usage
    /// endpoint) also waits for a background flush already writing.
    flushing: tokio::sync::Mutex<()>,
}

impl Tracker {
    pub fn read(&self, tenant: &str, hash: FileKey) {
        if let Ok(mut reads) = self.reads.lock() {
            reads.insert((tenant.to_string(), hash));
        }
    }

    pub fn usage(&self, user_id: i64, delta: UsageDelta) {
        if let Ok(mut usage) = self.usage.lock() {
            let u = usage.entry(user_id).or_default();
            u.requests += delta.requests;
            u.queried_hashes += delta.queried_hashes;
            u.hits += delta.hits;
            u.published_ids += delta.published_ids;
        }
    }

    /// Writes what was buffered; on failure the buffers are lost (logged by the caller).
    pub async fn flush(&self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let reads: Vec<_> = self
            .reads
            .lock()
            .map(|mut r| r.drain().collect())
            .unwrap_or_default();
        let usage: Vec<_> = self
            .usage
            .lock()
            .map(|mut u| u.drain().collect())
            .unwrap_or_default();
        if !reads.is_empty() {
            store.touch(reads, now).await?;
        }
        if !usage.is_empty() {
            store.add_usage(usage, now).await?;
        }
        Ok(())
    }
}
