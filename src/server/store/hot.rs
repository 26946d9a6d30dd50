//! A bounded in-memory cache of recently read entries, in front of a store.
//! It wraps the results side (`ResultStore`) and passes accounts through.
//!
//! CI asks for the same hashes again and again: every job of a commit,
//! every re-run, every branch asks for the hashes of the files it did not
//! change, which are those of main. Answering them from memory saves the
//! B-tree descent and the page read that make up most of a query's cost
//! (with a million entries the file does not fit the memory budget, so a
//! read from SQLite is a `pread` of a leaf page).
//!
//! Consistency: every write goes through this wrapper in this process
//! (which is why the server enables it by default for SQLite only: replicas
//! sharing PostgreSQL do not see each other's writes). A publish drops the
//! keys it wrote and an eviction drops everything, after they commit. A
//! query that read the store *before* such a commit could put back what it
//! read just after the drop; the generation counter, bumped by every write
//! between its commit and its drop, tells that query to take back what it
//! cached. A stale entry would only ever miss ids (a test re-runs), never
//! add one: entries are facts about file keys, and ids are only added to them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::Cache;

use super::{
    AccountStore, Entry, FileKey, NewToken, Published, Result, ResultStore, Store, StoreError,
    StoreStats, StoredId, TokenAuth, TokenRow, UsageDelta, UsageRow, UserRow,
};

/// A tenant's name interned to a small number: keys stay small and cheap
/// to hash. Tenants come from tokens, so there are few of them.
type Key = (u32, FileKey);

/// What one cached entry costs in memory: its ids plus the key, the
/// cache's bookkeeping and the `Arc` header, rounded up.
fn weight(ids: usize) -> u64 {
    128 + (ids * std::mem::size_of::<StoredId>()) as u64
}

/// What an entry's requirements add: the sets' bytes, and per set and per
/// test its record and `Arc` header.
fn requirements_weight(entry: &Entry) -> u64 {
    entry.requirements.as_deref().map_or(0, |r| {
        (r.set_bytes() + 64 * r.sets.len() + 20 * r.tests.len()) as u64
    })
}

#[derive(Clone)]
struct Weighter;

impl quick_cache::Weighter<Key, Entry> for Weighter {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        weight(entry.ids.len()) + requirements_weight(entry)
    }
}

/// Remembers which keys missed recently; an entry is cached on its second
/// miss only (TinyLFU's doorkeeper). Without it, lookups with no locality
/// (a job on an old commit, or the uniform benchmark) made every miss an
/// insert that evicted an entry still useful: 18% more CPU per query and
/// 40 MB more memory, for a hit rate near zero.
struct Doorkeeper {
    seen: Vec<AtomicU32>,
}

/// Slots of the doorkeeper (1 MiB): a key is forgotten after about 260,000
/// other misses. A quarter of that let in fewer random keys but also lost
/// more of the working set (5,000-5,300 against 5,600-6,200 queries/s on
/// the benchmark's working set, same uniform figures).
const DOORKEEPER_SLOTS: usize = 1 << 18;

