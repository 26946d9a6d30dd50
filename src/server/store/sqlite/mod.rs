//! The SQLite backend: one file in WAL mode; the schema and its upgrades are
//! in `migrations.rs`, where entries live in `entries.rs`.
//!
//! Reads run on a small pool of connections (WAL lets them proceed while a
//! write commits). All writes go through one writer thread that commits in
//! groups: it takes every job waiting in its queue, runs each in its own
//! savepoint inside one transaction, commits with `synchronous=FULL`, and
//! only then answers each job. So a publish is acknowledged only once it is
//! on disk, and a burst of publishes costs one fsync, not one each.

use std::sync::mpsc;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    codec, merge_ids, token_updated, Entry, FileKey, NewToken, Result, Scope, Store, StoreError,
    StoreStats, StoredId, TokenAuth, TokenRow, UsageDelta, UsageRow, UserRow,
};
use entries::Found;

mod entries;
mod migrations;

/// Called after the group's commit with its outcome; answers the waiting caller.
type Completer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// Runs one write inside the group's transaction.
type Job = Box<dyn FnOnce(&Connection) -> Completer + Send>;

/// Most jobs committed together; bounds the latency a long group adds.
const MAX_GROUP: usize = 256;

/// Page cache of each connection, in KiB, for a store of `entries`.
/// Entries sit at integer slots (see `entries.rs`), so the inner pages of
/// their B-tree take under 1 MB per million entries; with those cached a
/// lookup reads one leaf page from the OS, and leaves are not worth
/// caching here (hot entries are cached above the store, `store::hot`).
/// So: SQLite's default 2 MiB, more for stores past two million entries.
/// Measured with 1M entries, 2 MiB against 8 MiB: the same queries/s and
/// 10-15 MB less RSS (a smaller cache is even faster per lookup: 3.4 µs
/// at 1 MiB, 4.2 µs at 8 MiB, its hash table staying in the CPU cache).
fn page_cache_kib(entries: u64) -> u64 {
    (entries / 1000).clamp(2 * 1024, 64 * 1024)
}

pub struct SqliteStore {
    path: String,
    readers: Mutex<Vec<Connection>>,
    reader_slots: tokio::sync::Semaphore,
    writer: Mutex<mpsc::Sender<Job>>,
}

impl SqliteStore {
    pub fn open(path: &str, readers: usize) -> Result<Self> {
        let err = |source| StoreError::Sqlite {
            path: path.to_string(),
            source,
        };
        let mut writer = Connection::open(path).map_err(err)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
                 PRAGMA busy_timeout=10000;",
            )
            .map_err(err)?;
        migrations::migrate(&mut writer, path)?;
        let entries: i64 = writer
            .query_row("SELECT entries FROM totals WHERE id = 1", [], |r| r.get(0))
            .map_err(err)?;
        let cache_kib = page_cache_kib(entries.max(0) as u64);
        // The writer descends the same B-tree for every published hash, so
        // it gets the readers' page cache.
        writer
            .execute_batch(&format!("PRAGMA cache_size=-{cache_kib};"))
            .map_err(err)?;
        // Queries run inline on the runtime's workers (one per core), so a
        // reader beyond one per core would only split the page cache.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let readers = readers.clamp(1, cores.max(1));
        let mut pool = Vec::with_capacity(readers);
        for _ in 0..readers {
            let conn = Connection::open(path).map_err(err)?;
            // No mmap: measured no faster here, and mapped pages would count
            // toward RSS (600 MB with a million hashes).
            conn.execute_batch(&format!(
                "PRAGMA busy_timeout=10000; PRAGMA query_only=ON; PRAGMA cache_size=-{cache_kib};"
            ))
            .map_err(err)?;
            pool.push(conn);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("dryci-sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| StoreError::Task(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Self {
            path: path.to_string(),
            readers: Mutex::new(pool),
            reader_slots: tokio::sync::Semaphore::new(readers),
            writer: Mutex::new(tx),
        })
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (_permit, conn) = self.checkout_reader().await?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            (conn, result)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.return_reader(conn);
        result
    }

    /// Runs a short read (a few index lookups) right on the async worker.
    /// In WAL mode a reader never waits for a writer, and such a read takes
    /// microseconds, less than the hand-off to the blocking pool would cost.
    async fn read_inline<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let (_permit, conn) = self.checkout_reader().await?;
        let result = f(&conn);
        self.return_reader(conn);
        result
    }

    /// A free read connection, with the permit that reserved it (hold the
    /// permit until the connection is returned).
    async fn checkout_reader(&self) -> Result<(tokio::sync::SemaphorePermit<'_>, Connection)> {
        let permit = self
            .reader_slots
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let conn = self
            .readers
            .lock()
            .map_err(|_| StoreError::Task("reader pool poisoned".into()))?
            .pop()
            .ok_or_else(|| StoreError::Task("no free reader".into()))?;
        Ok((permit, conn))
    }

    fn return_reader(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
    }

    /// Runs `sql` on token `token_id` (?1) with `value` (?2); not found if
    /// no row changed.
    async fn update_token(
        &self,
        sql: &'static str,
        token_id: i64,
        value: Option<i64>,
    ) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let n = c
                .execute(sql, params![token_id, value])
                .map_err(|source| StoreError::Sqlite { path, source })?;
            token_updated(n as u64, token_id)
        })
        .await
    }

    /// Queues `f` for the writer thread and waits until its group is committed.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let path = self.path.clone();
        let job: Job = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, &path, f);
            Box::new(move |commit: std::result::Result<(), String>| {
                let answer = match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Task(format!("commit failed: {e}"))),
                    (Ok(v), Ok(())) => Ok(v),
                };
                let _ = tx.send(answer);
            })
        });
        self.writer
            .lock()
            .map_err(|_| StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    path: &str,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    conn.execute_batch("SAVEPOINT job").map_err(err)?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job").map_err(err)?;
            Ok(v)
        }
        Err(e) => {
            // Undo only this job; the others in the group still commit.
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // If BEGIN fails (e.g. busy), each savepoint commits on its own.
        let in_tx = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let completers: Vec<Completer> = jobs.into_iter().map(|job| job(&conn)).collect();
        let outcome = if in_tx {
            conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            })
        } else {
            Ok(())
        };
        for complete in completers {
            complete(outcome.clone());
        }
    }
}

