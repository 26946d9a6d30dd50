//! The embedded local store: zero set-up, one SQLite file inside the
//! repository (`.dryci/results-v2.sqlite`). WAL and a busy timeout keep it
//! correct when two pytest processes run at once; a corrupt file is moved
//! aside and the store starts afresh. Entries not read for `RETENTION` are
//! pruned on publish, so the file does not grow forever.
//!
//! Each pass may name the set of requirements it was observed under (what
//! the test read at run time, `crate::requirements`); sets are stored once,
//! however many tests share them, with the module files they name.
//!
//! Besides the passes it keeps, per test file key, what a run that
//! collected the whole file found in it (a "collection": its plain node
//! ids, and what `-k` and `-m` match them against, encoded by the plugin),
//! so that the next run can skip collecting (importing) that file and still
//! report or deselect each test. Plain ids never leave the machine: the
//! server only ever sees hashed keys. The table keeps its first name,
//! `complete_files`, from when only files all of whose tests passed were
//! recorded; the `matchers` column came later (`add_missing_columns`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::protocol::v2::PassedTest;

const RETENTION: Duration = Duration::from_secs(60 * 60 * 24 * 30);
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How old a `last_used` mark may be before a read renews it. Much shorter
/// than `RETENTION`, so nothing in use is pruned, and long enough that the
/// usual re-run reads without writing.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60 * 60 * 24);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS passed (
    file_key     TEXT NOT NULL,
    node_key     TEXT NOT NULL,
    duration_ms  INTEGER,
    requirements TEXT,
    outcome      TEXT,
    reason       TEXT,
    last_used    INTEGER NOT NULL,
    PRIMARY KEY (file_key, node_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requirement_sets (
    set_id    TEXT PRIMARY KEY NOT NULL,
    body      BLOB NOT NULL,
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_history (
    file_part TEXT PRIMARY KEY NOT NULL,
    snapshot  TEXT NOT NULL,
    body      BLOB NOT NULL,
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id TEXT PRIMARY KEY NOT NULL,
    body        BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS observed_modules (
    path      TEXT PRIMARY KEY NOT NULL,
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS passed_last_used ON passed (last_used);
CREATE TABLE IF NOT EXISTS complete_files (
    file_key  TEXT PRIMARY KEY NOT NULL,
    node_ids  TEXT NOT NULL,
    last_used INTEGER NOT NULL,
    matchers  TEXT
) WITHOUT ROWID;
";

/// Columns added to a table after its first release: (table, column, type).
/// A store written by an older version gains them when opened.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("complete_files", "matchers", "TEXT")];

#[derive(Debug, thiserror::Error)]
#[error("local cache {path}: {source}")]
pub struct LocalError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// What a recorded test did, besides passing: results that may be served
/// again under the same key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Passed,
    /// Skipped (a marker, a condition, `pytest.skip`), with its reason.
    Skipped(String),
    /// Failed as expected (xfail), with its reason.
    XFailed(String),
}

impl Outcome {
    /// The `outcome`, `reason` columns.
    fn columns(&self) -> (Option<&'static str>, Option<&str>) {
        match self {
            Outcome::Passed => (None, None),
            Outcome::Skipped(reason) => (Some("skipped"), Some(reason)),
            Outcome::XFailed(reason) => (Some("xfailed"), Some(reason)),
        }
    }

    /// From the columns; an outcome this version does not know is none (its test runs).
    fn from_columns(outcome: Option<String>, reason: Option<String>) -> Option<Self> {
        let reason = reason.unwrap_or_default();
        match outcome.as_deref() {
            None => Some(Outcome::Passed),
            Some("skipped") => Some(Outcome::Skipped(reason)),
            Some("xfailed") => Some(Outcome::XFailed(reason)),
            Some(_) => None,
        }
    }
}

/// A result as the local store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPass {
    pub test: PassedTest,
    /// The id of the requirement set it was observed under, if any.
    pub requirements: Option<String>,
    pub outcome: Outcome,
}

/// A collection as the local store keeps it: the node ids (a JSON list)
/// and the plugin's matcher data, both opaque text here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCollection {
    pub node_ids: String,
    pub matchers: Option<String>,
}

/// What one publish adds to the local store.
#[derive(Debug, Default)]
pub struct LocalBatch {
    /// File key -> its passes.
    pub passed: BTreeMap<String, Vec<StoredPass>>,
    /// Set id -> encoded requirement set, for the sets the passes name.
    pub requirement_sets: BTreeMap<String, Vec<u8>>,
    /// Module files (relative to the root) the sets name.
    pub observed_modules: Vec<String>,
    /// Test file (node-id part) -> (snapshot id, encoded history) of the key
    /// its tests passed under in this run, for explaining later re-runs.
    pub history: BTreeMap<String, (String, Vec<u8>)>,
    /// The snapshot the histories name: (id, encoded), when there are any.
    pub snapshot: Option<(String, Vec<u8>)>,
}

pub struct LocalStore {
    path: PathBuf,
    conn: Connection,
}

impl LocalStore {
    /// Opens (or creates) the store; a corrupt file is renamed to
    /// `<name>.corrupt` and replaced, with a warning in the second value.
    pub fn open(path: &Path) -> Result<(LocalStore, Option<String>), LocalError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let marker = corruption_marker(path);
        let opened = match std::fs::read_to_string(&marker) {
            // An earlier run found corruption where opening did not look.
            Ok(found) => Err(LocalError {
                path: path.to_path_buf(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(found),
                ),
            }),
            Err(_) => Self::open_checked(path),
        };
        match opened {
            Ok(store) => Ok((store, None)),
            Err(err) if is_corruption(&err.source) => {
                let aside = path.with_extension("sqlite.corrupt");
                let _ = std::fs::rename(path, &aside);
                let _ = std::fs::remove_file(&marker);
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                let store = Self::open_checked(path)?;
                let warning = format!(
                    "{}: corrupt ({}); moved to {} and started afresh",
                    path.display(),
                    err.source,
                    aside.display()
                );
                Ok((store, Some(warning)))
            }
            Err(err) => Err(err),
        }
    }

    fn open_checked(path: &Path) -> Result<LocalStore, LocalError> {
        let wrap = |source| LocalError {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        // journal_mode answers with a row; query it rather than execute it.
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(wrap)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        add_missing_columns(&conn).map_err(wrap)?;
        // No integrity check here: it reads every page, 100 ms on a store of
        // 100 MB, on every run. Corruption in a page the schema statements
        // did not read fails the operation that reads it (`failed`).
        Ok(LocalStore {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// The error of an operation on the store. Corruption found there is
    /// remembered next to the store, so that the next open moves it aside
    /// and starts afresh; this run's operation fails (its tests run).
    fn failed(&self, source: rusqlite::Error) -> LocalError {
        if is_corruption(&source) {
            let _ = std::fs::write(corruption_marker(&self.path), source.to_string());
        }
        LocalError {
            path: self.path.clone(),
            source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For each file key, the tests that passed under it.
    pub fn query(&self, file_keys: &[String]) -> Result<Vec<Vec<StoredPass>>, LocalError> {
        let wrap = |source| self.failed(source);
        let mut select = self
            .conn
            .prepare_cached(
                "SELECT node_key, duration_ms, requirements, outcome, reason, last_used
                 FROM passed WHERE file_key = ?1",
            )
            .map_err(wrap)?;
        let stale_before = now_secs() - TOUCH_INTERVAL.as_secs() as i64;
        let mut answers = Vec::with_capacity(file_keys.len());
        let mut stale = Vec::new();
        for key in file_keys {
            let mut oldest = i64::MAX;
            let rows = select
                .query_map([key], |row| {
                    let test = PassedTest {
                        node_id: row.get(0)?,
                        duration_ms: row.get(1)?,
                        requires: None,
                    };
                    let requirements = row.get(2)?;
                    let outcome = Outcome::from_columns(row.get(3)?, row.get(4)?);
                    let pass = outcome.map(|outcome| StoredPass {
                        test,
                        requirements,
                        outcome,
                    });
                    Ok((pass, row.get::<_, i64>(5)?))
                })
                .map_err(wrap)?;
            let mut tests = Vec::new();
            for row in rows {
                let (test, last_used) = row.map_err(wrap)?;
                oldest = oldest.min(last_used);
                tests.extend(test);
            }
            if oldest < stale_before {
                stale.push(key);
            }
            answers.push(tests);
        }
        drop(select);
        // Remember what was read, for retention, but only where the mark is
        // old: a run that changes nothing writes nothing (no transaction, no
        // WAL to checkpoint). A failure costs nothing but pruning accuracy.
        if !stale.is_empty() {
            let _ = self.touch("passed", &stale);
        }
        Ok(answers)
    }

    fn touch(&self, table: &str, file_keys: &[&String]) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut update = tx.prepare_cached(&format!(
                "UPDATE {table} SET last_used = ?2 WHERE file_key = ?1"
            ))?;
            let now = now_secs();
            for key in file_keys {
                update.execute(params![key, now])?;
            }
        }
        tx.commit()
    }

    /// For each file key, its recorded collection, if any: the node ids (a
    /// JSON list) and, when `with_matchers`, the plugin's matcher data
    /// (read only for runs that select by name, marker or node id).
    pub fn collections(
        &self,
        file_keys: &[String],
        with_matchers: bool,
    ) -> Result<Vec<Option<StoredCollection>>, LocalError> {
        let wrap = |source| self.failed(source);
        let sql = if with_matchers {
            "SELECT node_ids, last_used, matchers FROM complete_files WHERE file_key = ?1"
        } else {
            "SELECT node_ids, last_used FROM complete_files WHERE file_key = ?1"
        };
        let mut select = self.conn.prepare_cached(sql).map_err(wrap)?;
        let stale_before = now_secs() - TOUCH_INTERVAL.as_secs() as i64;
        let mut found = Vec::with_capacity(file_keys.len());
        let mut stale = Vec::new();
        for key in file_keys {
            let row: Option<(StoredCollection, i64)> = select
                .query_row([key], |row| {
                    let matchers = if with_matchers { row.get(2)? } else { None };
                    let collection = StoredCollection {
                        node_ids: row.get(0)?,
                        matchers,
                    };
                    Ok((collection, row.get(1)?))
                })
                .optional()
                .map_err(wrap)?;
            if let Some((_, last_used)) = &row {
                if *last_used < stale_before {
                    stale.push(key);
                }
            }
            found.push(row.map(|(collection, _)| collection));
        }
        drop(select);
        // A record served run after run is never recorded again: without this
        // mark it would be pruned RETENTION after it was written.
        if !stale.is_empty() {
            let _ = self.touch("complete_files", &stale);
        }
        Ok(found)
    }

    /// Records collections: file key -> node ids (a JSON list) and matcher data.
    pub fn record_collections(
        &self,
        collections: &BTreeMap<String, StoredCollection>,
    ) -> Result<(), LocalError> {
        let wrap = |source| self.failed(source);
        let tx = self.conn.unchecked_transaction().map_err(wrap)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO complete_files (file_key, node_ids, last_used, matchers)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (file_key) DO UPDATE SET node_ids = excluded.node_ids,
                         last_used = excluded.last_used, matchers = excluded.matchers",
                )
                .map_err(wrap)?;
            let now = now_secs();
            for (file_key, collection) in collections {
                upsert
                    .execute(params![
                        file_key,
                        collection.node_ids,
                        now,
                        collection.matchers
                    ])
                    .map_err(wrap)?;
            }
            tx.execute(
                "DELETE FROM complete_files WHERE last_used < ?1",
                [now - RETENTION.as_secs() as i64],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)
    }

    /// The encoded requirement sets stored under `ids` (absent ones left out).
    pub fn requirement_sets(&self, ids: &[&str]) -> Result<Vec<(String, Vec<u8>)>, LocalError> {
        let wrap = |source| self.failed(source);
        let mut select = self
            .conn
            .prepare_cached("SELECT body FROM requirement_sets WHERE set_id = ?1")
            .map_err(wrap)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let body: Option<Vec<u8>> = select
                .query_row([id], |row| row.get(0))
                .optional()
                .map_err(wrap)?;
            found.extend(body.map(|body| (id.to_string(), body)));
        }
        Ok(found)
    }

    /// The encoded histories of `parts` (test files without one left out).
    pub fn file_history(&self, parts: &[&str]) -> Result<Vec<(String, Vec<u8>)>, LocalError> {
        let wrap = |source| self.failed(source);
        let mut select = self
            .conn
            .prepare_cached("SELECT body FROM file_history WHERE file_part = ?1")
            .map_err(wrap)?;
        let mut found = Vec::new();
        for part in parts {
            let body: Option<Vec<u8>> = select
                .query_row([part], |row| row.get(0))
                .optional()
                .map_err(wrap)?;
            found.extend(body.map(|body| (part.to_string(), body)));
        }
        Ok(found)
    }

    /// The encoded snapshot stored under `id`.
    pub fn snapshot(&self, id: &str) -> Result<Option<Vec<u8>>, LocalError> {
        self.conn
            .query_row(
                "SELECT body FROM snapshots WHERE snapshot_id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.failed(source))
    }

    /// Every module file a stored requirement set names (relative to the root).
    pub fn observed_modules(&self) -> Result<Vec<String>, LocalError> {
        let wrap = |source| self.failed(source);
        let mut select = self
            .conn
            .prepare_cached("SELECT path FROM observed_modules ORDER BY path")
            .map_err(wrap)?;
        let rows = select.query_map([], |row| row.get(0)).map_err(wrap)?;
        rows.collect::<Result<_, _>>().map_err(wrap)
    }

    /// Stores the passes; returns how many were new. Committed before it returns.
    pub fn publish(&self, batch: &LocalBatch) -> Result<usize, LocalError> {
        let wrap = |source| self.failed(source);
        let tx = self.conn.unchecked_transaction().map_err(wrap)?;
        let mut added = 0;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO passed (file_key, node_key, duration_ms, requirements, outcome,
                         reason, last_used)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (file_key, node_key) DO UPDATE SET duration_ms = excluded.duration_ms,
                         requirements = excluded.requirements, outcome = excluded.outcome,
                         reason = excluded.reason, last_used = excluded.last_used",
                )
                .map_err(wrap)?;
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM passed WHERE file_key = ?1 AND node_key = ?2")
                .map_err(wrap)?;
            let now = now_secs();
            for (file_key, passes) in &batch.passed {
                for StoredPass {
                    test,
                    requirements,
                    outcome,
                } in passes
                {
                    let (outcome, reason) = outcome.columns();
                    if !exists
                        .exists(params![file_key, test.node_id])
                        .map_err(wrap)?
                    {
                        added += 1;
                    }
                    upsert
                        .execute(params![
                            file_key,
                            test.node_id,
                            test.duration_ms,
                            requirements,
                            outcome,
                            reason,
                            now
                        ])
                        .map_err(wrap)?;
                }
            }
            let mut upsert_set = tx
                .prepare_cached(
                    "INSERT INTO requirement_sets (set_id, body, last_used) VALUES (?1, ?2, ?3)
                     ON CONFLICT (set_id) DO UPDATE SET last_used = excluded.last_used",
                )
                .map_err(wrap)?;
            for (id, body) in &batch.requirement_sets {
                upsert_set.execute(params![id, body, now]).map_err(wrap)?;
            }
            let mut upsert_module = tx
                .prepare_cached(
                    "INSERT INTO observed_modules (path, last_used) VALUES (?1, ?2)
                     ON CONFLICT (path) DO UPDATE SET last_used = excluded.last_used",
                )
                .map_err(wrap)?;
            for path in &batch.observed_modules {
                upsert_module.execute(params![path, now]).map_err(wrap)?;
            }
            if let Some((id, body)) = &batch.snapshot {
                tx.execute(
                    "INSERT OR IGNORE INTO snapshots (snapshot_id, body) VALUES (?1, ?2)",
                    params![id, body],
                )
                .map_err(wrap)?;
            }
            let mut upsert_history = tx
                .prepare_cached(
                    "INSERT INTO file_history (file_part, snapshot, body, last_used) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (file_part) DO UPDATE SET snapshot = excluded.snapshot,
                         body = excluded.body, last_used = excluded.last_used",
                )
                .map_err(wrap)?;
            for (part, (snapshot, body)) in &batch.history {
                upsert_history
                    .execute(params![part, snapshot, body, now])
                    .map_err(wrap)?;
            }
            let expired = now - RETENTION.as_secs() as i64;
            for table in [
                "passed",
                "requirement_sets",
                "observed_modules",
                "file_history",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE last_used < ?1"),
                    [expired],
                )
                .map_err(wrap)?;
            }
        }
        if !batch.history.is_empty() {
            // Only the snapshots some history still names are kept.
            tx.execute(
                "DELETE FROM snapshots WHERE snapshot_id NOT IN (SELECT snapshot FROM file_history)",
                [],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(added)
    }
}

/// Adds the `ADDED_COLUMNS` a store written by an older version lacks. Two
/// processes may race to add one: the loser's error is forgiven when the
/// column is there afterwards.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        if has_column(conn, table, column)? {
            continue;
        }
        let added = conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"));
        if let Err(err) = added {
            if !has_column(conn, table, column)? {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut columns = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = columns.query_map([], |row| row.get::<_, String>(1))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where an operation that found the store corrupt says so.
fn corruption_marker(path: &Path) -> PathBuf {
    path.with_extension("sqlite.corrupt-found")
}

fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(node: &str, ms: u64) -> StoredPass {
        StoredPass {
            test: PassedTest {
                node_id: node.into(),
                duration_ms: Some(ms),
                requires: None,
            },
            requirements: None,
            outcome: Outcome::Passed,
        }
    }

    fn batch(passes: Vec<StoredPass>) -> LocalBatch {
        LocalBatch {
            passed: [("f1".to_string(), passes)].into(),
            ..LocalBatch::default()
        }
    }

    #[test]
    fn publish_then_query_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let (store, warning) = LocalStore::open(&path).unwrap();
        assert!(warning.is_none());
        let batch = batch(vec![passed("a", 5), passed("b", 7)]);
        assert_eq!(store.publish(&batch).unwrap(), 2);
        assert_eq!(
            store.publish(&batch).unwrap(),
            0,
            "ids already stored are not new"
        );
        let (other, _) = LocalStore::open(&path).unwrap(); // a second process
        let answers = other.query(&["f1".to_string(), "f2".to_string()]).unwrap();
        assert_eq!(answers[0].len(), 2);
        assert!(answers[1].is_empty());
        assert_eq!(
            answers[0]
                .iter()
                .find(|p| p.test.node_id == "b")
                .unwrap()
                .test
                .duration_ms,
            Some(7)
        );
    }

    fn collection(node_ids: &str, matchers: Option<&str>) -> StoredCollection {
        StoredCollection {
            node_ids: node_ids.to_string(),
            matchers: matchers.map(str::to_string),
        }
    }

    #[test]
    fn collections_round_trip_with_matchers_read_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = LocalStore::open(&dir.path().join("c.sqlite")).unwrap();
        let record = [
            ("f1".to_string(), collection("[\"t.py::a\"]", Some("{}"))),
            ("f3".to_string(), collection("[\"u.py::b\"]", None)),
        ]
        .into();
        store.record_collections(&record).unwrap();
        let keys = ["f1".to_string(), "f2".to_string(), "f3".to_string()];
        assert_eq!(
            store.collections(&keys, true).unwrap(),
            [
                Some(collection("[\"t.py::a\"]", Some("{}"))),
                None,
                Some(collection("[\"u.py::b\"]", None))
            ]
        );
        assert_eq!(
            store.collections(&keys, false).unwrap()[0],
            Some(collection("[\"t.py::a\"]", None))
        );
    }

    #[test]
    fn a_store_from_before_matchers_gains_the_column_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE complete_files (
                     file_key TEXT PRIMARY KEY NOT NULL,
                     node_ids TEXT NOT NULL,
                     last_used INTEGER NOT NULL
                 ) WITHOUT ROWID;",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO complete_files VALUES ('f1', '[\"t.py::a\"]', ?1)",
                [now_secs()],
            )
            .unwrap();
        }
        let (store, warning) = LocalStore::open(&path).unwrap();
        assert_eq!(warning, None);
        let keys = ["f1".to_string()];
        assert_eq!(
            store.collections(&keys, true).unwrap(),
            [Some(collection("[\"t.py::a\"]", None))]
        );
        let record = [("f1".to_string(), collection("[]", Some("{}")))].into();
        store.record_collections(&record).unwrap();
        assert_eq!(
            store.collections(&keys, true).unwrap(),
            [Some(collection("[]", Some("{}")))]
        );
        drop(store);
        // Opening again finds the column there.
        assert!(LocalStore::open(&path).is_ok());
    }

    fn last_used(store: &LocalStore, table: &str) -> Vec<i64> {
        let mut select = store
            .conn
            .prepare(&format!("SELECT last_used FROM {table}"))
            .unwrap();
        let rows = select.query_map([], |row| row.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_fresh_read_writes_nothing_and_a_stale_mark_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = LocalStore::open(&dir.path().join("c.sqlite")).unwrap();
        store
            .publish(&batch(vec![passed("a", 5), passed("b", 7)]))
            .unwrap();
        let record = [("f1".to_string(), collection("[]", None))].into();
        store.record_collections(&record).unwrap();
        let keys = ["f1".to_string()];

        let before = store.conn.total_changes();
        assert_eq!(store.query(&keys).unwrap()[0].len(), 2);
        assert!(store.collections(&keys, true).unwrap()[0].is_some());
        assert_eq!(
            store.conn.total_changes(),
            before,
            "a re-run reading fresh entries must not write"
        );

        // Marks older than TOUCH_INTERVAL are renewed by a read, so entries
        // in use are never pruned, even complete files that are only served.
        let old = now_secs() - TOUCH_INTERVAL.as_secs() as i64 - 60;
        for table in ["passed", "complete_files"] {
            store
                .conn
                .execute(&format!("UPDATE {table} SET last_used = ?1"), [old])
                .unwrap();
        }
        store.query(&keys).unwrap();
        store.collections(&keys, false).unwrap();
        for table in ["passed", "complete_files"] {
            assert!(
                last_used(&store, table).iter().all(|&t| t > old),
                "{table}: stale marks renewed"
            );
        }
    }

    #[test]
    fn requirement_sets_and_modules_are_stored_once_and_named_by_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = LocalStore::open(&dir.path().join("c.sqlite")).unwrap();
        let mut observed = passed("a", 5);
        observed.requirements = Some("s1".to_string());
        let mut batch = batch(vec![observed.clone(), passed("b", 7)]);
        batch.requirement_sets = [("s1".to_string(), b"body".to_vec())].into();
        batch.observed_modules = vec!["pkg/plugin.py".to_string()];
        store.publish(&batch).unwrap();
        store.publish(&batch).unwrap();
        let answers = store.query(&["f1".to_string()]).unwrap();
        assert!(answers[0].contains(&observed));
        assert!(answers[0].contains(&passed("b", 7)));
        assert_eq!(
            store.requirement_sets(&["s1", "s2"]).unwrap(),
            [("s1".to_string(), b"body".to_vec())]
        );
        assert_eq!(store.observed_modules().unwrap(), ["pkg/plugin.py"]);
    }

    #[test]
    fn skips_and_xfails_keep_their_reasons_and_an_unknown_outcome_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = LocalStore::open(&dir.path().join("c.sqlite")).unwrap();
        let mut skipped = passed("s", 1);
        skipped.outcome = Outcome::Skipped("no network".into());
        let mut xfailed = passed("x", 2);
        xfailed.outcome = Outcome::XFailed("bug 12".into());
        store
            .publish(&batch(vec![
                skipped.clone(),
                xfailed.clone(),
                passed("p", 3),
            ]))
            .unwrap();
        let answers = store.query(&["f1".to_string()]).unwrap();
        assert!(answers[0].contains(&skipped) && answers[0].contains(&xfailed));
        // A later version's outcome this one does not know: its test runs.
        store
            .conn
            .execute(
                "UPDATE passed SET outcome = 'retried' WHERE node_key = 's'",
                [],
            )
            .unwrap();
        let answers = store.query(&["f1".to_string()]).unwrap();
        assert_eq!(answers[0].len(), 2);
        assert!(!answers[0].iter().any(|p| p.test.node_id == "s"));
    }

    #[test]
    fn corruption_found_by_an_operation_moves_the_store_aside_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let (page, page_size) = {
            let (store, _) = LocalStore::open(&path).unwrap();
            for n in 0..2000 {
                store
                    .conn
                    .execute(
                        "INSERT INTO passed (file_key, node_key, last_used) VALUES (?1, ?2, 0)",
                        [format!("file{n}"), format!("node{n}")],
                    )
                    .unwrap();
            }
            let page: u64 = store
                .conn
                .query_row(
                    "SELECT rootpage FROM sqlite_master WHERE name = 'passed'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let size: u64 = store
                .conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap();
            (page, size)
        }; // closed: the log is checkpointed into the file
        let mut bytes = std::fs::read(&path).unwrap();
        let start = ((page - 1) * page_size) as usize;
        bytes[start..start + page_size as usize].fill(0xA5);
        std::fs::write(&path, bytes).unwrap();

        // Opening reads only the schema: the table's page is not checked.
        let (store, warning) = LocalStore::open(&path).unwrap();
        assert!(warning.is_none());
        let err = store.query(&["file1".to_string()]).unwrap_err();
        assert!(is_corruption(&err.source), "{err}");
        drop(store);
        let (store, warning) = LocalStore::open(&path).unwrap();
        assert!(warning.unwrap().contains("started afresh"));
        assert!(store.query(&["file1".to_string()]).unwrap()[0].is_empty());
        assert!(path.with_extension("sqlite.corrupt").exists());
        assert!(!corruption_marker(&path).exists());
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        std::fs::write(&path, b"this is not a database, just garbage bytes.......").unwrap();
        let (store, warning) = LocalStore::open(&path).unwrap();
        assert!(warning.unwrap().contains("started afresh"));
        assert!(store.query(&["x".to_string()]).unwrap()[0].is_empty());
        assert!(path.with_extension("sqlite.corrupt").exists());
    }
}
