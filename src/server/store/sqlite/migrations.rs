//! The SQLite schema and its upgrades, applied in order at start;
//! `PRAGMA user_version` records how many ran. Each runs in one
//! transaction, so a crash mid-upgrade leaves the previous schema intact.

use rusqlite::{params, Connection, Transaction};

use super::super::{Result, StoreError};
use super::slots;

/// One upgrade: plain SQL, or SQL plus row moves that need Rust.
enum Migration {
    Sql(&'static str),
    Steps(fn(&Transaction<'_>, &str) -> Result<()>),
}

const MIGRATIONS: &[Migration] = &[
    Migration::Sql(V1),
    Migration::Sql(V2),
    Migration::Steps(slotted_entries),
    Migration::Sql(V4),
    Migration::Sql(V5),
];

/// The schema version a fresh or upgraded file ends at.
pub const LATEST: usize = MIGRATIONS.len();

/// 1: the first schema.
pub const V1: &str = r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    token_hash BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    file_hash BLOB NOT NULL,
    ids BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_read_at INTEGER NOT NULL,
    UNIQUE (tenant, file_hash)
);
CREATE INDEX entries_last_read ON entries(last_read_at);
CREATE TABLE usage (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    requests INTEGER NOT NULL DEFAULT 0,
    queried_hashes INTEGER NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    published_ids INTEGER NOT NULL DEFAULT 0,
    last_seen_at INTEGER
);
"#;

/// 2: entries keyed by (tenant id, hash) in a WITHOUT ROWID table, so a
/// lookup is one B-tree descent (it was the unique index, then the table),
/// and running totals kept by triggers, so store size is not a full scan.
/// Small columns come before the ids blob so they stay on the B-tree page.
const V2: &str = r#"
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO tenants (name) SELECT DISTINCT tenant FROM entries ORDER BY tenant;
CREATE TABLE entries_v2 (
    tenant_id INTEGER NOT NULL,
    file_hash BLOB NOT NULL,
    last_read_at INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ids BLOB NOT NULL,
    PRIMARY KEY (tenant_id, file_hash)
) WITHOUT ROWID;
INSERT INTO entries_v2 (tenant_id, file_hash, last_read_at, bytes, created_at, updated_at, ids)
    SELECT t.id, e.file_hash, e.last_read_at, e.bytes, e.created_at, e.updated_at, e.ids
    FROM entries e JOIN tenants t ON t.name = e.tenant ORDER BY t.id, e.file_hash;
DROP TABLE entries;
ALTER TABLE entries_v2 RENAME TO entries;
CREATE INDEX entries_last_read ON entries(last_read_at);
CREATE TABLE totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO totals (id, entries, bytes) SELECT 1, COUNT(*), COALESCE(SUM(bytes), 0) FROM entries;
CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.bytes WHERE id = 1;
END;
CREATE TRIGGER entries_resized AFTER UPDATE OF bytes ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes WHERE id = 1;
END;
"#;

/// 3, before the rows move: the old table steps aside, the new ones appear.
/// See `slots.rs` for why entries live at slots.
const V3_TABLES: &str = r#"
DROP INDEX entries_last_read;
ALTER TABLE entries RENAME TO entries_v2;
CREATE TABLE entries (
    slot INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    file_hash BLOB NOT NULL,
    last_read_at INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ids BLOB NOT NULL
);
CREATE TABLE entries_overflow (
    tenant_id INTEGER NOT NULL,
    file_hash BLOB NOT NULL,
    last_read_at INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ids BLOB NOT NULL,
    PRIMARY KEY (tenant_id, file_hash)
) WITHOUT ROWID;
"#;

/// 3, after the rows moved: indexes, and totals kept over both tables.
const V3_FINISH: &str = r#"
DROP TABLE entries_v2;
CREATE INDEX entries_last_read ON entries(last_read_at);
CREATE INDEX entries_overflow_last_read ON entries_overflow(last_read_at);
CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.bytes WHERE id = 1;
END;
CREATE TRIGGER entries_resized AFTER UPDATE OF bytes ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER overflow_added AFTER INSERT ON entries_overflow BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER overflow_removed AFTER DELETE ON entries_overflow BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.bytes WHERE id = 1;
END;
CREATE TRIGGER overflow_resized AFTER UPDATE OF bytes ON entries_overflow BEGIN
    UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes WHERE id = 1;
END;
UPDATE totals SET
    entries = (SELECT COUNT(*) FROM entries) + (SELECT COUNT(*) FROM entries_overflow),
    bytes = (SELECT COALESCE(SUM(bytes), 0) FROM entries)
          + (SELECT COALESCE(SUM(bytes), 0) FROM entries_overflow)
WHERE id = 1;
"#;

/// 4: one row that `/healthz` rewrites to learn that the file still takes
/// writes (`Store::probe_write`); a read succeeds on a full disk.
const V4: &str = r#"
CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probes INTEGER NOT NULL
);
INSERT INTO health (id, probes) VALUES (1, 0);
"#;

/// 5: the requirement sets of an entry's tests (`codec::encode_requirements`),
/// NULL while none of its tests was recorded with one; `bytes` counts them.
const V5: &str = r#"
ALTER TABLE entries ADD COLUMN requirements BLOB;
ALTER TABLE entries_overflow ADD COLUMN requirements BLOB;
"#;

/// 3: every entry moves to its slot, keeping all its columns.
fn slotted_entries(tx: &Transaction<'_>, path: &str) -> Result<()> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    tx.execute_batch(V3_TABLES).map_err(err)?;
    let mut old = tx
        .prepare(
            "SELECT tenant_id, file_hash, last_read_at, bytes, created_at, updated_at, ids \
             FROM entries_v2",
        )
        .map_err(err)?;
    let mut rows = old.query([]).map_err(err)?;
    // Not `slots::Finder`, which reads the columns of the latest schema.
    let mut slot_taken = tx
        .prepare("SELECT EXISTS (SELECT 1 FROM entries WHERE slot = ?1)")
        .map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let tenant_id: i64 = row.get(0).map_err(err)?;
        let hash: Vec<u8> = row.get(1).map_err(err)?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
            table: "entries",
            reason: "file_hash is not 32 bytes".into(),
        })?;
        let columns = (
            row.get::<_, i64>(2).map_err(err)?,
            row.get::<_, i64>(3).map_err(err)?,
            row.get::<_, i64>(4).map_err(err)?,
            row.get::<_, i64>(5).map_err(err)?,
            row.get::<_, Vec<u8>>(6).map_err(err)?,
        );
        // The old table's key was unique, so a taken slot holds another key.
        let slot = slots::slot(tenant_id, &hash);
        let taken: bool = slot_taken
            .query_row(params![slot], |r| r.get(0))
            .map_err(err)?;
        let (last_read_at, bytes, created_at, updated_at, ids) = columns;
        if taken {
            tx.execute(
                "INSERT INTO entries_overflow (tenant_id, file_hash, last_read_at, bytes, created_at, updated_at, ids) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant_id, &hash[..], last_read_at, bytes, created_at, updated_at, ids],
            )
        } else {
            tx.execute(
                "INSERT INTO entries (slot, tenant_id, file_hash, last_read_at, bytes, created_at, updated_at, ids) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![slot, tenant_id, &hash[..], last_read_at, bytes, created_at, updated_at, ids],
            )
        }
        .map_err(err)?;
    }
    drop(slot_taken);
    drop(rows);
    drop(old);
    tx.execute_batch(V3_FINISH).map_err(err)
}