/// The id of `tenant`, created on its first publish. Ids never change and
/// tenants are never deleted.
fn tenant_id_for_write(c: &Connection, tenant: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("INSERT INTO tenants (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
        .execute(params![tenant])?;
    tenant_id(c, tenant)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The id of `tenant`, or `None` if it never published anything.
fn tenant_id(c: &Connection, tenant: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM tenants WHERE name = ?1")?
        .query_row(params![tenant], |r| r.get(0))
        .optional()
}

/// One answer per hash, in order: one primary-key lookup each, with a
/// statement prepared once per connection. All of them run in one read
/// transaction, so they see one snapshot and take the WAL read lock once.
fn lookup(
    c: &Connection,
    path: &str,
    tenant: &str,
    hashes: &[FileKey],
) -> Result<Vec<Option<Entry>>> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    let tx = c.unchecked_transaction().map_err(err)?;
    let Some(tenant_id) = tenant_id(&tx, tenant).map_err(err)? else {
        // Nothing was ever published for this tenant.
        return Ok(vec![None; hashes.len()]);
    };
    let mut finder = entries::Finder::new(&tx, path)?;
    let out = hashes
        .iter()
        .map(|hash| Ok(finder.find(tenant_id, hash)?.into_entry()))
        .collect::<Result<Vec<_>>>()?;
    drop(finder);
    tx.commit().map_err(err)?;
    Ok(out)
}

fn scope_of(table: &'static str, s: &str) -> Result<Scope> {
    s.parse()
        .map_err(|reason| StoreError::Corrupt { table, reason })
}

/// id, user name, scope, label, created_at, expires_at, revoked_at.
type RawToken = (i64, String, String, String, i64, Option<i64>, Option<i64>);

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        let path = self.path.clone();
        self.read(move |c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
    }

    async fn find_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenAuth>> {
        let path = self.path.clone();
        self.read_inline(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare_cached(
                    "SELECT t.id, t.token_hash, u.id, u.name, u.tenant, t.scope, t.expires_at, t.revoked_at \
                     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                )
                .map_err(err)?;
            let row = stmt
                .query_row(params![&token_hash[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })
                .optional()
                .map_err(err)?;
            let Some((token_id, hash, user_id, user_name, tenant, scope, expires_at, revoked_at)) = row else {
                return Ok(None);
            };
            let token_hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt { table: "tokens", reason: "token_hash is not 32 bytes".into() })?;
            Ok(Some(TokenAuth {
                token_id,
                token_hash,
                user_id,
                user_name,
                tenant,
                scope: scope_of("tokens", &scope)?,
                expires_at,
                revoked_at,
            }))
        })
        .await
    }

    async fn bootstrap_admin(&self, token_hash: [u8; 32], now: i64) -> Result<bool> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let users: i64 = c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(err)?;
            if users > 0 {
                return Ok(false);
            }
            c.execute("INSERT INTO users (name, tenant, created_at) VALUES ('admin', 'admin', ?1)", params![now])
                .map_err(err)?;
            let user_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO tokens (user_id, token_hash, scope, label, created_at) VALUES (?1, ?2, 'admin', 'initial admin token', ?3)",
                params![user_id, &token_hash[..], now],
            )
            .map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn create_user(&self, name: &str, tenant: &str, now: i64) -> Result<UserRow> {
        let path = self.path.clone();
        let (name, tenant) = (name.to_string(), tenant.to_string());
        self.write(move |c| {
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
            if exists {
                return Err(StoreError::Conflict { what: "user", name });
            }
            c.execute(
                "INSERT INTO users (name, tenant, created_at) VALUES (?1, ?2, ?3)",
                params![name, tenant, now],
            )
            .map_err(|source| StoreError::Sqlite { path, source })?;
            Ok(UserRow {
                id: c.last_insert_rowid(),
                name,
                tenant,
                created_at: now,
            })
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let path = self.path.clone();
        self.read(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let mut stmt = c
                .prepare("SELECT id, name, tenant, created_at FROM users ORDER BY id")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UserRow {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        tenant: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            Ok(rows)
        })
        .await
    }

    async fn create_token(&self, token: NewToken, now: i64) -> Result<TokenRow> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let user_id: Option<i64> = c
                .query_row("SELECT id FROM users WHERE name = ?1", params![token.user_name], |r| r.get(0))
                .optional()
                .map_err(err)?;
            let Some(user_id) = user_id else {
                return Err(StoreError::NotFound { what: "user", name: token.user_name });
            };
            c.execute(
                "INSERT INTO tokens (user_id, token_hash, scope, label, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user_id, &token.token_hash[..], token.scope.as_str(), token.label, now, token.expires_at],
            )
            .map_err(err)?;
            Ok(TokenRow {
                id: c.last_insert_rowid(),
                user_name: token.user_name,
                scope: token.scope,
                label: token.label,
                created_at: now,
                expires_at: token.expires_at,
                revoked_at: None,
            })
        })
        .await
    }

    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        let path = self.path.clone();
        let user_name = user_name.map(str::to_string);
        self.read(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare(
                    "SELECT t.id, u.name, t.scope, t.label, t.created_at, t.expires_at, t.revoked_at \
                     FROM tokens t JOIN users u ON u.id = t.user_id \
                     WHERE ?1 IS NULL OR u.name = ?1 ORDER BY t.id",
                )
                .map_err(err)?;
            let raw = stmt
                .query_map(params![user_name], token_row)
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            raw.into_iter()
                .map(|(id, user_name, scope, label, created_at, expires_at, revoked_at)| {
                    Ok(TokenRow { id, user_name, scope: scope_of("tokens", &scope)?, label, created_at, expires_at, revoked_at })
                })
                .collect()
        })
        .await
    }

    async fn set_token_expiry(&self, token_id: i64, expires_at: Option<i64>) -> Result<()> {
        self.update_token(
            "UPDATE tokens SET expires_at = ?2 WHERE id = ?1",
            token_id,
            expires_at,
        )
        .await
    }

    async fn revoke_token(&self, token_id: i64, now: i64) -> Result<()> {
        self.update_token(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            token_id,
            Some(now),
        )
        .await
    }

    async fn query(&self, tenant: &str, hashes: &[FileKey]) -> Result<Vec<Option<Entry>>> {
        // Typical queries (hundreds of hashes) run inline; huge ones go to the blocking pool.
        if hashes.len() <= 2_000 {
            self.read_inline(|c| lookup(c, &self.path, tenant, hashes))
                .await
        } else {
            let (path, tenant, hashes) = (self.path.clone(), tenant.to_string(), hashes.to_vec());
            self.read(move |c| lookup(c, &path, &tenant, &hashes)).await
        }
    }

    async fn publish(
        &self,
        tenant: &str,
        batch: Vec<(FileKey, Vec<StoredId>)>,
        max_ids: usize,
        now: i64,
    ) -> Result<u64> {
        let path = self.path.clone();
        let tenant = tenant.to_string();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let tenant_id = tenant_id_for_write(c, &tenant).map_err(err)?;
            let mut added = 0;
            let mut finder = entries::Finder::new(c, &path)?;
            for (hash, ids) in batch {
                let (place, mut merged, stored) = match finder.find(tenant_id, &hash)? {
                    Found::Stored { place, entry } => (place, entry.ids.to_vec(), true),
                    Found::Absent { place } => (place, Vec::new(), false),
                };
                let new = merge_ids(&mut merged, &ids, max_ids);
                added += new;
                if stored && new == 0 && ids.iter().all(|i| i.duration_ms.is_none()) {
                    continue; // nothing changed: skip the write
                }
                entries::put(
                    c,
                    &mut finder,
                    place,
                    tenant_id,
                    &hash,
                    &codec::encode(&merged),
                    now,
                )?;
            }
            Ok(added)
        })
        .await
    }

    async fn touch(&self, reads: Vec<(String, FileKey)>, now: i64) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let mut tenant_ids = std::collections::HashMap::new();
            for (tenant, hash) in reads {
                let tenant_id = match tenant_ids.get(&tenant) {
                    Some(&id) => id,
                    None => {
                        let id = tenant_id(c, &tenant).map_err(err)?;
                        tenant_ids.insert(tenant, id);
                        id
                    }
                };
                if let Some(tenant_id) = tenant_id {
                    entries::touch(c, tenant_id, &hash, now).map_err(err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn add_usage(&self, deltas: Vec<(i64, UsageDelta)>, now: i64) -> Result<()> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare_cached(
                    "INSERT INTO usage (user_id, requests, queried_hashes, hits, published_ids, last_seen_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO UPDATE SET \
                     requests = requests + excluded.requests, queried_hashes = queried_hashes + excluded.queried_hashes, \
                     hits = hits + excluded.hits, published_ids = published_ids + excluded.published_ids, \
                     last_seen_at = excluded.last_seen_at",
                )
                .map_err(err)?;
            for (user_id, d) in deltas {
                stmt.execute(params![
                    user_id,
                    d.requests as i64,
                    d.queried_hashes as i64,
                    d.hits as i64,
                    d.published_ids as i64,
                    now
                ])
                .map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self) -> Result<Vec<UsageRow>> {
        let path = self.path.clone();
        self.read(move |c| {
            let err = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut stmt = c
                .prepare(
                    "SELECT u.name, COALESCE(g.requests, 0), COALESCE(g.queried_hashes, 0), COALESCE(g.hits, 0), \
                     COALESCE(g.published_ids, 0), g.last_seen_at FROM users u LEFT JOIN usage g ON g.user_id = u.id ORDER BY u.id",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UsageRow {
                        user_name: r.get(0)?,
                        usage: UsageDelta {
                            requests: r.get::<_, i64>(1)? as u64,
                            queried_hashes: r.get::<_, i64>(2)? as u64,
                            hits: r.get::<_, i64>(3)? as u64,
                            published_ids: r.get::<_, i64>(4)? as u64,
                        },
                        last_seen_at: r.get(5)?,
                    })
                })
                .map_err(err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            Ok(rows)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let path = self.path.clone();
        // Kept by triggers: no scan of the table.
        self.read(move |c| {
            c.query_row("SELECT entries, bytes FROM totals WHERE id = 1", [], |r| {
                Ok(StoreStats {
                    entries: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                })
            })
            .map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
    }

    async fn evict(&self, read_before: Option<i64>, max_bytes: Option<u64>) -> Result<u64> {
        let path = self.path.clone();
        self.write(move |c| {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let mut removed = 0u64;
            if let Some(before) = read_before {
                removed += entries::delete_read_before(c, before).map_err(err)?;
            }
            if let Some(max) = max_bytes {
                let mut total: i64 = c
                    .query_row("SELECT bytes FROM totals WHERE id = 1", [], |r| r.get(0))
                    .map_err(err)?;
                while total > max as i64 {
                    // Least recently read first, in chunks, until under the limit.
                    let victims = entries::least_recently_read(c, 500).map_err(err)?;
                    if victims.is_empty() {
                        break;
                    }
                    for victim in victims {
                        if total <= max as i64 {
                            break;
                        }
                        entries::delete(c, &victim).map_err(err)?;
                        total -= victim.bytes;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, ids};
    use super::*;

    /// A hash whose first 8 bytes, and so its slot, are those of `[1; 32]`.
    const SHARES_SLOT_WITH_ONES: FileKey = {
        let mut h = [7u8; 32];
        let mut i = 0;
        while i < 8 {
            h[i] = 1;
            i += 1;
        }
        h
    };

    /// Rows in the overflow table: keys whose slot holds another key.
    fn overflow_rows(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM entries_overflow", [], |r| r.get(0))
            .unwrap()
    }

    /// A database file as the first schema left it, with two tenants and
    /// two keys of one tenant that share a slot in the latest schema.
    fn version_1_file(path: &std::path::Path) {
        let mut c = Connection::open(path).unwrap();
        c.execute_batch(migrations::V1).unwrap();
        c.execute_batch("PRAGMA user_version = 1").unwrap();
        let tx = c.transaction().unwrap();
        for (tenant, hash, ids, read) in [
            ("team", [1u8; 32], vec![id(1), id(2)], 100),
            ("team", [2u8; 32], vec![id(3)], 200),
            ("other", [1u8; 32], vec![id(9)], 300),
            ("team", SHARES_SLOT_WITH_ONES, vec![id(5)], 400),
        ] {
            let blob = codec::encode(&ids);
            tx.execute(
                "INSERT INTO entries (tenant, file_hash, ids, bytes, created_at, updated_at, last_read_at) \
                 VALUES (?1, ?2, ?3, ?4, 1, 1, ?5)",
                params![tenant, &hash[..], blob, blob.len() as i64, read],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn upgrades_a_version_1_file_keeping_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        version_1_file(&path);
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let team = store
            .query("team", &[[1; 32], [2; 32], [3; 32], SHARES_SLOT_WITH_ONES])
            .await
            .unwrap();
        let ids: Vec<_> = team
            .iter()
            .map(|e| e.as_ref().map(|e| e.ids.to_vec()))
            .collect();
        assert_eq!(
            ids,
            vec![
                Some(vec![id(1), id(2)]),
                Some(vec![id(3)]),
                None,
                Some(vec![id(5)])
            ]
        );
        assert_eq!(team[1].as_ref().unwrap().last_read_at, 200);
        assert_eq!(team[3].as_ref().unwrap().last_read_at, 400);
        assert_eq!(overflow_rows(&path), 1);
        let other = store.query("other", &[[1; 32], [2; 32]]).await.unwrap();
        assert_eq!(*other[0].as_ref().unwrap().ids, [id(9)]);
        assert!(other[1].is_none());
        assert!(store.query("nobody", &[[1; 32]]).await.unwrap()[0].is_none());
        // Totals start from what the old table held: 5 ids of 20 bytes.
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 4,
                bytes: 100
            }
        );
        // The upgraded schema takes writes: publishing to an old tenant merges.
        assert_eq!(
            store
                .publish("team", vec![([2; 32], vec![id(3), id(4)])], 100, 500)
                .await
                .unwrap(),
            1
        );
        let merged = store.query("team", &[[2; 32]]).await.unwrap();
        assert_eq!(*merged[0].as_ref().unwrap().ids, [id(3), id(4)]);
        drop(store);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, migrations::LATEST as i64);
    }

    #[tokio::test]
    async fn keys_sharing_a_slot_stay_apart_through_every_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slots.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let (ones, twin) = ([1u8; 32], SHARES_SLOT_WITH_ONES);
        store
            .publish("a", vec![(ones, vec![id(1)])], 100, 10)
            .await
            .unwrap();
        // Tenant "b" (id 2) crafts a hash for the slot of "a"'s entry.
        let mut intruder = ones;
        let mix = |t: i64| {
            t.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64)
                .to_le_bytes()
        };
        for (i, byte) in intruder.iter_mut().take(8).enumerate() {
            *byte ^= mix(1)[i] ^ mix(2)[i];
        }
        intruder[31] = 0;
        store
            .publish("b", vec![(intruder, vec![id(8)])], 100, 10)
            .await
            .unwrap();
        assert_eq!(entries::slot(2, &intruder), entries::slot(1, &ones));
        store
            .publish("a", vec![(twin, vec![id(2)])], 100, 20)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);

        let a = store.query("a", &[ones, twin, intruder]).await.unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(1)]), Some(vec![id(2)]), None]);
        let b = store.query("b", &[ones, twin, intruder]).await.unwrap();
        assert_eq!(ids(b), vec![None, None, Some(vec![id(8)])]);

        // Merges land where each key lives.
        store
            .publish("a", vec![(twin, vec![id(3)]), (ones, vec![id(4)])], 100, 30)
            .await
            .unwrap();
        let a = store.query("a", &[ones, twin]).await.unwrap();
        assert_eq!(
            ids(a),
            vec![Some(vec![id(1), id(4)]), Some(vec![id(2), id(3)])]
        );
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 3,
                bytes: 100
            }
        );

        // Touches reach the overflow table; an age cut keeps what was read.
        store
            .touch(vec![("a".into(), twin), ("b".into(), intruder)], 50)
            .await
            .unwrap();
        assert_eq!(store.evict(Some(40), None).await.unwrap(), 1);
        let a = store.query("a", &[ones, twin]).await.unwrap();
        assert_eq!(ids(a), vec![None, Some(vec![id(2), id(3)])]);

        // With the slot free again, the key in overflow is still the one
        // found and updated: no second row appears for it.
        store
            .publish("a", vec![(twin, vec![id(6)])], 100, 60)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 2,
                bytes: 80
            }
        );
        // A new key takes the free slot.
        store
            .publish("a", vec![(ones, vec![id(7)])], 100, 70)
            .await
            .unwrap();
        assert_eq!(overflow_rows(&path), 2);
        let a = store.query("a", &[ones, twin]).await.unwrap();
        assert_eq!(
            ids(a),
            vec![Some(vec![id(7)]), Some(vec![id(2), id(3), id(6)])]
        );

        // Size eviction takes the least recently read of both tables:
        // "b"'s entry (read at 50), then "a"'s twin (written at 60).
        assert_eq!(store.evict(None, Some(20)).await.unwrap(), 2);
        assert_eq!(overflow_rows(&path), 0);
        let a = store.query("a", &[ones, twin]).await.unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(7)]), None]);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 1,
                bytes: 20
            }
        );
    }

    #[tokio::test]
    async fn a_batch_that_fills_the_overflow_table_finds_its_own_rows() {
        // Lookups skip the overflow table while it is empty; a batch that
        // writes the first row there must still find that row again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        let (ones, twin) = ([1u8; 32], SHARES_SLOT_WITH_ONES);
        store
            .publish("a", vec![(ones, vec![id(1)])], 100, 10)
            .await
            .unwrap();
        let batch = vec![(twin, vec![id(2)]), (twin, vec![id(3)])];
        assert_eq!(store.publish("a", batch, 100, 20).await.unwrap(), 2);
        let a = store.query("a", &[ones, twin]).await.unwrap();
        assert_eq!(ids(a), vec![Some(vec![id(1)]), Some(vec![id(2), id(3)])]);
        assert_eq!(overflow_rows(&path), 1);
    }

    #[test]
    fn bundled_sqlite_has_no_global_page_cache_lock() {
        // Set in .cargo/config.toml; a build without it runs but is slower.
        let c = Connection::open_in_memory().unwrap();
        let options: Vec<String> = c
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn totals_follow_publishes_and_evictions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
        store
            .publish(
                "t",
                vec![([1; 32], vec![id(1)]), ([2; 32], vec![id(2)])],
                100,
                10,
            )
            .await
            .unwrap();
        store
            .publish("t", vec![([1; 32], vec![id(3)])], 100, 20)
            .await
            .unwrap();
        store
            .publish("u", vec![([1; 32], vec![id(1)])], 100, 30)
            .await
            .unwrap();
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 3,
                bytes: 80
            }
        );
        // Read at 40: ([1;32], t) survives an age cut at 35, the rest goes.
        store.touch(vec![("t".into(), [1; 32])], 40).await.unwrap();
        assert_eq!(store.evict(Some(35), None).await.unwrap(), 2);
        assert_eq!(
            store.stats().await.unwrap(),
            StoreStats {
                entries: 1,
                bytes: 40
            }
        );
        assert_eq!(store.evict(None, Some(39)).await.unwrap(), 1);
        assert_eq!(store.stats().await.unwrap(), StoreStats::default());
    }
}
