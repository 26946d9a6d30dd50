//! The storage trait of the server and the types that cross it.
//!
//! Handlers never see SQL: they call `Store`, which is two traits, one per
//! job: `AccountStore` (users, tokens, usage counters) and `ResultStore`
//! (the stored results and their retention). Two implementations exist,
//! chosen by the database URL's scheme (`open`): SQLite (a path or
//! `sqlite://path`, the default) and PostgreSQL (`postgres://...`). Both
//! are laid out the same way: `mod.rs` (connections and `Store`),
//! `accounts.rs` (`AccountStore`), `entries.rs` (`ResultStore`),
//! `migrations.rs` (the schema).
//! Keys arrive already validated as raw bytes (`wire.rs` decodes them): a
//! file key is 32 bytes, a node key 16.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub mod codec;
pub mod hot;
pub mod postgres;
pub mod sqlite;

/// A file key: the client's hash of a test file's dependency hash, under
/// which the tests that passed in that file are stored (64 hex characters on the wire, in
/// the v1 field `test_file_hashes`; the tables' column is `file_hash`).
///
/// A type alias, not a newtype: the bytes go straight to SQL binds, the
/// codec and the hot cache's hashing, and the only value they could be
/// confused with, a token's hash, never appears in the same signature.
pub type FileKey = [u8; 32];
/// A node key: the client's hash of a test's node id (32 hex characters
/// on the wire, where v1 and v2 call it a node id). Not `NodeId`, which in
/// this crate is a node of the dependency graph (`crate::graph::NodeId`).
pub type NodeKey = [u8; 16];

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {url:?}: use a file path, sqlite://PATH or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("SQLite database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create the SQLite database {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the database task failed: {0}")]
    Task(String),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{what} {name:?} already exists")]
    Conflict { what: &'static str, name: String },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// A query's entries hold more ids than it allows (`ResultStore::query`).
    #[error("the answer would carry at least {at_least} node ids, more than {max}")]
    TooManyIds { at_least: usize, max: usize },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Query only: for untrusted jobs (pull requests from forks) that must not poison the cache.
    ReadOnly,
    /// Query and publish.
    ReadWrite,
    /// Everything, including the `/api/v2/admin/*` endpoints, which show
    /// the token's own tenant, or every tenant for a user of
    /// `SERVER_ADMIN_TENANT`.
    Admin,
}

/// The tenant of the server's administrators: an admin token of one of its
/// users sees every tenant, an admin token of any other user its own tenant
/// only. The first-start `admin` user is created in it.
pub const SERVER_ADMIN_TENANT: &str = "admin";

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadOnly => "read-only",
            Scope::ReadWrite => "read-write",
            Scope::Admin => "admin",
        }
    }

    pub fn can_publish(self) -> bool {
        self >= Scope::ReadWrite
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read-only" => Ok(Scope::ReadOnly),
            "read-write" => Ok(Scope::ReadWrite),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: expected read-only, read-write or admin"
            )),
        }
    }
}

/// A token found by its hash, with everything needed to decide whether it is valid now.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub token_id: i64,
    pub token_hash: [u8; 32],
    pub user_id: i64,
    pub user_name: String,
    pub tenant: String,
    pub scope: Scope,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub tenant: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub user_name: String,
    pub scope: Scope,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A token to create; the secret itself never reaches the store, only its hash.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_name: String,
    pub scope: Scope,
    pub label: String,
    pub token_hash: [u8; 32],
    pub expires_at: Option<i64>,
}

/// One stored passed test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredId {
    pub node_key: NodeKey,
    pub duration_ms: Option<u32>,
}

/// A sealed requirement set: bytes only a client that knows the test
/// file's dependency hash can open, and their blake3, which is how tests
/// name it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSet {
    pub id: [u8; 32],
    pub body: Arc<[u8]>,
}

/// Which stored tests of one entry were recorded with a requirement set.
/// A set is sealed under its file's key, so sets are shared between the
/// tests of one entry only (and stored once per entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub sets: Vec<SealedSet>,
    /// (node key, index into `sets`), sorted by node key.
    pub tests: Vec<(NodeKey, u32)>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// The set the test of `node_key` requires, if it was recorded with one.
    pub fn of(&self, node_key: &NodeKey) -> Option<&SealedSet> {
        let i = self
            .tests
            .binary_search_by(|(key, _)| key.cmp(node_key))
            .ok()?;
        self.sets.get(self.tests[i].1 as usize)
    }

    /// The bytes of its sets.
    pub fn set_bytes(&self) -> usize {
        self.sets.iter().map(|set| set.body.len()).sum()
    }

    /// Builds the index from (node key, set) pairs, each set stored once.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (NodeKey, SealedSet)>) -> Self {
        let mut out = Requirements::default();
        let mut index: std::collections::HashMap<[u8; 32], u32> = Default::default();
        for (node_key, set) in pairs {
            let i = *index.entry(set.id).or_insert_with(|| {
                out.sets.push(set);
                (out.sets.len() - 1) as u32
            });
            out.tests.push((node_key, i));
        }
        // Stable, so that of a test named twice the first pair stays.
        out.tests.sort_by_key(|pair| pair.0);
        out.tests.dedup_by(|later, first| later.0 == first.0);
        out
    }
}