impl Doorkeeper {
    fn new() -> Self {
        Self {
            seen: (0..DOORKEEPER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Records a miss of `key`; true if it missed recently already.
    fn missed_again(&self, key: &Key) -> bool {
        // Hashes are digests: their bytes past the slot's are as good as random.
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&key.1[8..16]);
        let bits = u64::from_le_bytes(bits) ^ u64::from(key.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = &self.seen[bits as usize % DOORKEEPER_SLOTS];
        let fingerprint = (bits >> 32) as u32 | 1;
        slot.swap(fingerprint, Ordering::Relaxed) == fingerprint
    }
}

pub struct HotCache {
    inner: Arc<dyn Store>,
    entries: Cache<Key, Entry, Weighter>,
    doorkeeper: Doorkeeper,
    tenants: RwLock<HashMap<String, u32>>,
    /// Bumped by every write that changes ids, between its commit and the
    /// moment it drops what it changed from `entries`.
    generation: AtomicU64,
    /// Queried hashes answered from memory.
    served: Counter,
}

impl HotCache {
    /// Wraps `inner` with a cache of at most `max_bytes` of entries.
    pub fn new(inner: Arc<dyn Store>, max_bytes: u64, served: Counter) -> Self {
        let estimated_items = (max_bytes / weight(TYPICAL_IDS)).max(16) as usize;
        Self {
            inner,
            entries: Cache::with_weighter(estimated_items, max_bytes, Weighter),
            doorkeeper: Doorkeeper::new(),
            tenants: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            served,
        }
    }

    fn tenant_key(&self, tenant: &str) -> u32 {
        if let Ok(Some(id)) = self.tenants.read().map(|t| t.get(tenant).copied()) {
            return id;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let next = tenants.len() as u32;
        *tenants.entry(tenant.to_string()).or_insert(next)
    }

    /// Drops `keys` after a write that changed them has committed.
    fn written(&self, keys: impl IntoIterator<Item = Key>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for key in keys {
            self.entries.remove(&key);
        }
    }

    /// Moves the read time of the cached copy of `key`, if any, to `now`.
    /// Under the shard's lock: a copy put back by a query after a publish
    /// is updated, never replaced by an older one.
    fn refresh_read_time(&self, key: &Key, now: i64) {
        if !self.entries.contains_key(key) {
            return; // most keys read are not cached: skip the write lock
        }
        // A zero timeout: a key being loaded elsewhere is left alone; and
        // the placeholder made for a key gone since is dropped unfilled.
        let _ = self
            .entries
            .entry(key, Some(std::time::Duration::ZERO), |_, entry| {
                entry.last_read_at = entry.last_read_at.max(now);
                quick_cache::sync::EntryAction::Retain(())
            });
    }

    /// Answers from memory what it can and asks `fetch` for the rest (the
    /// inner store; tests pass a fetch that lets a write commit midway).
    async fn query_through<F, Fut>(
        &self,
        tenant: &str,
        hashes: &[FileKey],
        max_ids: usize,
        fetch: F,
    ) -> Result<Vec<Option<Entry>>>
    where
        F: FnOnce(Vec<FileKey>, usize) -> Fut,
        Fut: Future<Output = Result<Vec<Option<Entry>>>>,
    {
        let tenant_key = self.tenant_key(tenant);
        let mut answers = Vec::with_capacity(hashes.len());
        let mut missing = Vec::new();
        for (i, hash) in hashes.iter().enumerate() {
            let cached = self.entries.get(&(tenant_key, *hash));
            if cached.is_none() {
                missing.push(i);
            }
            answers.push(cached);
        }
        // The cached entries are shared, not copied, but they count
        // towards the answer's ids all the same.
        let cached_ids: usize = answers.iter().flatten().map(|e| e.ids.len()).sum();
        if cached_ids > max_ids {
            return Err(StoreError::TooManyIds {
                at_least: cached_ids,
                max: max_ids,
            });
        }
        self.served.inc_by((hashes.len() - missing.len()) as u64);
        if missing.is_empty() {
            return Ok(answers);
        }
        // Read before the store is read: a write committing after this
        // point bumps it before dropping keys, and this query then takes
        // back what it cached, which might predate that write.
        let generation = self.generation.load(Ordering::SeqCst);
        let found = fetch(
            missing.iter().map(|&i| hashes[i]).collect(),
            max_ids - cached_ids,
        )
        .await
        .map_err(|e| match e {
            StoreError::TooManyIds { at_least, .. } => StoreError::TooManyIds {
                at_least: at_least + cached_ids,
                max: max_ids,
            },
            other => other,
        })?;
        let mut cached = Vec::new();
        for (&i, entry) in missing.iter().zip(found) {
            let key = (tenant_key, hashes[i]);
            if let Some(entry) = entry
                .as_ref()
                .filter(|_| self.doorkeeper.missed_again(&key))
            {
                self.entries.insert(key, entry.clone());
                cached.push(key);
            }
            answers[i] = entry;
        }
        if self.generation.load(Ordering::SeqCst) != generation {
            for key in &cached {
                self.entries.remove(key);
            }
        }
        Ok(answers)
    }
}

/// Sizes the cache's index for entries of about ten ids.
const TYPICAL_IDS: usize = 10;

#[async_trait::async_trait]
impl ResultStore for HotCache {
    async fn query(
        &self,
        tenant: &str,
        keys: &[FileKey],
        max_ids: usize,
    ) -> Result<Vec<Option<Entry>>> {
        self.query_through(tenant, keys, max_ids, |missing, max_ids| async move {
            self.inner.query(tenant, &missing, max_ids).await
        })
        .await
    }

    async fn publish(
        &self,
        tenant: &str,
        batch: Vec<(FileKey, Published)>,
        max_ids: usize,
        now: i64,
    ) -> Result<u64> {
        let tenant_key = self.tenant_key(tenant);
        let keys: Vec<Key> = batch.iter().map(|(key, _)| (tenant_key, *key)).collect();
        let published = self.inner.publish(tenant, batch, max_ids, now).await;
        // Also on error: the commit may have happened before the failure.
        self.written(keys);
        published
    }

    async fn touch(&self, reads: Vec<(String, FileKey)>, now: i64) -> Result<()> {
        let keys: Vec<Key> = reads
            .iter()
            .map(|(tenant, key)| (self.tenant_key(tenant), *key))
            .collect();
        let touched = self.inner.touch(reads, now).await;
        // Cached copies hold the old read time; without a new one the
        // handler would record every read of them again. The copy is
        // updated in place, not dropped: a touch changes no id, and with a
        // short --touch-granularity-secs every flush touches every entry
        // read since the last one, so dropping them emptied this cache of
        // its hot entries every flush interval.
        if touched.is_ok() {
            for key in keys {
                self.refresh_read_time(&key, now);
            }
        }
        touched
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }

    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) -> Result<u64> {
        let evicted = self.inner.evict(read_before, max_bytes).await;
        if !matches!(evicted, Ok(0)) {
            // Which keys went is not known here; start over.
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.entries.clear();
        }
        evicted
    }
}

/// Accounts pass straight through: they are read once per request, by
/// token, and nothing here would make that cheaper.
#[async_trait::async_trait]
impl AccountStore for HotCache {
    async fn find_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenAuth>> {
        self.inner.find_token(token_hash).await
    }

    async fn bootstrap_admin(&self, token_hash: [u8; 32], now: i64) -> Result<bool> {
        self.inner.bootstrap_admin(token_hash, now).await
    }

    async fn create_user(&self, name: &str, tenant: &str, now: i64) -> Result<UserRow> {
        self.inner.create_user(name, tenant, now).await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        self.inner.list_users().await
    }

    async fn create_token(&self, token: NewToken, now: i64) -> Result<TokenRow> {
        self.inner.create_token(token, now).await
    }

    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        self.inner.list_tokens(user_name).await
    }

    async fn set_token_expiry(&self, token_id: i64, expires_at: Option<i64>) -> Result<()> {
        self.inner.set_token_expiry(token_id, expires_at).await
    }

    async fn revoke_token(&self, token_id: i64, now: i64) -> Result<()> {
        self.inner.revoke_token(token_id, now).await
    }

    async fn add_usage(&self, deltas: Vec<(i64, UsageDelta)>, now: i64) -> Result<()> {
        self.inner.add_usage(deltas, now).await
    }

    async fn usage(&self, tenant: Option<&str>) -> Result<Vec<UsageRow>> {
        self.inner.usage(tenant).await
    }
}

#[async_trait::async_trait]
impl Store for HotCache {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn probe_write(&self) -> Result<()> {
        self.inner.probe_write().await
    }
}

#[cfg(test)]
mod tests {
    use super::super::sqlite::SqliteStore;
    use super::super::test_support::{id, ids};
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        inner: Arc<dyn Store>,
        cache: Arc<HotCache>,
        served: Counter,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.sqlite");
        let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(path.to_str().unwrap(), 2).unwrap());
        let served = Counter::default();
        let cache = Arc::new(HotCache::new(inner.clone(), 1 << 20, served.clone()));
        Fixture {
            _dir: dir,
            inner,
            cache,
            served,
        }
    }