/// Brings the file at `path` to the latest schema.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
    let err = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    let done: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let done = done.max(0) as usize;
    if done > 0 && done < LATEST {
        // Rewriting the entries of a large store takes a while: say why.
        tracing::info!(
            path,
            from = done,
            to = LATEST,
            "upgrading the database schema"
        );
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction().map_err(err)?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql).map_err(err)?,
            Migration::Steps(steps) => steps(&tx, path)?,
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    if done > 0 && done < LATEST {
        // An upgrade may rewrite a whole table; move it from the WAL into the
        // database file now rather than leave a WAL as large as the table.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::id;
    use super::super::super::{codec, ResultStore, StoreStats};
    use super::super::test_support::{overflow_rows, SHARES_SLOT_WITH_ONES};
    use super::super::SqliteStore;
    use super::*;

    /// A database file as the first schema left it, with two tenants and
    /// two keys of one tenant that share a slot in the latest schema.
    fn version_1_file(path: &std::path::Path) {
        let mut c = Connection::open(path).unwrap();
        c.execute_batch(V1).unwrap();
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
            .query(
                "team",
                &[[1; 32], [2; 32], [3; 32], SHARES_SLOT_WITH_ONES],
                usize::MAX,
            )
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
        let other = store
            .query("other", &[[1; 32], [2; 32]], usize::MAX)
            .await
            .unwrap();
        assert_eq!(*other[0].as_ref().unwrap().ids, [id(9)]);
        assert!(other[1].is_none());
        assert!(store.query("nobody", &[[1; 32]], usize::MAX).await.unwrap()[0].is_none());
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
                .publish("team", vec![([2; 32], vec![id(3), id(4)].into())], 100, 500)
                .await
                .unwrap(),
            1
        );
        let merged = store.query("team", &[[2; 32]], usize::MAX).await.unwrap();
        assert_eq!(*merged[0].as_ref().unwrap().ids, [id(3), id(4)]);
        drop(store);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST as i64);
    }
}