/// What is stored for one file key. The ids and requirements are shared,
/// not copied, between the cache of hot entries and the answers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ids: Arc<[StoredId]>,
    /// `None` when no stored test was recorded with a requirement set.
    pub requirements: Option<Arc<Requirements>>,
    pub last_read_at: i64,
}

impl Entry {
    /// The ids without a requirement set: what a client that cannot check
    /// sets (v1, or v2 without `with_requirements`) may be told.
    pub fn unconditional_ids(&self) -> impl Iterator<Item = &StoredId> {
        let requirements = self.requirements.as_deref();
        self.ids
            .iter()
            .filter(move |id| requirements.is_none_or(|r| r.of(&id.node_key).is_none()))
    }
}

/// What a publish adds under one file key: passed tests, and the sets the
/// ones recorded with requirements require.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub ids: Vec<StoredId>,
    pub requirements: Requirements,
}

impl From<Vec<StoredId>> for Published {
    /// Passed tests none of which has a requirement set (all of v1's).
    fn from(ids: Vec<StoredId>) -> Self {
        Published {
            ids,
            requirements: Requirements::default(),
        }
    }
}

/// Most bytes of sets kept per entry. A test whose set would go beyond it
/// is not stored at all (stored without its set it would be served
/// unchecked): it runs, and is kept by the client's local store.
pub const MAX_SET_BYTES_PER_ENTRY: usize = 4 * 1024 * 1024;

/// Usage accumulated in memory and added to a user's counters in one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub requests: u64,
    pub queried_hashes: u64,
    pub hits: u64,
    pub published_ids: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub user_name: String,
    pub usage: UsageDelta,
    pub last_seen_at: Option<i64>,
}

/// Size of the stored results, for `/metrics` and eviction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Accounts: users, their tokens, and the usage counters of each user.
/// Written rarely (an admin command, a flush of counters every few
/// seconds) and read once per request (the token).
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn find_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenAuth>>;
    /// Creates user `admin` with an admin token if no user exists yet; true if it did.
    async fn bootstrap_admin(&self, token_hash: [u8; 32], now: i64) -> Result<bool>;
    async fn create_user(&self, name: &str, tenant: &str, now: i64) -> Result<UserRow>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    async fn create_token(&self, token: NewToken, now: i64) -> Result<TokenRow>;
    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>>;
    /// Sets (or clears, with `None`) the expiry of a token.
    async fn set_token_expiry(&self, token_id: i64, expires_at: Option<i64>) -> Result<()>;
    async fn revoke_token(&self, token_id: i64, now: i64) -> Result<()>;
    /// Adds each delta to its user's counters; `now` becomes their last-seen time.
    async fn add_usage(&self, deltas: Vec<(i64, UsageDelta)>, now: i64) -> Result<()>;
    /// Every user's counters, users who never asked anything included; only
    /// the users of `tenant` when one is given.
    async fn usage(&self, tenant: Option<&str>) -> Result<Vec<UsageRow>>;
}

/// Results: the passed tests stored per (tenant, file key), and their
/// retention. The hot path, and the only side the hot cache (`hot.rs`) wraps.
#[async_trait::async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// One answer per requested key, in order; `None` where nothing is stored.
    /// Fails with `TooManyIds` once the entries found hold more than
    /// `max_ids` ids in all (counted per requested key), without reading or
    /// decoding the rest: the memory of one lookup is bounded by `max_ids`
    /// (plus one entry), not by what the keys name. Without this bound, 1,000
    /// stored hashes of 32,768 ids made one query decode 786 MB before its
    /// answer was refused.
    async fn query(
        &self,
        tenant: &str,
        keys: &[FileKey],
        max_ids: usize,
    ) -> Result<Vec<Option<Entry>>>;
    /// Merges each publish into what is stored (`Merged::of`), keeping at
    /// most `max_ids` per key; returns how many ids were new. Returns only after the data is committed.
    async fn publish(
        &self,
        tenant: &str,
        batch: Vec<(FileKey, Published)>,
        max_ids: usize,
        now: i64,
    ) -> Result<u64>;
    /// Records that these entries were read at `now` (batched by the caller).
    async fn touch(&self, reads: Vec<(String, FileKey)>, now: i64) -> Result<()>;
    async fn stats(&self) -> Result<StoreStats>;
    /// Removes entries last read before `read_before`, then the least recently
    /// read ones until the store holds at most `max_bytes`; returns how many went.
    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) -> Result<u64>;
}