    #[tokio::test]
    async fn answers_repeated_reads_from_memory_and_sees_every_write() {
        let f = fixture();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        f.cache
            .publish("t", vec![(a, vec![id(1)].into())], 100, 10)
            .await
            .unwrap();
        // The doorkeeper lets an entry in on its second miss.
        for _ in 0..2 {
            assert_eq!(
                ids(f.cache.query("t", &[a, b], usize::MAX).await.unwrap()),
                vec![Some(vec![id(1)]), None]
            );
        }
        assert_eq!(f.served.get(), 0);
        assert_eq!(
            ids(f.cache.query("t", &[a, b], usize::MAX).await.unwrap()),
            vec![Some(vec![id(1)]), None]
        );
        assert_eq!(f.served.get(), 1, "the third read of `a` comes from memory");
        // Another tenant never sees it.
        assert_eq!(
            ids(f.cache.query("u", &[a], usize::MAX).await.unwrap()),
            vec![None]
        );

        // A publish replaces what memory held.
        f.cache
            .publish(
                "t",
                vec![(a, vec![id(2)].into()), (b, vec![id(3)].into())],
                100,
                20,
            )
            .await
            .unwrap();
        assert_eq!(
            ids(f.cache.query("t", &[a, b], usize::MAX).await.unwrap()),
            vec![Some(vec![id(1), id(2)]), Some(vec![id(3)])]
        );

        // A recorded read refreshes the cached read time.
        f.cache.touch(vec![("t".into(), a)], 500).await.unwrap();
        assert_eq!(
            f.cache.query("t", &[a], usize::MAX).await.unwrap()[0]
                .as_ref()
                .unwrap()
                .last_read_at,
            500
        );

        // An eviction drops what it removed from memory too.
        assert_eq!(f.cache.evict(Some(100), None).await.unwrap(), 1);
        assert_eq!(
            ids(f.cache.query("t", &[a, b], usize::MAX).await.unwrap()),
            vec![Some(vec![id(1), id(2)]), None]
        );
    }

