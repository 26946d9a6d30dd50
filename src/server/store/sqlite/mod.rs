//! The SQLite backend: one file in WAL mode. This file owns the
//! connections (a pool of readers and one writer thread) and `Store`;
//! the same four files as the PostgreSQL backend split the rest:
//! `accounts.rs` (users, tokens, usage), `entries.rs` (the stored results
//! and their retention), `migrations.rs` (the schema and its upgrades).
//! One more, `slots.rs`, is SQLite's alone: where an entry's row lives in
//! the file, a layout PostgreSQL does not need (it keys rows directly).
//!
//! Reads run on a small pool of connections (WAL lets them proceed while a
//! write commits). All writes go through one writer thread that commits in
//! groups: it takes every job waiting in its queue, runs each in its own
//! savepoint inside one transaction, commits with `synchronous=FULL`, and
//! only then answers each job. So a publish is acknowledged only once it is
//! on disk, and a burst of publishes costs one fsync, not one each.

use std::sync::mpsc;
use std::sync::Mutex;

use rusqlite::Connection;

use super::{Result, Store, StoreError};

mod accounts;
mod entries;
mod migrations;
mod slots;

/// Called after the group's commit with its outcome; answers the waiting caller.
type Completer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// Runs one write inside the group's transaction.
type Job = Box<dyn FnOnce(&Connection) -> Completer + Send>;

/// Most jobs committed together; bounds the latency a long group adds.
const MAX_GROUP: usize = 256;

/// Page cache of each connection, in KiB, for a store of `entries`.
/// Entries sit at integer slots (see `slots.rs`), so the inner pages of
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
        create_private(path).map_err(|source| StoreError::Create {
            path: path.to_string(),
            source,
        })?;
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

/// Creates the database file at `path`, if there is none, readable and
/// writable by its owner only (0600 whatever the umask): it holds every
/// tenant's results and the token hashes. SQLite gives the `-wal` and
/// `-shm` files it creates next to it the same permissions as the main
/// file, so they are private too. An existing file keeps its mode (the
/// operator's choice); `:memory:` and `file:` URIs are left to SQLite.
fn create_private(path: &str) -> std::io::Result<()> {
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        // An empty file is a valid empty database for SQLite.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
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

    async fn probe_write(&self) -> Result<()> {
        let path = self.path.clone();
        // A changed value: SQLite skips writing a row rewritten unchanged.
        self.write(move |c| {
            c.execute("UPDATE health SET probes = probes + 1 WHERE id = 1", [])
                .map(drop)
                .map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
    }
}

/// Helpers shared by the tests of this backend's files.
#[cfg(test)]
mod test_support {
    use rusqlite::Connection;

    use super::super::FileKey;

    /// A hash whose first 8 bytes, and so its slot, are those of `[1; 32]`.
    pub const SHARES_SLOT_WITH_ONES: FileKey = {
        let mut h = [7u8; 32];
        let mut i = 0;
        while i < 8 {
            h[i] = 1;
            i += 1;
        }
        h
    };

    /// Rows in the overflow table: keys whose slot holds another key.
    pub fn overflow_rows(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM entries_overflow", [], |r| r.get(0))
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