/// One database holding both sides; every backend passes the same story
/// test (`tests/server_story.rs`).
#[async_trait::async_trait]
pub trait Store: AccountStore + ResultStore {
    /// `sqlite` or `postgres`, for logs and the hot cache's default size.
    fn backend(&self) -> &'static str;
    /// A read: the database answers.
    async fn ping(&self) -> Result<()>;
    /// A small committed write (one row of its own): the database can still
    /// be written, which a read does not show when its disk is full or its
    /// file or server has become read-only.
    async fn probe_write(&self) -> Result<()>;
}

/// Opens the backend named by `url` and applies its migrations.
pub async fn open(url: &str, pool_size: usize) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::open(url, pool_size).await?,
        ))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::SqliteStore::open(path, pool_size)?))
    } else if url.contains("://") || url.is_empty() {
        Err(StoreError::UnsupportedUrl {
            url: url.to_string(),
        })
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(url, pool_size)?))
    }
}

/// Merges `new` into `stored` (first-seen order kept, durations refreshed),
/// capped at `max_ids`; returns how many ids were added.
pub fn merge_ids(stored: &mut Vec<StoredId>, new: &[StoredId], max_ids: usize) -> u64 {
    let mut index: std::collections::HashMap<NodeKey, usize> = stored
        .iter()
        .enumerate()
        .map(|(i, s)| (s.node_key, i))
        .collect();
    let mut added = 0;
    for id in new {
        match index.get(&id.node_key) {
            Some(&i) if id.duration_ms.is_some() => stored[i].duration_ms = id.duration_ms,
            Some(_) => {}
            // The cap (the original's 32768) drops the surplus rather than
            // failing the whole publish, as the original did.
            None if stored.len() < max_ids => {
                index.insert(id.node_key, stored.len());
                stored.push(*id);
                added += 1;
            }
            None => {}
        }
    }
    added
}

/// Merges a publish into a stored entry: its ids as `merge_ids` does, and
/// its requirements, where a test published again takes the set it was
/// published with now, or none. Sets no stored test requires are dropped;
/// a test whose set does not fit in `MAX_SET_BYTES_PER_ENTRY` is dropped
/// with its id. Returns how many ids were added.
pub fn merge_entry(
    ids: &mut Vec<StoredId>,
    requirements: &mut Requirements,
    new: &Published,
    max_ids: usize,
) -> u64 {
    if requirements.is_empty() && new.requirements.is_empty() {
        // Most entries: no test of either side has a set.
        return merge_ids(ids, &new.ids, max_ids);
    }
    let before: std::collections::HashSet<NodeKey> = ids.iter().map(|id| id.node_key).collect();
    merge_ids(ids, &new.ids, max_ids);
    let republished: std::collections::HashSet<NodeKey> =
        new.ids.iter().map(|id| id.node_key).collect();
    let kept = requirements
        .tests
        .iter()
        .filter(|(key, _)| !republished.contains(key))
        .map(|(key, i)| (*key, requirements.sets[*i as usize].clone()));
    let fresh = new
        .requirements
        .tests
        .iter()
        .map(|(key, i)| (*key, new.requirements.sets[*i as usize].clone()));
    let stored: std::collections::HashSet<NodeKey> = ids.iter().map(|id| id.node_key).collect();
    let mut bytes = 0;
    let mut fitting = std::collections::HashSet::new();
    let mut too_big = std::collections::HashSet::new();
    let pairs: Vec<(NodeKey, SealedSet)> = kept
        .chain(fresh)
        .filter(|(key, _)| stored.contains(key))
        .filter(|(key, set)| {
            if fitting.contains(&set.id) {
                return true;
            }
            if bytes + set.body.len() <= MAX_SET_BYTES_PER_ENTRY {
                bytes += set.body.len();
                fitting.insert(set.id);
                return true;
            }
            too_big.insert(*key);
            false
        })
        .collect();
    ids.retain(|id| !too_big.contains(&id.node_key));
    *requirements = Requirements::from_pairs(pairs);
    ids.iter()
        .filter(|id| !before.contains(&id.node_key))
        .count() as u64
}

/// A stored entry (or none) with a publish merged in, ready to be written.
#[derive(Debug)]
pub struct Merged {
    pub ids: Vec<StoredId>,
    pub requirements: Requirements,
    /// How many ids the publish added.
    pub added: u64,
}