    #[tokio::test]
    async fn a_touch_keeps_the_entry_in_memory_with_its_new_read_time() {
        let f = fixture();
        let a = [1u8; 32];
        f.cache
            .publish("t", vec![(a, vec![id(1)].into())], 100, 10)
            .await
            .unwrap();
        for _ in 0..3 {
            f.cache.query("t", &[a], usize::MAX).await.unwrap();
        }
        assert_eq!(f.served.get(), 1, "`a` is in memory");
        f.cache.touch(vec![("t".into(), a)], 500).await.unwrap();
        let read = f.cache.query("t", &[a], usize::MAX).await.unwrap();
        assert_eq!(f.served.get(), 2, "still in memory after the touch");
        assert_eq!(read[0].as_ref().unwrap().last_read_at, 500);
        // An older touch never moves the time back.
        f.cache.touch(vec![("t".into(), a)], 400).await.unwrap();
        let read = f.cache.query("t", &[a], usize::MAX).await.unwrap();
        assert_eq!(read[0].as_ref().unwrap().last_read_at, 500);
    }

    #[tokio::test]
    async fn ids_served_from_memory_count_towards_the_cap() {
        let f = fixture();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        f.cache
            .publish(
                "t",
                vec![(a, vec![id(1), id(2)].into()), (b, vec![id(3)].into())],
                100,
                10,
            )
            .await
            .unwrap();
        for _ in 0..3 {
            f.cache.query("t", &[a], usize::MAX).await.unwrap();
        }
        assert_eq!(f.served.get(), 1, "`a` is in memory");
        // Over the cap on memory alone, or on memory plus the store.
        for (keys, max) in [(&[a][..], 1), (&[a, b][..], 2)] {
            match f.cache.query("t", keys, max).await {
                Err(StoreError::TooManyIds {
                    at_least: 2..,
                    max: m,
                }) if m == max => {}
                other => panic!("{keys:?} within {max}: {other:?}"),
            }
        }
        assert_eq!(f.cache.query("t", &[a, b], 3).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_read_that_raced_a_publish_does_not_stay_in_memory() {
        let f = fixture();
        let a = [1u8; 32];
        f.cache
            .publish("t", vec![(a, vec![id(1)].into())], 100, 10)
            .await
            .unwrap();
        // A first miss, so that the racing read's miss is the one let in.
        f.cache.query("t", &[a], usize::MAX).await.unwrap();
        let (read_tx, read_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (cache, inner) = (f.cache.clone(), f.inner.clone());
        // This query reads the store, then waits while a publish commits,
        // then caches what it read: the entry as it was before the publish.
        let racing = tokio::spawn(async move {
            cache
                .query_through("t", &[a], usize::MAX, |missing, max| async move {
                    let before = inner.query("t", &missing, max).await;
                    read_tx.send(()).unwrap();
                    go_rx.await.unwrap();
                    before
                })
                .await
        });
        read_rx.await.unwrap();
        f.cache
            .publish("t", vec![(a, vec![id(2)].into())], 100, 20)
            .await
            .unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(ids(racing.await.unwrap().unwrap()), vec![Some(vec![id(1)])]);
        assert_eq!(
            ids(f.cache.query("t", &[a], usize::MAX).await.unwrap()),
            vec![Some(vec![id(1), id(2)])],
            "the stale copy must not be served after the publish"
        );
    }
}