impl Merged {
    /// `None` when the publish leaves a stored entry as it was, so that the
    /// write can be skipped.
    pub fn of(stored: Option<&Entry>, published: &Published, max_ids: usize) -> Option<Merged> {
        let stored_requirements = stored.and_then(|entry| entry.requirements.as_deref());
        let mut ids = stored.map_or_else(Vec::new, |entry| entry.ids.to_vec());
        let mut requirements = stored_requirements.cloned().unwrap_or_default();
        let added = merge_entry(&mut ids, &mut requirements, published, max_ids);
        let unchanged = stored.is_some_and(|entry| *entry.ids == ids[..])
            && stored_requirements.map_or(requirements.is_empty(), |r| *r == requirements);
        (!unchanged).then_some(Merged {
            ids,
            requirements,
            added,
        })
    }

    /// The requirements column: `None` (NULL) when no test has a set.
    pub fn encoded_requirements(&self) -> Option<Vec<u8>> {
        (!self.requirements.is_empty()).then(|| codec::encode_requirements(&self.requirements))
    }
}

/// The answer to an UPDATE of one token by id: not found when no row changed.
pub(crate) fn token_updated(rows: u64, token_id: i64) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound {
            what: "token",
            name: token_id.to_string(),
        });
    }
    Ok(())
}

/// Helpers shared by the backends' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Entry, StoredId};

    /// A stored id made of one repeated byte, without a duration.
    pub fn id(b: u8) -> StoredId {
        StoredId {
            node_key: [b; 16],
            duration_ms: None,
        }
    }

    /// The ids of each answer, for comparing with `vec![...]`.
    pub fn ids(answers: Vec<Option<Entry>>) -> Vec<Option<Vec<StoredId>>> {
        answers
            .into_iter()
            .map(|e| e.map(|e| e.ids.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8, d: Option<u32>) -> StoredId {
        StoredId {
            node_key: [b; 16],
            duration_ms: d,
        }
    }

    #[test]
    fn merge_keeps_order_refreshes_durations_and_caps() {
        let mut stored = vec![id(1, Some(5)), id(2, None)];
        let added = merge_ids(&mut stored, &[id(2, Some(7)), id(3, None), id(4, None)], 3);
        assert_eq!(added, 1);
        assert_eq!(stored, vec![id(1, Some(5)), id(2, Some(7)), id(3, None)]);
    }

    fn sealed(b: u8, len: usize) -> SealedSet {
        SealedSet {
            id: [b; 32],
            body: vec![b; len].into(),
        }
    }

    fn with_sets(ids: &[u8], sets: &[(u8, SealedSet)]) -> Published {
        Published {
            ids: ids.iter().map(|&b| id(b, None)).collect(),
            requirements: Requirements::from_pairs(sets.iter().map(|(b, s)| ([*b; 16], s.clone()))),
        }
    }

    #[test]
    fn a_republished_test_takes_its_new_set_or_none_and_unused_sets_go() {
        let (mut ids, mut requirements) = (Vec::new(), Requirements::default());
        let first = with_sets(&[1, 2, 3], &[(1, sealed(7, 4)), (2, sealed(7, 4))]);
        assert_eq!(merge_entry(&mut ids, &mut requirements, &first, 100), 3);
        assert_eq!(requirements.sets.len(), 1);
        assert_eq!(requirements.of(&[3; 16]), None);

        let again = with_sets(&[1, 2], &[(2, sealed(8, 4))]);
        assert_eq!(merge_entry(&mut ids, &mut requirements, &again, 100), 0);
        assert_eq!(requirements.of(&[1; 16]), None);
        assert_eq!(requirements.of(&[2; 16]).map(|s| s.id), Some([8; 32]));
        assert_eq!(requirements.sets.len(), 1, "set 7 is no longer required");
    }

    #[test]
    fn a_test_whose_set_does_not_fit_is_not_stored_at_all() {
        let (mut ids, mut requirements) = (Vec::new(), Requirements::default());
        let big = MAX_SET_BYTES_PER_ENTRY / 2 + 1;
        let publish = with_sets(&[1, 2, 3], &[(1, sealed(1, big)), (2, sealed(2, big))]);
        assert_eq!(merge_entry(&mut ids, &mut requirements, &publish, 100), 2);
        let stored: Vec<u8> = ids.iter().map(|id| id.node_key[0]).collect();
        assert_eq!(stored, vec![1, 3]);
        assert!(requirements.set_bytes() <= MAX_SET_BYTES_PER_ENTRY);
        assert_eq!(requirements.of(&[2; 16]), None);
    }

    #[test]
    fn scopes_round_trip() {
        for s in [Scope::ReadOnly, Scope::ReadWrite, Scope::Admin] {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
        assert!(!Scope::ReadOnly.can_publish());
        assert!(Scope::Admin.can_publish());
    }
}
